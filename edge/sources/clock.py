"""Time as the sources see it: one injectable clock for timestamps, schedules and back-off sleeps.

Every source and the coordinator take a :class:`Clock` instead of calling ``time``/``asyncio.sleep``
directly, so tests and benchmarks can move time with a :class:`VirtualClock` (sleeps return at once
and advance the clock) instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time for reading timestamps, monotonic time for schedules, and a sleep."""

    def time(self) -> float:
        """Seconds since the epoch (timestamps of readings)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (schedules, elapsed time)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (cancellable)."""
        ...


class SystemClock:
    """The real clock: ``time.time``, ``time.monotonic`` and ``asyncio.sleep``."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()


class VirtualClock:
    """A clock that only moves when someone sleeps on it: a sleep advances time and returns at once.

    It still yields to the event loop once per sleep, so other tasks (the test waiting on the sink)
    get to run. ``sleeps`` records every requested delay, which is what tests assert schedules on.
    """

    def __init__(self, start: float = 1_780_000_000.0) -> None:
        self._epoch = start
        self._elapsed = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self._epoch + self._elapsed

    def monotonic(self) -> float:
        return self._elapsed

    def advance(self, seconds: float) -> None:
        self._elapsed += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)
