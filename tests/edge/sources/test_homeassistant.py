"""The Home Assistant sources against a fake Home Assistant (aiohttp, real HTTP and websocket on 127.0.0.1).

The fake speaks the parts of HA's REST and websocket APIs the sources use, checks the bearer token
the way HA does, and lets the test push ``state_changed`` events or drop the connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import WSMsgType, web
from collector import Collector

from edge.readings import SourceError
from edge.sources import (
    Coordinator,
    CoordinatorStats,
    HomeAssistantAuthError,
    HomeAssistantRest,
    HomeAssistantWebSocket,
    VirtualClock,
)
from shared.config.edge import HomeAssistantSource

TOKEN = "ha-long-lived-token"
TIMEOUT_S = 10
WANTED = ("light.h_kitchen_ceiling", "sensor.h_hall_temperature", "lock.h_front_door")


def obj(entity_id: str, state: str, second: int = 0, **attributes: object) -> dict[str, object]:
    when = f"2026-06-01T10:00:{second:02d}+00:00"
    return {"entity_id": entity_id, "state": state, "attributes": attributes, "last_changed": when}


class FakeHomeAssistant:
    """``GET /api/states`` and ``/api/websocket`` with HA's auth handshake; state lives in ``states``."""

    def __init__(self) -> None:
        self.states: dict[str, dict[str, object]] = {
            "light.h_kitchen_ceiling": obj("light.h_kitchen_ceiling", "on", brightness=180),
            "sensor.h_hall_temperature": obj("sensor.h_hall_temperature", "0", unit_of_measurement="°C"),
            "sensor.h_not_wanted": obj("sensor.h_not_wanted", "12"),
            "lock.h_front_door": {"entity_id": "lock.h_front_door", "state": 5},  # invalid: skipped, counted
        }
        self.hang = False
        self.subscribed = asyncio.Event()
        self.sockets: list[web.WebSocketResponse] = []
        self.app = web.Application()
        self.app.router.add_get("/api/states", self.rest_states)
        self.app.router.add_get("/api/websocket", self.websocket)

    async def rest_states(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"message": "Invalid authentication"}, status=401)
        if self.hang:
            await asyncio.Event().wait()
        return web.json_response(list(self.states.values()))

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "auth_required", "ha_version": "2026.6.0"})
        auth = await ws.receive_json()
        if auth != {"type": "auth", "access_token": TOKEN}:
            await ws.send_json({"type": "auth_invalid", "message": "Invalid access token or password"})
            await ws.close()
            return ws
        await ws.send_json({"type": "auth_ok", "ha_version": "2026.6.0"})
        self.sockets.append(ws)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await self._command(ws, message.json())
        return ws

    async def _command(self, ws: web.WebSocketResponse, command: dict[str, object]) -> None:
        if command.get("type") == "subscribe_events":
            await ws.send_json({"id": command["id"], "type": "result", "success": True, "result": None})
            self.subscribed.set()
        elif command.get("type") == "get_states":
            result = list(self.states.values())
            await ws.send_json({"id": command["id"], "type": "result", "success": True, "result": result})

    async def push(self, entity_id: str, new_state: dict[str, object] | None) -> None:
        event = {"event_type": "state_changed", "data": {"entity_id": entity_id, "new_state": new_state}}
        for ws in self.sockets:
            await ws.send_json({"id": 1, "type": "event", "event": event})

    async def drop_connections(self) -> None:
        sockets, self.sockets = self.sockets, []
        self.subscribed.clear()
        for ws in sockets:
            await ws.close()


