"""The coordinator: runs one source forever, turning its failures into unavailability and retries.

Modelled on Home Assistant's ``DataUpdateCoordinator``: a source raises one typed error
(:class:`~edge.readings.SourceError`); the coordinator logs once when the source goes down and once
when it recovers (never every failed attempt, or a dead broker floods the journal), marks the
entities the source had reported as unavailable (``state=None``) instead of letting the twin serve
stale values, and restarts the source with exponential back-off. Zero is a valid reading: only
``state is None`` means unavailable.

Any other exception from a source is a bug in it; it is handled like a failure (logged once with its
traceback) so one broken source cannot take the whole daemon down, and it is counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from edge.readings import Reading, Sink, SourceError
from edge.sources.base import Feed, Source
from edge.sources.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

State = Literal["starting", "up", "down"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential back-off between restarts: ``initial_s * factor**(n-1)`` capped at ``max_s``."""

    initial_s: float = 1.0
    max_s: float = 300.0
    factor: float = 2.0

    def delay(self, failures_in_a_row: int) -> float:
        exponent = min(max(failures_in_a_row - 1, 0), 64)  # capped: 2.0**2000 overflows a float
        return float(min(self.max_s, self.initial_s * self.factor**exponent))


@dataclass(frozen=True, slots=True)
class CoordinatorStats:
    """A snapshot of one coordinated source, for /metrics and the daemon's status line."""

    source: str
    state: State
    readings: int  # readings the source produced (unavailability markers not included)
    failures: int  # failed runs (each SourceError or unexpected error)
    recoveries: int  # down -> up transitions
    marked_unavailable: int  # state=None readings the coordinator emitted for the source's entities
    last_error: str | None


class Coordinator:
    """Runs ``source`` into ``sink`` until cancelled; see the module docstring for the policy."""

    def __init__(
        self,
        source: Source,
        sink: Sink,
        *,
        backoff: Backoff | None = None,
        clock: Clock = SYSTEM_CLOCK,
        on_change: Callable[[CoordinatorStats], None] | None = None,
    ) -> None:
        """``on_change`` hears every up/down transition (the daemon's status line, tests waiting)."""
        self.source = source
        self._sink = sink
        self._on_change = on_change
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._state: State = "starting"
        self._reported: set[str] = set()
        self._readings = 0
        self._failures = 0
        self._failures_in_a_row = 0
        self._recoveries = 0
        self._marked = 0
        self._last_error: str | None = None

    @property
    def stats(self) -> CoordinatorStats:
        return CoordinatorStats(
            self.source.name,
            self._state,
            self._readings,
            self._failures,
            self._recoveries,
            self._marked,
            self._last_error,
        )

    async def run(self) -> None:
        """Run the source, restarting it after failures; returns only if the source finishes."""
        while True:
            try:
                await self.source.run(Feed(self._on_reading, self._on_up))
            except SourceError as err:
                self._on_down(err, unexpected=False)
            except Exception as err:  # a bug in the source: keep the daemon up, but say so loudly
                self._on_down(err, unexpected=True)
            else:
                log.info("source %s finished", self.source.name)
                return
            await self._clock.sleep(self._backoff.delay(self._failures_in_a_row))

    def _on_reading(self, reading: Reading) -> None:
        if self._state != "up":
            self._on_up()
        self._readings += 1
        if reading.state is None:
            self._reported.discard(reading.entity_id)
        else:
            self._reported.add(reading.entity_id)
        self._sink(reading)

    def _on_up(self) -> None:
        if self._state == "up":
            return
        if self._state == "down":
            self._recoveries += 1
            log.info("source %s recovered after %d failed attempts", self.source.name, self._failures_in_a_row)
        self._state = "up"
        self._failures_in_a_row = 0
        self._changed()

    def _on_down(self, err: Exception, *, unexpected: bool) -> None:
        self._failures += 1
        self._failures_in_a_row += 1
        self._last_error = str(err) or type(err).__name__
        if self._state == "down":
            log.debug("source %s still down: %s", self.source.name, self._last_error)
            return
        if unexpected:
            log.error("source %s failed unexpectedly (a bug)", self.source.name, exc_info=err)
        else:
            log.warning("source %s is unavailable: %s", self.source.name, self._last_error)
        self._state = "down"
        self._mark_unavailable()
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.stats)

    def _mark_unavailable(self) -> None:
        """Emit ``state=None`` for every entity the source reported, so nobody serves stale values."""
        now = self._clock.time()
        for entity_id in sorted(self._reported):
            self._sink(Reading(entity_id, None, {}, now, self.source.name))
            self._marked += 1
        self._reported.clear()
