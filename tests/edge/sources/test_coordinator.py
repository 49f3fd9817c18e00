"""The coordinator: logs once per transition, marks entities unavailable, backs off, bounds hangs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from edge.readings import Reading, Sink, SourceError
from edge.sources import Backoff, Coordinator, CoordinatorStats, PollingSource, Source, VirtualClock, announce_up

LOGGER = "edge.sources.coordinator"


@dataclass(frozen=True)
class Step:
    """One ``run`` of a scripted source: emit these readings, optionally announce up, then end so."""

    emit: tuple[tuple[str, str | None], ...] = ()
    up: bool = False
    error: Exception | None = None


class ScriptedSource(Source):
    """Each ``run`` plays the next step; after the last step ``run`` returns (the source finished)."""

    def __init__(self, steps: Sequence[Step]) -> None:
        super().__init__("scripted")
        self._steps = list(steps)
        self.runs = 0

    async def run(self, sink: Sink) -> None:
        self.runs += 1
        if not self._steps:
            return
        step = self._steps.pop(0)
        if step.up:
            announce_up(sink)
        for entity_id, state in step.emit:
            sink(Reading(entity_id, state, {}, 100.0, self.name))
        if step.error is not None:
            raise step.error
        if self._steps:  # more steps queued: this run ended without error, so the test scripted a bug
            raise AssertionError("a step without error must be the last one")


def run_script(
    steps: Sequence[Step], backoff: Backoff | None = None
) -> tuple[list[Reading], Coordinator, VirtualClock]:
    clock = VirtualClock()
    got: list[Reading] = []
    coordinator = Coordinator(ScriptedSource(steps), got.append, backoff=backoff, clock=clock)
    asyncio.run(asyncio.wait_for(coordinator.run(), 5))
    return got, coordinator, clock


def test_down_once_up_once_and_unavailable_marking(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    gone = SourceError("broker 127.0.0.1:1 refused")
    steps = [
        Step(emit=(("sensor.a", "0"), ("sensor.b", "21.5")), error=gone),
        Step(error=gone),
        Step(error=gone),
        Step(error=gone),
        Step(emit=(("sensor.a", "1"),)),
    ]
    got, coordinator, clock = run_script(steps, Backoff(initial_s=1, max_s=300))

    assert [(r.entity_id, r.state) for r in got] == [
        ("sensor.a", "0"),  # zero is a value: it is reported, and later marked unavailable
        ("sensor.b", "21.5"),
        ("sensor.a", None),
        ("sensor.b", None),
        ("sensor.a", "1"),
    ]
    assert (got[2].ts, got[2].source) == (VirtualClock().time(), "scripted")  # stamped when it went down
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()
    assert "refused" in warnings[0].getMessage()
    assert len(infos) == 2  # recovered, finished
    assert "recovered after 4 failed attempts" in infos[0].getMessage()
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]
    assert coordinator.stats == CoordinatorStats(
        source="scripted",
        state="up",
        readings=3,
        failures=4,
        recoveries=1,
        marked_unavailable=2,
        last_error="broker 127.0.0.1:1 refused",
    )


def test_zero_states_are_values_not_missing() -> None:
    zeros = (("sensor.z_int", "0"), ("sensor.z_float", "0.0"), ("sensor.z_neg", "-0"))
    got, coordinator, _ = run_script([Step(emit=zeros, error=SourceError("x")), Step()])
    marked = [r.entity_id for r in got if r.state is None]
    assert marked == sorted(e for e, _ in zeros)
    assert coordinator.stats.readings == 3


def test_entity_the_source_itself_marked_unavailable_is_not_marked_again() -> None:
    got, _, _ = run_script([Step(emit=(("sensor.a", "5"), ("sensor.a", None)), error=SourceError("x")), Step()])
    assert [(r.entity_id, r.state) for r in got] == [("sensor.a", "5"), ("sensor.a", None)]


def test_announce_up_logs_recovery_before_any_reading(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    transitions: list[str] = []
    clock = VirtualClock()
    source = ScriptedSource([Step(error=SourceError("down")), Step(up=True)])
    coordinator = Coordinator(source, lambda r: None, clock=clock, on_change=lambda s: transitions.append(s.state))
    asyncio.run(asyncio.wait_for(coordinator.run(), 5))
    assert transitions == ["down", "up"]
    assert any("recovered" in r.getMessage() for r in caplog.records)
    assert coordinator.stats.readings == 0 and coordinator.stats.recoveries == 1


def test_backoff_resets_after_recovery() -> None:
    down = SourceError("down")
    steps = [Step(error=down), Step(error=down), Step(up=True, error=down), Step(error=down), Step(up=True)]
    _, coordinator, clock = run_script(steps, Backoff(initial_s=0.5, max_s=10))
    assert clock.sleeps == [0.5, 1.0, 0.5, 1.0]
    assert coordinator.stats.recoveries == 2  # down -> up (step 3) and down -> up (the final run)


def test_unexpected_error_is_logged_once_with_traceback_and_survived(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    bug = KeyError("oops")
    got, coordinator, _ = run_script([Step(emit=(("sensor.a", "1"),), error=bug), Step(error=bug), Step()])
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert got[-1] == Reading("sensor.a", None, {}, got[-1].ts, "scripted")
    assert coordinator.stats.failures == 2


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(0, 1.0), (1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0), (10, 300.0), (10_000, 300.0)],
)
def test_backoff_delays(failures: int, expected: float) -> None:
    assert Backoff(initial_s=1.0, max_s=300.0).delay(failures) == expected


class HangingPoller(PollingSource):
    """Answers its first poll, then hangs forever (a device that stopped responding mid-request)."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__("poller", interval_s=10.0, poll_timeout_s=0.05, clock=clock)
        self.polls = 0

    async def poll(self) -> list[Reading]:
        self.polls += 1
        if self.polls == 1:
            return [Reading("sensor.p", "0", {}, 1.0, self.name)]
        await asyncio.Event().wait()  # never returns
        raise AssertionError("unreachable")


async def test_a_hanging_poll_becomes_a_source_error_and_marks_unavailable() -> None:
    clock = VirtualClock()
    marked = asyncio.Event()
    got: list[Reading] = []

    def sink(reading: Reading) -> None:
        got.append(reading)
        if reading.state is None:
            marked.set()

    coordinator = Coordinator(HangingPoller(clock), sink, clock=clock)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(coordinator.run())
        async with asyncio.timeout(5):
            await marked.wait()
        task.cancel()
    assert [(r.entity_id, r.state) for r in got] == [("sensor.p", "0"), ("sensor.p", None)]
    assert coordinator.stats.state == "down"
    assert "did not finish within 0.05 s" in (coordinator.stats.last_error or "")
    assert clock.sleeps[0] == 10.0  # the poll interval, then back-off
