"""Where a round spends its steps: on the examples the adapter still gets wrong.

Every step measures each of its examples' answer loss (``edge.finetune.train.answer_losses``). An epoch
then draws its examples instead of taking all of them: one whose last loss is at or above ``focus_loss``
always comes, a learned one comes with odds ``loss / focus_loss``, never below ``min_visit`` (so what
was learned is revisited and not forgotten). On this model most facts (a connectivity, a brand) are
learned in a few passes while the numbers (years, ranges) take many. Measured on home1 (SmolLM2-135M,
410 facts, 600 s of training, teacher-forced exact match on all 820 held-out questions): every example
every epoch with a per-example mean loss, 0.84 (train-worded 0.93); drawn epochs with a token-mean loss,
0.95 (train-worded 1.00). Not a clean ablation: the first run also spent 94 s of its 600 on lower-layer
passes the second found stored. The bench's catch-up rounds are the end-to-end measure
(``llmtwin bench finetune --rounds N``).

The losses are the adapter's, so they are kept with it: each version directory holds
``example_losses.npz`` (next to the float32 train state, never uploaded), and a round that warm-starts
from that adapter starts from its losses instead of one full pass to measure them::

    keys    uint8 [n, 32]   sha256 of each example's token ids (edge.finetune.lower_store.row_key)
    losses  float32 [n]     its answer loss at its last visit

Like the lower-layer store it is derived from the private facts only through those hashes, written 0600
and atomically, and anything wrong with it reads as empty (an epoch then takes every example).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from shared.files import atomic_write

FILE_NAME = "example_losses.npz"


def visit_share(loss: float | None, focus_loss: float, min_visit: float) -> float:
    """The odds an example is in the next epoch (1 when its loss is unknown or ``focus_loss`` is 0)."""
    if loss is None or focus_loss <= 0 or not math.isfinite(loss):
        return 1.0
    return min(1.0, max(min_visit, loss / focus_loss))


def save_losses(path: Path, losses: Mapping[bytes, float]) -> None:
    """Write ``losses`` (row key -> last loss) to ``path``, owner-only, atomically."""
    order = list(losses)
    keys = np.frombuffer(b"".join(order), dtype=np.uint8).reshape(len(order), 32)
    values = np.array([losses[k] for k in order], dtype=np.float32)
    atomic_write(path, lambda out: np.savez(out, keys=keys, losses=values))


def load_losses(path: Path) -> dict[bytes, float]:
    """What :func:`save_losses` wrote; empty when the file is missing or not one."""
    try:
        with path.open("rb") as file, np.load(file, allow_pickle=False) as npz:
            keys, values = npz["keys"], npz["losses"]
        if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != 32 or values.shape != (keys.shape[0],):
            return {}
        return {bytes(k): float(v) for k, v in zip(keys, values.astype(np.float64), strict=True) if math.isfinite(v)}
    except Exception:  # a hint only: whatever is wrong with the file
        return {}
