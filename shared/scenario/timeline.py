"""Interval algebra and step functions over scenario time.

The trace is built from "who is where when" intervals (occupancy, daylight, appliance runs); these
small helpers keep that arithmetic in one tested place instead of ad-hoc loops in every emitter.
Intervals are half-open ``(start, end)`` tuples in seconds.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

Interval = tuple[float, float]


def merge(intervals: Iterable[Interval], gap: float = 0.0) -> list[Interval]:
    """Sorted, non-overlapping union; intervals closer than ``gap`` are joined too."""
    out: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if out and start <= out[-1][1] + gap:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def intersect(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """Pairwise intersection of two interval sets (each merged first)."""
    left, right = merge(a), merge(b)
    out: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start = max(left[i][0], right[j][0])
        end = min(left[i][1], right[j][1])
        if start < end:
            out.append((start, end))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """The parts of ``a`` not covered by ``b``."""
    cut = merge(b)
    out: list[Interval] = []
    for start, end in merge(a):
        cursor = start
        for c_start, c_end in cut:
            if c_end <= cursor or c_start >= end:
                continue
            if c_start > cursor:
                out.append((cursor, c_start))
            cursor = max(cursor, c_end)
        if cursor < end:
            out.append((cursor, end))
    return out


def clip(intervals: Iterable[Interval], low: float, high: float) -> list[Interval]:
    return [(max(s, low), min(e, high)) for s, e in intervals if min(e, high) > max(s, low)]


def covers(intervals: list[Interval], t: float) -> bool:
    """True when ``t`` lies in one of the (merged, sorted) intervals."""
    idx = bisect.bisect_right(intervals, (t, float("inf"))) - 1
    return idx >= 0 and intervals[idx][0] <= t < intervals[idx][1]


@dataclass(frozen=True, slots=True)
class StepFunction:
    """A piecewise-constant function built from weighted intervals (e.g. appliance loads in W).

    ``value_at`` is a bisect; ``integral_to`` integrates exactly via prefix sums, which is how the
    energy meters stay consistent with the power they measure.
    """

    times: tuple[float, ...]
    values: tuple[float, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def from_intervals(cls, weighted: Iterable[tuple[float, float, float]]) -> StepFunction:
        deltas: dict[float, float] = {}
        for start, end, value in weighted:
            if end > start:
                deltas[start] = deltas.get(start, 0.0) + value
                deltas[end] = deltas.get(end, 0.0) - value
        times = sorted(deltas)
        values = [round(v, 9) for v in itertools.accumulate(deltas[t] for t in times)]
        cumulative = [0.0]
        for k in range(1, len(times)):
            cumulative.append(cumulative[-1] + values[k - 1] * (times[k] - times[k - 1]))
        return cls(tuple(times), tuple(values), tuple(cumulative))

    def value_at(self, t: float) -> float:
        idx = bisect.bisect_right(self.times, t) - 1
        return self.values[idx] if idx >= 0 else 0.0

    def integral_to(self, t: float) -> float:
        """Integral from -inf (the function is 0 before its first step) to ``t``."""
        idx = bisect.bisect_right(self.times, t) - 1
        if idx < 0:
            return 0.0
        return self.cumulative[idx] + self.values[idx] * (t - self.times[idx])
