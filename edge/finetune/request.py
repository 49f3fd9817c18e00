"""What the daemon sends a round and what it gets back: plain, picklable, JSON-able dataclasses.

``RoundRequest`` carries the static records and the profile's budget (``RoundRequest.from_config``);
its JSON form (``to_json`` / ``from_json``) is what ``python -m edge.finetune.round --request`` reads,
validated strictly (``shared.typed``: unknown keys, wrong types and out-of-range values are refused).
``RoundResult`` is what ``run_round`` returns and the CLI writes; ``RoundProgress`` is reported along
the way (phase, step of total, loss, seconds since the round started).
"""

from __future__ import annotations

import functools
import json
import math
import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, make_dataclass
from typing import Annotated, Any, Literal

from edge.finetune.dataset import ReadingPlan
from edge.finetune.train import TrainOptions
from edge.readings import StaticRecord
from shared.config.edge import AdapterDtype, FinetuneSection
from shared.modelspec import DEFAULT_LORA_TARGETS
from shared.typed import FieldError, Length, Range, from_plain, to_plain

EVAL_LIMIT = 200  # held-out questions a round scores by default (one per fact)
Status = Literal["accepted", "rejected", "skipped", "failed"]
_RECIPE = TrainOptions()
# the FinetuneSection fields a request copies (the rest of the section is the daemon's scheduling)
_BUDGET_FIELDS: tuple[str, ...] = ("rank", "alpha", "targets", "threads", "max_steps", "max_time_s")
_BUDGET_FIELDS += ("eval_threshold", "keep_versions", "seed", "adapter_dtype")


