"""Next-token choice: greedy, or seeded temperature + nucleus (top-p) sampling per row."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.errors import ModelError

Array = npt.NDArray[Any]
# top-p looks at this many best tokens first (argpartition is O(vocab), a full sort is not);
# it falls back to sorting everything when they hold less than top_p of the mass.
_NUCLEUS_CANDIDATES = 1024


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """``temperature == 0`` is greedy. ``seed`` makes sampling reproducible per request."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    ignore_eos: bool = False  # benchmarks: always produce max_new_tokens

    def check(self) -> None:
        if not (math.isfinite(self.temperature) and 0.0 <= self.temperature <= 100.0):
            raise ModelError(f"temperature = {self.temperature}: must be in [0, 100]")
        if not (math.isfinite(self.top_p) and 0.0 < self.top_p <= 1.0):
            raise ModelError(f"top_p = {self.top_p}: must be in (0, 1]")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def new_rng(params: SamplingParams) -> np.random.Generator | None:
    """A row's own generator (None for greedy rows): rows never share random state."""
    if params.greedy:
        return None
    return np.random.default_rng(params.seed)


def choose_token(logits: Array, params: SamplingParams, rng: np.random.Generator | None) -> int:
    """One token id from one row's logits [vocab]."""
    if params.greedy or rng is None:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / params.temperature
    if params.top_p < 1.0:
        ids, probs = _nucleus(scaled, params.top_p)
    else:
        probs = np.exp(scaled - scaled.max())
        ids = None
    cdf = np.cumsum(probs)
    pick = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    pick = min(pick, len(cdf) - 1)
    return int(ids[pick]) if ids is not None else pick


def _nucleus(scaled: Array, top_p: float) -> tuple[Array, Array]:
    """Ids and unnormalised probabilities of the smallest set holding >= top_p of the mass, best first."""
    peak = scaled.max()
    total = np.exp(scaled - peak).sum()
    k = min(_NUCLEUS_CANDIDATES, scaled.shape[0])
    candidates = np.argpartition(-scaled, k - 1)[:k]
    order = candidates[np.argsort(-scaled[candidates], kind="stable")]
    probs = np.exp(scaled[order] - peak) / total
    if probs.sum() < top_p and k < scaled.shape[0]:  # rare flat distribution: sort everything
        order = np.argsort(-scaled, kind="stable")
        probs = np.exp(scaled[order] - peak) / total
    cum = np.cumsum(probs)
    keep = int(np.searchsorted(cum, top_p, side="left")) + 1  # first index reaching top_p, inclusive
    return order[:keep], probs[:keep]
