"""The simulator source: replays one home of the seeded scenario as if its sensors were live.

Every simulated device is "home N of ``generate(seed, homes)``", so the gateway and other twins can
reason about the same deterministic world. Readings carry the scenario's own timestamps (scenario
start epoch + ``ts_s``), not the wall clock, so a replay at any speed yields identical readings.

Pacing: ``speed`` simulated seconds pass per real (clock) second; the clock is injected, so tests
replay a day in milliseconds with a :class:`~edge.sources.clock.VirtualClock`. When the trace ends
the day repeats, shifted by the scenario's duration, so a long-running daemon never runs dry.
Benchmarks skip pacing entirely and pull readings with :meth:`Simulator.readings_until`.
"""

from __future__ import annotations

from datetime import datetime

from edge.readings import Reading, Sink, SourceError, StaticRecord
from edge.sources.base import Source, announce_up
from edge.sources.clock import SYSTEM_CLOCK, Clock
from shared.config.edge import SimulatorSource
from shared.scenario import Home, Scenario, StateChange, generate
from shared.scenario.routine import DAY_S


class Simulator(Source):
    """Replays ``scenario.homes[cfg.home - 1]``; a cursor remembers how far the replay has come."""

    def __init__(
        self,
        cfg: SimulatorSource,
        *,
        clock: Clock = SYSTEM_CLOCK,
        scenario: Scenario | None = None,
        duration_s: float = DAY_S,
        name: str = "simulator",
    ) -> None:
        super().__init__(name)
        self.scenario = scenario if scenario is not None else generate(cfg.seed, cfg.homes, duration_s)
        if not 1 <= cfg.home <= len(self.scenario.homes):
            raise SourceError(f"simulator: home {cfg.home} not in 1..{len(self.scenario.homes)}")
        self.home: Home = self.scenario.homes[cfg.home - 1]
        ids = {e.entity_id for e in self.home.entities}
        self._trace: tuple[StateChange, ...] = tuple(c for c in self.scenario.trace if c.entity_id in ids)
        if not self._trace:
            raise SourceError(f"simulator: home {self.home.home_id} has an empty trace")
        self._epoch = datetime.fromisoformat(self.scenario.start_iso).timestamp()
        self._speed = cfg.speed
        self._start_s = cfg.start_h * 3600.0
        self._clock = clock
        self._lap = 0
        self._index = 0
        self._position = 0.0  # simulated seconds already replayed

    @property
    def position_s(self) -> float:
        """Simulated seconds since the scenario start that the replay has reached."""
        return self._position

    def next_time_s(self) -> float:
        """Simulated time of the next change (later laps are shifted by the scenario duration)."""
        return self._lap * self.scenario.duration_s + self._trace[self._index].ts_s

    def static_records(self) -> list[StaticRecord]:
        """The home's static facts with their sensitivity flags (sensitive ones never leave the edge)."""
        return [StaticRecord(f.entity_id, f.attribute, f.value, f.sensitive) for f in self.home.static_facts()]

    def readings_until(self, t_s: float) -> list[Reading]:
        """Every change at or before simulated time ``t_s`` not returned yet, without any pacing."""
        out: list[Reading] = []
        while (at := self.next_time_s()) <= t_s:
            change = self._trace[self._index]
            out.append(Reading(change.entity_id, change.state, change.attributes, self._epoch + at, self.name))
            self._index += 1
            if self._index == len(self._trace):
                self._index = 0
                self._lap += 1
        self._position = max(self._position, t_s)
        return out

    async def run(self, sink: Sink) -> None:
        """Replay in (scaled) real time; a restart continues where the previous run stopped.

        The first run starts ``start_h`` into the scenario: everything before it arrives at once,
        so the state is complete from the first tick.
        """
        announce_up(sink)
        if self._position < self._start_s:
            for reading in self.readings_until(self._start_s):
                sink(reading)
        anchor = self._clock.monotonic() - self._position / self._speed
        while True:
            at = self.next_time_s()
            delay = anchor + at / self._speed - self._clock.monotonic()
            if delay > 0:
                await self._clock.sleep(delay)
            for reading in self.readings_until(at):
                sink(reading)
