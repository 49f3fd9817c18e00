"""One ONNX Runtime session over the serving graph; a forward pass in OrtValues end to end.

The KV cache stays in ORT-owned memory between steps: ``present.*`` outputs come back as OrtValues
and are fed back as ``past_key_values.*`` without a numpy round trip; the bank's OrtValues are the
same objects every run. Only logits ([batch, 1, vocab], or [batch, seq, vocab] for the plain export)
are read into numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.errors import ModelError, ModelSourceError
from shared.modelspec import LORA_INDEX, ModelSpec, past_names, present_names

Array = npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """Runtime settings. ``threads`` 0 lets ORT pick (one per physical core)."""

    threads: int = 0
    slots: int = 64  # adapter bank slots, slot 0 = base
    max_batch: int = 64
    graph_optimization: str = "all"  # all | extended | basic | disabled
    onnx_file: str | None = None  # another graph in the model dir (benchmarks: the plain export)

    def check(self) -> None:
        if self.threads < 0 or self.slots < 1 or self.max_batch < 1:
            raise ModelError(f"invalid engine options: {self}")
        if self.graph_optimization not in _OPT_LEVELS:
            raise ModelError(
                f"graph_optimization = {self.graph_optimization!r}: one of {sorted(_OPT_LEVELS)}"
            )


_OPT_LEVELS = {
    "all": "ORT_ENABLE_ALL",
    "extended": "ORT_ENABLE_EXTENDED",
    "basic": "ORT_ENABLE_BASIC",
    "disabled": "ORT_DISABLE_ALL",
}


class OrtModel:
    """The session plus what a forward pass needs to know about its inputs."""

    def __init__(self, path: Path, spec: ModelSpec, options: EngineOptions) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, _OPT_LEVELS[options.graph_optimization]
        )
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
            raise ModelSourceError(f"{path}: ONNX Runtime cannot load the graph: {exc}") from exc
        self.spec = spec
        self.input_names = frozenset(i.name for i in self.session.get_inputs())
        self.has_lora = LORA_INDEX in self.input_names
        self.static_rank = _static_rank(self.session)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._ort = ort

    def empty_past(self, batch: int) -> dict[str, Any]:
        """Zero-length past [batch, kv_heads, 0, head_dim] for a prefill."""
        shape = (batch, self.spec.n_kv_heads, 0, self.spec.head_dim)
        return {
            name: self.value(np.zeros(shape, np.float32))
            for layer in range(self.spec.n_layers)
            for name in past_names(layer)
        }

    def value(self, array: Array) -> Any:
        return self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array))

    def forward(
        self,
        ids: Array,
        mask: Array,
        positions: Array,
        past: Mapping[str, Any],
        slots: Array | None,
        bank: Mapping[str, Any] | None,
    ) -> tuple[Array, dict[str, Any]]:
        """Last-position logits float32 [batch, vocab] and the new past (OrtValues, keyed by past names).

        ids, positions: int64 [batch, seq]; mask: int64 [batch, past + seq]; slots: int64 [batch].
        """
        feed: dict[str, Any] = dict(past)
        feed["input_ids"] = self.value(ids)
        feed["attention_mask"] = self.value(mask)
        feed["position_ids"] = self.value(positions)
        if self.has_lora:
            if slots is None or bank is None:
                raise ModelError("this graph needs lora_index and the adapter bank")
            feed[LORA_INDEX] = self.value(slots)
            feed.update(bank)
        outs = dict(
            zip(self.output_names, self.session.run_with_ort_values(self.output_names, feed), strict=True)
        )
        logits = np.array(outs["logits"].numpy()[:, -1, :], dtype=np.float32)  # copy: small
        new_past = {}
        for layer in range(self.spec.n_layers):
            for past_name, present_name in zip(past_names(layer), present_names(layer), strict=True):
                new_past[past_name] = outs[present_name]
        return logits, new_past


def _static_rank(session: Any) -> int | None:
    """The bank's rank if the graph fixes it (format-1 graphs: max_rank), None if dynamic or no LoRA."""
    for graph_input in session.get_inputs():
        if graph_input.name.startswith("lora_A."):
            rank = graph_input.shape[-1]
            return rank if isinstance(rank, int) else None
    return None
