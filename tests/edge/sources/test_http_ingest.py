"""The HTTP ingest endpoint over real HTTP on 127.0.0.1: a valid batch, and every 4xx reply."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from edge.readings import Reading, SourceError
from edge.sources import HttpIngest, VirtualClock
from shared.config.edge import HttpSource

TOKEN = "s3cret-token"
KNOWN = {"light.h1_kitchen_ceiling", "sensor.h1_hall_temperature", "lock.h1_front_door"}
WHEN = "2026-06-01T19:02:11.250000+00:00"
WHEN_EPOCH = 1780340531.25


def state(entity_id: str = "light.h1_kitchen_ceiling", value: str = "on", **extra: object) -> dict[str, object]:
    return {"entity_id": entity_id, "state": value, "attributes": {"brightness": 180}, "last_changed": WHEN, **extra}


Headers = dict[str, str] | None


@dataclass
class Running:
    ingest: HttpIngest
    readings: list[Reading]
    http: aiohttp.ClientSession

    def url(self, path: str = "/api/states") -> str:
        return f"http://127.0.0.1:{self.ingest.port}{path}"

    async def post(
        self, body: object = None, *, path: str = "/api/states", data: bytes | None = None, headers: Headers = None
    ) -> tuple[int, dict[str, object]]:
        """POST ``body`` as JSON (or raw ``data``) with the right token unless ``headers`` override it."""
        sent = {"Authorization": f"Bearer {TOKEN}", **(headers or {})}
        json_body = body if data is None else None
        async with self.http.post(self.url(path), headers=sent, json=json_body, data=data) as response:
            return response.status, await response.json()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    cfg = HttpSource(type="http", host="127.0.0.1", port=0, max_body_bytes=2048, token_file=token_file)
    ingest = HttpIngest(cfg, known_entities=KNOWN, clock=VirtualClock())
    readings: list[Reading] = []
    # a task owned by the fixture (not a TaskGroup: setup and teardown may run in different tasks)
    task = asyncio.create_task(ingest.run(readings.append))
    try:
        async with asyncio.timeout(5):
            await ingest.ready.wait()
        async with aiohttp.ClientSession() as http:
            yield Running(ingest, readings, http)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_valid_batch_becomes_readings(running: Running) -> None:
    batch = [
        state(),
        state("sensor.h1_hall_temperature", "0", last_updated="2026-06-01T19:02:12.250000+00:00"),
        state("lock.h1_front_door", "unavailable"),
    ]
    status, body = await running.post(batch)
    assert (status, body) == (200, {"accepted": 3})
    assert running.readings == [
        Reading("light.h1_kitchen_ceiling", "on", {"brightness": 180}, WHEN_EPOCH, "http"),
        Reading("sensor.h1_hall_temperature", "0", {"brightness": 180}, WHEN_EPOCH + 1, "http"),  # 0 is a value
        Reading("lock.h1_front_door", None, {"brightness": 180}, WHEN_EPOCH, "http"),  # HA's unavailable
    ]
    assert running.ingest.accepted == 3 and not running.ingest.errors


async def test_single_state_object_takes_ha_defaults(running: Running) -> None:
    status, _ = await running.post({"state": "21.5"}, path="/api/states/sensor.h1_hall_temperature")
    assert status == 200
    (reading,) = running.readings
    assert (reading.entity_id, reading.state, dict(reading.attributes), reading.ts) == (
        "sensor.h1_hall_temperature",
        "21.5",
        {},
        VirtualClock().time(),  # last_changed defaults to the time of receipt
    )


BAD_ITEM = {"entity_id": "sensor.h1_hall_temperature", "attributes": {}, "last_changed": WHEN}
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Bad:
    """One rejected request and the reply it must get."""

    case: str
    status: int
    expected: dict[str, object]
    body: object = None
    data: bytes | None = None
    headers: Headers = None
    path: str = "/api/states"


ERRORS = [
    Bad("not json", 400, {"error": "bad_json"}, data=b"{nope", headers=JSON),
    Bad("nan", 400, {"error": "bad_json"}, data=b"[NaN]", headers=JSON),
    Bad("not a list", 400, {"error": "bad_schema"}, body={"entity_id": "x"}),
    Bad("missing field", 400, {"error": "bad_schema", "index": 1, "field": "state"}, body=[state(), BAD_ITEM]),
    Bad(
        "bad attribute",
        400,
        {"error": "bad_schema", "index": 0, "field": "attributes.a"},
        body=[state(attributes={"a": {"nested": 1}})],
    ),
    Bad("not an object", 400, {"error": "bad_schema", "index": 1}, body=[state(), 7]),
    Bad("no token", 401, {"error": "unauthorized"}, body=[state()], headers={"Authorization": ""}),
    Bad("wrong token", 401, {"error": "unauthorized"}, body=[state()], headers={"Authorization": "Bearer nope"}),
    Bad("too large", 413, {"error": "too_large"}, body=[state()] * 20),
    Bad("text/plain", 415, {"error": "unsupported_media_type"}, data=b"[]", headers={"Content-Type": "text/plain"}),
    Bad(
        "unknown entity",
        422,
        {"error": "unknown_entity", "index": 1, "field": "entity_id"},
        body=[state(), state("switch.h1_unknown")],
    ),
    Bad(
        "path mismatch",
        400,
        {"error": "bad_schema", "field": "entity_id"},
        body=state(),
        path="/api/states/lock.h1_front_door",
    ),
]


@pytest.mark.parametrize("bad", ERRORS, ids=[e.case for e in ERRORS])
async def test_rejections_are_json_4xx_and_atomic(running: Running, bad: Bad) -> None:
    status, got = await running.post(bad.body, path=bad.path, data=bad.data, headers=bad.headers)
    assert status == bad.status, got
    assert {k: got.get(k) for k in bad.expected} == bad.expected
    assert isinstance(got["message"], str) and got["message"]
    assert running.readings == []  # one bad item rejects the whole batch
    assert running.ingest.errors == {bad.expected["error"]: 1}


async def test_a_taken_port_is_a_source_error(running: Running) -> None:
    taken = HttpSource(type="http", host="127.0.0.1", port=running.ingest.port or 1)
    with pytest.raises(SourceError, match="cannot listen"):
        await HttpIngest(taken).run(lambda r: None)
