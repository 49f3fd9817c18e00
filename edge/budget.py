"""The daily data budget: stretch the reporting cadence instead of blowing the budget.

Bytes sent today are projected to the end of the (UTC) day from the rate so far; when the
projection exceeds the budget, the compressor's tick period is stretched by that factor (never
shrunk below the configured tick). Keyframes and adapters are never skipped, they just come with a
slower cadence of deltas around them. Pure: the clock is injected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

DAY_S = 86400.0


@dataclass
class DataBudget:
    daily_bytes: int
    clock: Callable[[], float]
    max_stretch: float = 60.0
    _day: int = -1
    _used: int = 0

    def record(self, n_bytes: int) -> None:
        self._roll()
        self._used += n_bytes

    @property
    def used_today(self) -> int:
        self._roll()
        return self._used

    def stretch(self) -> float:
        """Factor (>= 1) to multiply the tick period by so that today's total stays in budget."""
        self._roll()
        now = self.clock()
        elapsed = max(now - self._day * DAY_S, 60.0)  # no wild projections in the first minute
        projected = self._used * DAY_S / elapsed
        if projected <= self.daily_bytes:
            return 1.0
        remaining = max(self.daily_bytes - self._used, 1)
        rate_allowed = remaining / max(DAY_S - (now - self._day * DAY_S), 1.0)
        rate_now = self._used / elapsed
        return min(self.max_stretch, max(1.0, rate_now / rate_allowed))

    def cadence(self, base_tick_s: float) -> float:
        return base_tick_s * self.stretch()

    def _roll(self) -> None:
        day = math.floor(self.clock() / DAY_S)
        if day != self._day:
            self._day, self._used = day, 0