@pytest.fixture
async def fake_ha() -> AsyncIterator[tuple[FakeHomeAssistant, str]]:
    fake = FakeHomeAssistant()
    runner = web.AppRunner(fake.app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield fake, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await fake.drop_connections()
        await runner.cleanup()


def config(url: str, tmp_path: Path, mode: str, token: str = TOKEN) -> HomeAssistantSource:
    token_file = tmp_path / "ha_token"
    token_file.write_text(token + "\n")
    return HomeAssistantSource(type="homeassistant", url=url, token_file=token_file, mode=mode, entities=WANTED)  # type: ignore[arg-type]


class StepClock(VirtualClock):
    """The poll interval passes only when the test calls ``step()``; ``sleeping`` counts waits."""

    def __init__(self) -> None:
        super().__init__()
        self._steps: asyncio.Queue[None] = asyncio.Queue()
        self.sleeping = asyncio.Event()

    def step(self) -> None:
        self.sleeping.clear()
        self._steps.put_nowait(None)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.sleeping.set()
        await self._steps.get()


async def test_rest_polls_filters_and_reports_only_changes(
    fake_ha: tuple[FakeHomeAssistant, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.sources.homeassistant")
    fake, url = fake_ha
    clock = StepClock()
    source = HomeAssistantRest(config(url, tmp_path, "rest"), clock=clock)
    sink = Collector()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(source.run(sink))
        async with asyncio.timeout(TIMEOUT_S):
            await clock.sleeping.wait()  # first poll done
            fake.states["sensor.h_hall_temperature"] = obj("sensor.h_hall_temperature", "0.5", 30)
            clock.step()
            await clock.sleeping.wait()  # second poll done
        task.cancel()

    assert [(r.entity_id, r.state) for r in sink.readings] == [
        ("light.h_kitchen_ceiling", "on"),
        ("sensor.h_hall_temperature", "0"),  # zero is a value
        ("sensor.h_hall_temperature", "0.5"),  # the unchanged light is not repeated
    ]
    assert sink.readings[0].attributes == {"brightness": 180}
    assert clock.sleeps == [30.0, 30.0]
    assert source.problems.counts == {"bad_state": 2}  # the invalid lock, polled twice, logged once
    assert len(caplog.records) == 1 and "'state'" in caplog.records[0].getMessage()


async def test_rest_auth_failure_is_a_clear_source_error(
    fake_ha: tuple[FakeHomeAssistant, str], tmp_path: Path
) -> None:
    _, url = fake_ha
    source = HomeAssistantRest(config(url, tmp_path, "rest", token="wrong"))
    with pytest.raises(HomeAssistantAuthError, match=r"rejected the access token \(HTTP 401\)"):
        await source.run(lambda r: None)


async def test_rest_poll_that_hangs_times_out(fake_ha: tuple[FakeHomeAssistant, str], tmp_path: Path) -> None:
    fake, url = fake_ha
    fake.hang = True
    source = HomeAssistantRest(config(url, tmp_path, "rest"))
    source.poll_timeout_s = 0.1
    with pytest.raises(SourceError, match=r"did not finish within 0\.1 s"):
        await source.run(lambda r: None)


async def test_unreachable_home_assistant_is_a_source_error(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9"  # discard port: nothing listens
    with pytest.raises(SourceError, match="failed"):
        await HomeAssistantRest(config(url, tmp_path, "rest")).run(lambda r: None)
    with pytest.raises(SourceError, match="websocket"):
        await HomeAssistantWebSocket(config(url, tmp_path, "websocket")).run(lambda r: None)


async def test_websocket_states_events_and_reconnect(fake_ha: tuple[FakeHomeAssistant, str], tmp_path: Path) -> None:
    fake, url = fake_ha
    clock = VirtualClock()
    sink = Collector()
    changes: asyncio.Queue[CoordinatorStats] = asyncio.Queue()
    source = HomeAssistantWebSocket(config(url, tmp_path, "websocket"), clock=clock)
    coordinator = Coordinator(source, sink, clock=clock, on_change=changes.put_nowait)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(coordinator.run())
        async with asyncio.timeout(TIMEOUT_S):
            assert (await changes.get()).state == "up"
            await sink.wait_for(lambda got: len(got) == 2)  # get_states: the wanted, valid entities
            await fake.push("sensor.h_not_wanted", obj("sensor.h_not_wanted", "13", 5))
            await fake.push("light.h_kitchen_ceiling", obj("light.h_kitchen_ceiling", "off", 6))
            await fake.push("sensor.h_hall_temperature", None)  # entity removed in HA
            await sink.wait_for(lambda got: len(got) == 4)

            await fake.drop_connections()
            assert (await changes.get()).state == "down"
            assert (await changes.get()).state == "up"
            await sink.wait_for(lambda got: len(got) == 7)  # marked unavailable, then fresh states
        task.cancel()

    assert [(r.entity_id, r.state) for r in sink.readings] == [
        ("light.h_kitchen_ceiling", "on"),
        ("sensor.h_hall_temperature", "0"),
        ("light.h_kitchen_ceiling", "off"),
        ("sensor.h_hall_temperature", None),
        ("light.h_kitchen_ceiling", None),  # the coordinator's unavailable marker
        ("light.h_kitchen_ceiling", "on"),
        ("sensor.h_hall_temperature", "0"),
    ]
    assert sink.readings[3].ts == VirtualClock().time()  # stamped by the injected clock
    assert coordinator.stats.recoveries == 1 and "closed" in (coordinator.stats.last_error or "")


async def test_websocket_auth_failure_is_a_clear_source_error(
    fake_ha: tuple[FakeHomeAssistant, str], tmp_path: Path
) -> None:
    _, url = fake_ha
    source = HomeAssistantWebSocket(config(url, tmp_path, "websocket", token="expired"))
    with pytest.raises(HomeAssistantAuthError, match="rejected the access token: Invalid access token"):
        await source.run(lambda r: None)


async def test_missing_token_file_is_a_source_error(tmp_path: Path) -> None:
    cfg = HomeAssistantSource(type="homeassistant", url="http://127.0.0.1:9", token_file=tmp_path / "absent")
    with pytest.raises(SourceError, match="cannot read token_file"):
        await HomeAssistantWebSocket(cfg).run(lambda r: None)
