"""A source sink that tests can wait on until a condition over the readings holds (no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from edge.readings import Reading


class Collector:
    def __init__(self, timeout_s: float = 10.0) -> None:
        self.readings: list[Reading] = []
        self._arrived = asyncio.Event()
        self._timeout_s = timeout_s

    def __call__(self, reading: Reading) -> None:
        self.readings.append(reading)
        self._arrived.set()

    async def wait_for(self, predicate: Callable[[list[Reading]], bool]) -> None:
        async with asyncio.timeout(self._timeout_s):
            while not predicate(self.readings):
                self._arrived.clear()
                await self._arrived.wait()

    def states(self, entity_id: str) -> list[str | None]:
        return [r.state for r in self.readings if r.entity_id == entity_id]
