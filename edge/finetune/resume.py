"""Where the next fine-tuning round starts: the adapter in service, or a rejected round's candidate.

The eval gate serves a candidate only when it scores no worse than the adapter in service on the same
held-out questions. A rejected candidate is still a resume point (``RoundRequest.resume_adapter``): it
was trained from the adapter in service and then some more, so starting from it keeps that training.
:func:`resume_point` picks it when

* it scored higher than the adapter in service (a round below the gate's threshold, still catching up), or
* it is newer than the adapter in service and scored at most :func:`noise` below it: two standard
  errors of the in-service score on ``n`` questions. A difference that small is what scoring the same
  adapter on another sample of 200 questions gives (0.955 ± 0.029 at n = 200), not evidence that the
  extra training made it worse.

A candidate further below, or older than the adapter in service, is dropped: the next round starts
from the adapter in service. Either way, only the gate decides what is served. The daemon
(``edge.trainer``) and ``llmtwin bench paper`` both use this rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    """A rejected round's adapter: its version, held-out accuracy and artifact path."""

    version: int
    accuracy: float
    path: str


def noise(accuracy: float, n: int) -> float:
    """Two standard errors of an accuracy measured on ``n`` questions (p clamped to [1/n, 1 - 1/n], so a
    perfect or zero score still has a band of about one question)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    p = min(max(accuracy, 1 / n), 1 - 1 / n) if n > 1 else 0.5
    return 2 * math.sqrt(p * (1 - p) / n)


def resume_point(
    candidates: Iterable[Candidate], in_service_version: int | None, in_service_accuracy: float | None, n: int
) -> str | None:
    """The candidate the next round should continue from, or None for the adapter in service."""
    rejected = list(candidates)
    if not rejected:
        return None
    best = max(rejected, key=lambda c: (c.accuracy, c.version))
    if in_service_accuracy is None:
        return best.path
    if best.accuracy > in_service_accuracy:
        return best.path
    newer = [c for c in rejected if in_service_version is None or c.version > in_service_version]
    close = [c for c in newer if c.accuracy >= in_service_accuracy - noise(in_service_accuracy, n)]
    return max(close, key=lambda c: c.version).path if close else None
