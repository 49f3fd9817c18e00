"""Where the next fine-tuning round starts: the adapter in service, or a rejected round's candidate.

The eval gate serves a candidate only when it scores no worse than the adapter in service on the same
held-out questions. A rejected candidate is still a resume point (``RoundRequest.resume_adapter``): it
was trained from the adapter in service and then some more, so starting from it keeps that training.
:func:`resume_point` picks one only among candidates newer than the adapter in service (all of them when
there is none, as while catching up to the gate's threshold: then the best one):

* the best one, when it scored higher than the adapter in service, or
* else the newest one that scored at most :func:`noise` below it: two standard errors of a score on
  ``n`` questions (0.029 at 0.955 and n = 200). The two adapters then differ on a few of the sampled
  questions, which is within the sampling error of the score, not evidence that the extra training made
  the adapter worse at wordings it has not seen. The newest is the most trained (each such round
  continued from the one before).

A candidate is compared with the score it was gated against when the caller knows it
(:attr:`Candidate.versus`, the adapter in service on the same questions), else with the score the adapter
in service got in its own round (the same questions while the facts have not changed: the gate then
reuses that score). Only the gate decides what is served. The daemon (``edge.trainer``) and
``llmtwin bench paper`` both use this rule.
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
    versus: float | None = None  # the adapter in service's accuracy on the same questions, when known


def noise(accuracy: float, n: int) -> float:
    """Two standard errors of an accuracy measured on ``n`` questions, with p clamped to [1/n, 1 - 1/n]
    so that a perfect or zero score still has a band (about two questions wide)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    p = min(max(accuracy, 1 / n), 1 - 1 / n) if n > 1 else 0.5
    return 2 * math.sqrt(p * (1 - p) / n)


def resume_point(
    candidates: Iterable[Candidate], in_service_version: int | None, in_service_accuracy: float | None, n: int
) -> str | None:
    """The candidate the next round should continue from, or None for the adapter in service."""
    newer = [c for c in candidates if in_service_version is None or c.version > in_service_version]
    if in_service_accuracy is None:
        return max(newer, key=lambda c: (c.accuracy, c.version)).path if newer else None
    served = in_service_accuracy

    def floor(c: Candidate) -> float:
        return c.versus if c.versus is not None else served

    better = [c for c in newer if c.accuracy > floor(c)]
    if better:
        return max(better, key=lambda c: (c.accuracy, c.version)).path
    close = [c for c in newer if c.accuracy >= floor(c) - noise(floor(c), n)]
    return max(close, key=lambda c: c.version).path if close else None
