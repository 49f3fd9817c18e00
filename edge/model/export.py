"""ONNX export of a prepared HF directory: optimum's KV-cache graph, then the per-row LoRA graph."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.model.lora_graph import LoraSite, add_per_row_lora, load_graph, save_graph, slice_last_logits
from edge.model.runtime import quiet_libraries
from shared.errors import ExportError


def export_base(hf_dir: Path, out_dir: Path) -> Path:
    """optimum ``text-generation-with-past`` export into out_dir; returns the model.onnx path.

    optimum's own validation is skipped: :mod:`edge.model.validate` compares the final graph with
    PyTorch under explicit tolerances instead.
    """
    from optimum.exporters.onnx import main_export

    try:
        with quiet_libraries():
            main_export(
                str(hf_dir),
                output=out_dir,
                task="text-generation-with-past",
                device="cpu",
                local_files_only=True,
                do_validation=False,
                library_name="transformers",
            )
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        raise ExportError(f"optimum export of {hf_dir} failed: {exc}") from exc
    model_path = out_dir / "model.onnx"
    if not model_path.is_file():
        raise ExportError(f"optimum export wrote no model.onnx in {out_dir}")
    return model_path


def build_lora_graph(base_onnx: Path, out: Path, sites: Sequence[LoraSite], bank_dtype: str) -> Any:
    """Read the plain export, add the bank inputs + LoRA branches + last-position logits, save."""
    model = load_graph(base_onnx)
    check_kv_layout(model)
    add_per_row_lora(model, sites, bank_dtype)
    slice_last_logits(model)
    save_graph(model, out)
    return model


def check_kv_layout(model: Any, n_kv_heads: int | None = None, head_dim: int | None = None) -> None:
    """The engine assumes past_key_values.{i}.key/value of rank 4 [batch, kv_heads, past, head_dim]."""
    names = {i.name: i for i in model.graph.input}
    for required in ("input_ids", "attention_mask", "position_ids", "past_key_values.0.key"):
        if required not in names:
            raise ExportError(f"the exported graph lacks the {required} input")
    dims = names["past_key_values.0.key"].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ExportError(
            f"past_key_values.0.key has rank {len(dims)}, expected 4 [batch, heads, past, head_dim]"
        )
    expected = (n_kv_heads, head_dim)
    found = (dims[1].dim_value or None, dims[3].dim_value or None)
    if n_kv_heads is not None and found != expected:
        raise ExportError(
            f"past_key_values.0.key has [kv_heads, head_dim] = {found}, the config says {expected}"
        )


def io_names(model: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(i.name for i in model.graph.input), tuple(o.name for o in model.graph.output)
