"""A round's hand-over from training to scoring, through its staging directory.

After training, the round's process still holds PyTorch (its libraries, and the heap that training
fragmented): with the ONNX engine loaded on top of that, the eval was a round's peak resident set
(1,383-1,402 MB on SmolLM2-135M, against 1,195-1,276 MB while training). So the round's CLI replaces
itself: it leaves the trained tensors and this hand-over in the staging directory and exec(2)s
``python -m edge.finetune.round --finish <stage>``, which scores, gates and exports in a fresh process.
exec keeps the pid, stdout (the progress lines), stderr (the round's log), niceness, rlimits and the
staging directory (named after the pid), so the daemon's guard follows the same process throughout.

Files written into the staging directory (owner-only: the request holds the device's static facts),
removed again before it is published:

    handoff.json   the request; the round's start on CLOCK_MONOTONIC (one clock for every process on
                   the machine); the result so far; the training's planned steps; the digest of the
                   eval questions (drawn again after the exec, checked against it); the phase peaks
                   so far; the parity reference's prompts and tokens
    handoff.npz    the parity reference's logits (PEFT, computed before the exec)

The trained float32 tensors are the round's ``train_state`` artifact, written before the exec.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.finetune.evaluate import Reference
from edge.finetune.request import RoundRequest, RoundResult
from shared.errors import TwinError
from shared.files import atomic_write, atomic_write_bytes
from shared.typed import FieldError

JSON_NAME = "handoff.json"
ARRAYS_NAME = "handoff.npz"


class HandoffError(TwinError):
    """The hand-over in a staging directory is missing or unreadable."""


@dataclass(frozen=True, slots=True)
class Handoff:
    request: RoundRequest
    start: float  # time.monotonic() when the round began (CLOCK_MONOTONIC: the same across exec)
    base: RoundResult  # the result so far: dataset and training fields filled in
    planned_steps: int
    eval_digest: str  # edge.finetune.eval_record.sample_digest of the eval questions training planned for
    peaks: dict[str, float]  # edge.finetune.memory.PhasePeaks.peaks of the process before
    peaks_supported: bool
    peak_vm_mb: float | None  # that process's VmPeak (exec starts a new one)
    reference: Reference


def save(stage: Path, handoff: Handoff) -> None:
    ref = handoff.reference
    doc = {
        "request": handoff.request.to_json(),
        "start": handoff.start,
        "base": handoff.base.to_json(),
        "planned_steps": handoff.planned_steps,
        "eval_digest": handoff.eval_digest,
        "peaks": handoff.peaks,
        "peaks_supported": handoff.peaks_supported,
        "peak_vm_mb": handoff.peak_vm_mb,
        "reference": {"prompts": ref.prompts, "next_tokens": ref.next_tokens},
    }
    # owner-only (shared.files.atomic_write), like the request file: the records are the device's facts
    atomic_write(stage / ARRAYS_NAME, lambda out: np.savez(out, prefill=ref.prefill, decode=ref.decode))
    atomic_write_bytes(stage / JSON_NAME, json.dumps(doc).encode())  # last: its presence means complete


def load(stage: Path) -> Handoff:
    """The hand-over in ``stage``, its files removed (they must not be published with the version)."""
    path = stage / JSON_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        with np.load(stage / ARRAYS_NAME) as arrays:
            prefill, decode = arrays["prefill"], arrays["decode"]
        ref = doc["reference"]
        handoff = Handoff(
            request=RoundRequest.from_json(doc["request"]),
            start=float(doc["start"]),
            base=RoundResult.from_json(doc["base"]),
            planned_steps=int(doc["planned_steps"]),
            eval_digest=str(doc["eval_digest"]),
            peaks={str(k): float(v) for k, v in doc["peaks"].items()},
            peaks_supported=bool(doc["peaks_supported"]),
            peak_vm_mb=None if doc["peak_vm_mb"] is None else float(doc["peak_vm_mb"]),
            reference=Reference(ref["prompts"], prefill, decode, ref["next_tokens"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, FieldError) as exc:
        raise HandoffError(f"{path}: no usable hand-over from the round's training: {exc}") from exc
    remove(stage)
    return handoff


def remove(stage: Path) -> None:
    (stage / JSON_NAME).unlink(missing_ok=True)
    (stage / ARRAYS_NAME).unlink(missing_ok=True)