@dataclass(frozen=True, slots=True)
class RoundRequest:
    """What the daemon asks for. Budget fields mirror ``FinetuneSection`` (see :meth:`from_config`)."""

    twin_id: Annotated[str, Length(1, 128)]
    version: Annotated[int, Range(1, 2**31 - 1)]
    model_dir: Annotated[str, Length(1, 4096)]  # a prepared base model directory
    out_dir: Annotated[str, Length(1, 4096)]  # versions go to <out_dir>/v<version>/
    records: tuple[StaticRecord, ...] = ()
    # the ids the state readings draw on (edge.finetune.reading), when not the records': under pseudonyms the
    # records carry fact names and the readings the state names the daemon reports (shared.pseudonyms)
    state_ids: tuple[str, ...] = ()
    current_adapter: str | None = None  # the .onnx_adapter in service: re-scored on the same questions
    warm_start: bool = True  # start from resume_adapter's (else current_adapter's) LoRA when it fits
    resume_adapter: str | None = None  # a previous round's candidate to continue training from
    current_score: Annotated[float, Range(0.0, 1.0)] | None = None  # used when there is no current_adapter
    rank: Annotated[int, Range(1, 64)] = 8
    alpha: Annotated[float, Range(0.01, 1024)] = 16.0
    targets: Annotated[tuple[str, ...], Length(1, 16)] = DEFAULT_LORA_TARGETS
    threads: Annotated[int, Range(1, 256)] = 2
    max_steps: Annotated[int, Range(1, 1_000_000)] = 1000
    max_time_s: Annotated[float, Range(1.0, 30 * 86400)] = 300.0  # the whole round (soft: eval runs to its end)
    eval_threshold: Annotated[float, Range(0.0, 1.0)] = 0.9
    keep_versions: Annotated[int, Range(1, 100)] = 3
    seed: Annotated[int, Range(0, 2**31)] = 0
    adapter_dtype: AdapterDtype = "int4"
    # training recipe (not in the device profile; defaults tuned on SmolLM2-135M, see benchmarks/finetune.py)
    lr: Annotated[float, Range(1e-6, 1.0)] = _RECIPE.lr
    b_lr_ratio: Annotated[float, Range(0.01, 100.0)] = _RECIPE.b_lr_ratio
    batch_size: Annotated[int, Range(1, 1024)] = _RECIPE.batch_size
    max_batch_tokens: Annotated[int, Range(16, 1 << 20)] = _RECIPE.max_batch_tokens
    epochs: Annotated[float, Range(0.01, 1000)] = _RECIPE.epochs
    top_layers: Annotated[float, Range(0.01, 1.0)] = _RECIPE.top_layers
    max_grad_norm: Annotated[float, Range(0.0, 1e6)] = _RECIPE.max_grad_norm
    focus_loss: Annotated[float, Range(0.0, 100.0)] = _RECIPE.focus_loss
    min_visit: Annotated[float, Range(0.01, 1.0)] = _RECIPE.min_visit
    eval_limit: Annotated[int, Range(1, 1_000_000)] | None = EVAL_LIMIT  # held-out questions scored, one per fact
    train_share: Annotated[float, Range(0.05, 1.0)] = 0.7  # of max_time_s, for loading and training
    min_facts: Annotated[int, Range(1, 1_000_000)] = 4
    # state-reading train examples (edge.finetune.reading) per other train example: ~160 for home1's ~3,400
    state_share: Annotated[float, Range(0.0, 1.0)] = 0.046
    state_checks: Annotated[int, Range(0, 10_000)] = 24  # held-out-worded ones the eval scores (state_accuracy)

    @classmethod
    def from_config(cls, section: FinetuneSection, **fields: Any) -> RoundRequest:
        """A request with the profile's budget; ``fields`` gives twin_id, version, model_dir, out_dir, records..."""
        budget = {name: getattr(section, name) for name in _BUDGET_FIELDS}
        return cls(**{**budget, **fields})

    def reading_plan(self) -> ReadingPlan:
        return ReadingPlan(self.twin_id, self.state_share, self.state_checks, self.seed, self.state_ids)

    def train_options(self) -> TrainOptions:
        return TrainOptions(
            rank=self.rank,
            alpha=self.alpha,
            targets=self.targets,
            lr=self.lr,
            b_lr_ratio=self.b_lr_ratio,
            batch_size=self.batch_size,
            max_batch_tokens=self.max_batch_tokens,
            epochs=self.epochs,
            max_steps=self.max_steps,
            max_time_s=self.max_time_s,
            top_layers=self.top_layers,
            max_grad_norm=self.max_grad_norm,
            focus_loss=self.focus_loss,
            min_visit=self.min_visit,
            threads=self.threads,
            seed=self.seed,
        )

    def to_json(self) -> str:
        return json.dumps(to_plain(self), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RoundRequest:
        """Strict parse (FieldError names the bad key); records are objects like StaticRecord's fields."""
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise FieldError("", doc, "a round request must be a JSON object")
        records = doc.get("records", [])
        if not isinstance(records, list):
            raise FieldError("records", records, "expected an array")
        scalars: Any = from_plain(_request_fields(), {k: v for k, v in doc.items() if k != "records"})
        return cls(**asdict(scalars), records=tuple(_record(r, f"records[{i}]") for i, r in enumerate(records)))


@functools.cache
def _request_fields() -> type:
    """RoundRequest without ``records``, for shared.typed (which takes no union of scalars)."""
    hints = typing.get_type_hints(RoundRequest, include_extras=True)
    return make_dataclass(
        "RoundRequestFields",
        [
            (f.name, hints[f.name]) if f.default is MISSING else (f.name, hints[f.name], field(default=f.default))
            for f in fields(RoundRequest)
            if f.name != "records"
        ],
        frozen=True,
    )


def _record(doc: object, key: str) -> StaticRecord:
    if not isinstance(doc, dict) or set(doc) - {"entity_id", "attribute", "value", "sensitive"}:
        raise FieldError(key, doc, "expected {entity_id, attribute, value, sensitive}")
    entity_id, attribute, value = doc.get("entity_id"), doc.get("attribute"), doc.get("value")
    sensitive = doc.get("sensitive", False)
    if not isinstance(entity_id, str) or not isinstance(attribute, str) or not isinstance(sensitive, bool):
        raise FieldError(key, doc, "entity_id and attribute must be strings, sensitive a boolean")
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = tuple(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise FieldError(f"{key}.value", value, "must be finite")
    elif not isinstance(value, str | int | float | bool | tuple):
        raise FieldError(f"{key}.value", value, "must be a string, number, boolean or list of strings")
    return StaticRecord(entity_id, attribute, value, sensitive)


@dataclass(frozen=True, slots=True)
class RoundResult:
    status: Status
    reason: str
    twin_id: str
    version: int
    adapter_path: str | None = None  # <out_dir>/v<version>/adapter.onnx_adapter when accepted
    checkpoint_path: str | None = None  # <out_dir>/candidates/v<version>/... when rejected by the gate
    accuracy: float | None = None  # held-out, on the ONNX engine
    current_accuracy: float | None = None  # the adapter in service, same questions (or current_score)
    sensitive_accuracy: float | None = None
    state_accuracy: float | None = None  # state-reading questions in held-out wordings (edge.finetune.reading)
    state_accuracy_base: float | None = None  # the base model alone on the same questions
    state_accuracy_floor: float | None = None  # the better of answering "Yes." or "No." to every one of them
    state_eval_examples: int = 0  # how many such questions (each asked of the adapter and of the base model)
    state_examples: int = 0  # of train_examples, the state readings
    records: int = 0
    facts: int = 0
    train_examples: int = 0
    eval_examples: int = 0
    steps: int = 0
    warm_start: bool = False  # training started from the adapter in service
    stop_reason: str = ""
    loss: float | None = None
    tokens: int = 0
    cache_s: float = 0.0  # the frozen lower layers, run once per example before the loop
    cache_reused: int = 0  # train examples whose lower-layer output came from the previous round's file
    losses_known: int = 0  # train examples whose last loss came with the adapter it started from (focus)
    train_s: float = 0.0  # the training loop
    eval_s: float = 0.0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    peak_rss_by_phase: dict[str, float] = field(default_factory=dict)  # edge.finetune.memory.PhasePeaks
    peak_vm_mb: float | None = None  # virtual: an RLIMIT_AS cap must sit above this, not above peak_rss_mb
    fresh_eval: bool = False  # eval, gate and export ran in a fresh process exec'd after training (the CLI's way)
    parity_max_abs: float | None = None
    adapter_bytes: int = 0
    loss_curve: tuple[float, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RoundResult:
        """What :meth:`to_json` wrote (keys this version does not know are left out)."""
        doc: dict[str, Any] = json.loads(text)
        known = {f.name for f in fields(cls)}
        doc = {k: v for k, v in doc.items() if k in known}
        doc["loss_curve"] = tuple(doc.get("loss_curve", ()))
        return cls(**doc)


@dataclass(frozen=True, slots=True)
class RoundProgress:
    phase: str  # dataset | load | train | reference | eval | export
    step: int
    total: int
    loss: float | None
    elapsed_s: float


ProgressFn = Callable[[RoundProgress], None]
