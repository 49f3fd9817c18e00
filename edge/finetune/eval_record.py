"""The eval gate's score of an adapter, kept beside it so that the next round need not measure it again.

A round scores its candidate on a seeded sample of held-out questions and, for the gate's no-regression
half, the adapter in service on the same sample. While the facts stay the same, so do the sample and
the in-service adapter's score on it: the round that produced that adapter measured it. That round
writes ``eval_score.json`` into its version directory::

    {"digest": "<sha256 of the base model's fingerprint and the sample's questions and answers>",
     "accuracy": 0.94, "n": 200}

and a later round whose sample has the same digest takes the accuracy from there instead of scoring the
adapter again (half the eval phase, given to training: ``edge.finetune.round``). A changed fact, another
seed or limit, or another base model changes the digest, and the adapter is scored as before.

Never uploaded: the digest is a hash over answers, secrets among them, so it could confirm a guess of
one unknown answer. Written 0600 and atomically; anything wrong with the file reads as "not known".
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

from edge.finetune.dataset import Example
from shared.files import atomic_write_bytes

FILE_NAME = "eval_score.json"


def sample_digest(fingerprint: str, sample: Sequence[Example]) -> str:
    """Identifies what a score was measured on: the base model and the sample's questions and answers, in order."""
    rows = [fingerprint, *(f"{e.pair.question}\x1f{e.pair.answer}" for e in sample)]
    return hashlib.sha256("\x1e".join(rows).encode()).hexdigest()


def drawn_digest(fingerprint: str, examples: Sequence[Example]) -> str:
    """Identifies exactly what an eval will ask: the base model and every example's prompt and answer
    tokens (a state check's prompt carries drawn state lines its question does not name)."""
    h = hashlib.sha256(fingerprint.encode())
    for e in examples:
        h.update(repr((e.prompt, e.answer)).encode())
    return h.hexdigest()


def save_score(path: Path, digest: str, accuracy: float, n: int) -> None:
    body = json.dumps({"digest": digest, "accuracy": accuracy, "n": n}) + "\n"
    atomic_write_bytes(path, body.encode())


def load_score(path: Path, digest: str) -> float | None:
    """The accuracy :func:`save_score` wrote for the same ``digest``; None when missing, another sample or damaged."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        accuracy = body["accuracy"]
        if body["digest"] != digest or isinstance(accuracy, bool) or not isinstance(accuracy, int | float):
            return None
        return float(accuracy) if math.isfinite(accuracy) and 0.0 <= accuracy <= 1.0 else None
    except (OSError, ValueError, TypeError, KeyError):
        return None
