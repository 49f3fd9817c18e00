"""The simulator replays one home's scenario trace: order, pacing by an injected clock, static facts."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from edge.readings import Reading
from edge.sources import Simulator, VirtualClock
from shared.config.edge import SimulatorSource
from shared.scenario import Scenario, StateChange, generate

HOUR_S = 3600.0


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(seed=7, homes=3, duration_s=HOUR_S)


def simulator(scenario: Scenario, home: int = 2, speed: float = 60.0, clock: VirtualClock | None = None) -> Simulator:
    cfg = SimulatorSource(type="simulator", home=home, seed=7, homes=3, speed=speed)
    return Simulator(cfg, clock=clock or VirtualClock(), scenario=scenario)


def home_trace(scenario: Scenario, home: int) -> list[StateChange]:
    ids = {e.entity_id for e in scenario.homes[home - 1].entities}
    return [c for c in scenario.trace if c.entity_id in ids]


def epoch(scenario: Scenario) -> float:
    return datetime.fromisoformat(scenario.start_iso).timestamp()


async def replay(sim: Simulator, clock: VirtualClock, count: int) -> list[tuple[float, Reading]]:
    """Run the simulator until it produced ``count`` readings; each paired with the clock's time."""
    got: list[tuple[float, Reading]] = []
    enough = asyncio.Event()

    def sink(reading: Reading) -> None:
        got.append((clock.monotonic(), reading))
        if len(got) >= count:
            enough.set()

    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(sim.run(sink))
        async with asyncio.timeout(10):
            await enough.wait()
        task.cancel()
    return got


async def test_replays_one_home_in_order_on_an_accelerated_clock(scenario: Scenario) -> None:
    clock = VirtualClock()
    sim = simulator(scenario, home=2, speed=60.0, clock=clock)
    trace = home_trace(scenario, 2)
    got = await replay(sim, clock, len(trace))

    readings = [r for _, r in got[: len(trace)]]
    assert [(r.entity_id, r.state, dict(r.attributes)) for r in readings] == [
        (c.entity_id, c.state, dict(c.attributes)) for c in trace
    ]
    assert all(r.entity_id.split(".")[1].startswith("home2_") for r in readings)
    assert [r.ts for r in readings] == [epoch(scenario) + c.ts_s for c in trace]
    assert [(r.ts, r.entity_id) for r in readings] == sorted((r.ts, r.entity_id) for r in readings)
    # each reading is released when the clock reaches its simulated time / speed
    for (at, _), change in zip(got, trace, strict=False):
        assert at == pytest.approx(change.ts_s / 60.0, abs=1e-9)
    assert all(delay > 0 for delay in clock.sleeps)  # one sleep per distinct timestamp, never a busy loop
    assert len(clock.sleeps) <= len({c.ts_s for c in trace}) + 1
    assert {r.source for r in readings} == {"simulator"}


async def test_a_restart_continues_where_the_replay_stopped(scenario: Scenario) -> None:
    clock = VirtualClock()
    sim = simulator(scenario, clock=clock)
    first = await replay(sim, clock, 40)
    second = await replay(sim, clock, 40)
    trace = home_trace(scenario, 2)
    replayed = [r.entity_id for _, r in first + second]
    assert replayed == [c.entity_id for c in trace[: len(replayed)]]


async def test_the_day_repeats_after_the_trace_ends(scenario: Scenario) -> None:
    sim = simulator(scenario, home=1)
    trace = home_trace(scenario, 1)
    readings = sim.readings_until(HOUR_S + 0.0)
    assert len(readings) == len(trace) + sum(1 for c in trace if c.ts_s == 0.0)
    second_lap = readings[len(trace) :]
    assert all(r.ts == epoch(scenario) + HOUR_S for r in second_lap)


def test_readings_until_is_the_unpaced_replay(scenario: Scenario) -> None:
    sim = simulator(scenario, home=3)
    trace = home_trace(scenario, 3)
    chunks = [sim.readings_until(t) for t in (0.0, 0.0, 59.9, 600.0, 3599.999)]
    assert chunks[1] == []  # nothing twice
    assert [r.entity_id for chunk in chunks for r in chunk] == [c.entity_id for c in trace]
    assert sim.position_s == 3599.999
    assert all(r.ts <= epoch(scenario) + 59.9 for r in chunks[2])


def test_static_records_are_the_homes_facts_with_sensitive_flags(scenario: Scenario) -> None:
    sim = simulator(scenario, home=1)
    home = scenario.homes[0]
    records = sim.static_records()
    assert [(r.entity_id, r.attribute, r.value, r.sensitive) for r in records] == [
        (f.entity_id, f.attribute, f.value, f.sensitive) for f in home.static_facts()
    ]
    sensitive = {r.attribute for r in records if r.sensitive}
    assert {"door_code", "owner_name"} <= sensitive
    assert any(not r.sensitive for r in records)
    assert {r.entity_id.split(".")[1].split("_")[0] for r in records} == {"home1"}
