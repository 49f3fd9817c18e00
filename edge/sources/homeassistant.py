"""Home Assistant as a source: the REST poller and the websocket subscriber.

- ``rest``: ``GET /api/states`` every ``poll_s`` with ``Authorization: Bearer <token>``; only
  entities whose state object changed since the previous poll become readings.
- ``websocket``: ``/api/websocket``; the handshake is ``auth_required`` → ``{"type": "auth",
  "access_token"}`` → ``auth_ok``, then ``subscribe_events`` for ``state_changed`` (each event
  carries ``event.data.new_state``) and one ``get_states`` so the twin starts with the full picture.

Both read the token from ``token_file`` at every (re)connect, so a rotated token is picked up, and
filter by ``entities`` when it is non-empty. A rejected token is :class:`HomeAssistantAuthError`, a
SourceError whose message says so; a dropped connection is a plain SourceError; the coordinator
reconnects either. A state object that fails validation is counted and logged once per entity and
skipped: one odd integration must not blind the twin to the rest of the house.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Final

import aiohttp

from edge.readings import Reading, Sink, SourceError
from edge.sources.base import OnceLog, PollingSource, Source, announce_up, read_token
from edge.sources.clock import SYSTEM_CLOCK, Clock
from edge.sources.states import reading_from_state_object
from shared.config.edge import HomeAssistantSource
from shared.errors import ScenarioError
from shared.scenario import ENTITY_ID_RE

log = logging.getLogger(__name__)

MAX_WS_MESSAGE_BYTES: Final = 16 << 20  # get_states of a large installation is several MiB
SUBSCRIBE_ID: Final = 1
GET_STATES_ID: Final = 2


class HomeAssistantAuthError(SourceError):
    """Home Assistant refused the access token (HTTP 401/403 or ``auth_invalid``)."""


class _StateFilter:
    """Turns HA state objects into readings: entity filter, strict validation, bad ones counted."""

    def __init__(self, entities: Sequence[str], name: str) -> None:
        self._entities = frozenset(entities)
        self._name = name
        self.problems = OnceLog(log)

    def removed(self, entity_id: object, now: float) -> Reading | None:
        """The unavailable reading for an entity HA removed (``new_state: null``), if we track it."""
        if not isinstance(entity_id, str) or not ENTITY_ID_RE.match(entity_id):
            return None
        if self._entities and entity_id not in self._entities:
            return None
        return Reading(entity_id, None, {}, now, self._name)

    def reading(self, obj: object) -> Reading | None:
        entity_id = obj.get("entity_id") if isinstance(obj, Mapping) else None
        if self._entities and entity_id not in self._entities:
            return None
        if not isinstance(obj, Mapping):
            self.problems.report(None, "bad_state", "%s: a state object is not a JSON object", self._name)
            return None
        try:
            return reading_from_state_object(obj, self._name)
        except ScenarioError as err:
            key = entity_id if isinstance(entity_id, str) else None
            self.problems.report(key, "bad_state", "%s: skipped invalid state object: %s", self._name, err)
            return None


class HomeAssistantRest(PollingSource):
    """Polls ``GET /api/states``; see the module docstring."""

    def __init__(self, cfg: HomeAssistantSource, *, clock: Clock = SYSTEM_CLOCK, name: str = "homeassistant") -> None:
        super().__init__(name, interval_s=cfg.poll_s, clock=clock)
        self._cfg = cfg
        self._url = cfg.url.rstrip("/") + "/api/states"
        self._states = _StateFilter(cfg.entities, name)
        self._last: dict[str, Reading] = {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def problems(self) -> OnceLog:
        return self._states.problems

    async def run(self, sink: Sink) -> None:
        self._last.clear()  # after a restart the coordinator has marked everything unavailable
        token = read_token(self._cfg.token_file)
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            self._session = session
            try:
                await super().run(sink)
            finally:
                self._session = None

    async def poll(self) -> list[Reading]:
        if self._session is None:
            raise SourceError(f"{self.name}: poll outside run()")
        try:
            async with self._session.get(self._url) as response:
                if response.status in (401, 403):
                    raise HomeAssistantAuthError(
                        f"{self.name}: Home Assistant rejected the access token (HTTP {response.status})"
                    )
                if response.status != 200:
                    raise SourceError(f"{self.name}: GET /api/states answered HTTP {response.status}")
                document = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise SourceError(f"{self.name}: GET {self._url} failed: {err or type(err).__name__}") from err
        if not isinstance(document, list):
            raise SourceError(f"{self.name}: /api/states did not return a JSON list")
        return self._changed(document)

    def _changed(self, objects: list[object]) -> list[Reading]:
        out: list[Reading] = []
        for obj in objects:
            reading = self._states.reading(obj)
            if reading is not None and self._last.get(reading.entity_id) != reading:
                self._last[reading.entity_id] = reading
                out.append(reading)
        return out


class HomeAssistantWebSocket(Source):
    """Subscribes to ``state_changed`` over ``/api/websocket``; see the module docstring."""

    def __init__(
        self,
        cfg: HomeAssistantSource,
        *,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "homeassistant",
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(name)
        self._cfg = cfg
        self._clock = clock
        base = cfg.url.rstrip("/")
        self._url = "ws" + base.removeprefix("http") + "/api/websocket"  # http->ws, https->wss
        self._timeout_s = timeout_s
        self._states = _StateFilter(cfg.entities, name)

    @property
    def problems(self) -> OnceLog:
        return self._states.problems

    async def run(self, sink: Sink) -> None:
        token = read_token(self._cfg.token_file)
        timeout = aiohttp.ClientTimeout(total=None, connect=self._timeout_s, sock_connect=self._timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.ws_connect(self._url, heartbeat=30.0, max_msg_size=MAX_WS_MESSAGE_BYTES) as ws,
            ):
                await self._authenticate(ws, token)
                await ws.send_json({"id": SUBSCRIBE_ID, "type": "subscribe_events", "event_type": "state_changed"})
                await ws.send_json({"id": GET_STATES_ID, "type": "get_states"})
                async for message in ws:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    self._dispatch(_json_object(message.data, self.name), sink)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise SourceError(f"{self.name}: websocket {self._url} failed: {err or type(err).__name__}") from err
        raise SourceError(f"{self.name}: Home Assistant closed the websocket")

    async def _authenticate(self, ws: aiohttp.ClientWebSocketResponse, token: str) -> None:
        first = await self._receive(ws)
        if first.get("type") != "auth_required":
            raise SourceError(f"{self.name}: expected auth_required, got {str(first.get('type'))[:40]!r}")
        await ws.send_json({"type": "auth", "access_token": token})
        reply = await self._receive(ws)
        if reply.get("type") == "auth_invalid":
            detail = str(reply.get("message", ""))[:120]
            raise HomeAssistantAuthError(f"{self.name}: Home Assistant rejected the access token: {detail}")
        if reply.get("type") != "auth_ok":
            raise SourceError(f"{self.name}: expected auth_ok, got {str(reply.get('type'))[:40]!r}")

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> Mapping[str, object]:
        message = await ws.receive(timeout=self._timeout_s)
        if message.type != aiohttp.WSMsgType.TEXT:
            raise SourceError(f"{self.name}: websocket closed during the handshake ({message.type.name})")
        return _json_object(message.data, self.name)

    def _dispatch(self, message: Mapping[str, object], sink: Sink) -> None:
        kind, ident = message.get("type"), message.get("id")
        if kind == "result":
            if message.get("success") is not True:
                raise SourceError(f"{self.name}: Home Assistant refused request {ident!r}: {message.get('error')}")
            if ident == SUBSCRIBE_ID:
                announce_up(sink)
            elif ident == GET_STATES_ID and isinstance(result := message.get("result"), list):
                self._emit(result, sink)
        elif kind == "event" and ident == SUBSCRIBE_ID:
            self._on_event(message.get("event"), sink)

    def _on_event(self, event: object, sink: Sink) -> None:
        data = event.get("data") if isinstance(event, Mapping) else None
        if not isinstance(data, Mapping):
            return
        new_state = data.get("new_state")
        if new_state is not None:
            self._emit([new_state], sink)
            return
        removed = self._states.removed(data.get("entity_id"), self._clock.time())  # entity deleted in HA
        if removed is not None:
            sink(removed)

    def _emit(self, objects: list[object], sink: Sink) -> None:
        for obj in objects:
            reading = self._states.reading(obj)
            if reading is not None:
                sink(reading)


def _json_object(data: object, name: str) -> Mapping[str, object]:
    try:
        document = json.loads(data) if isinstance(data, str | bytes) else None
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        raise SourceError(f"{name}: Home Assistant sent a websocket message that is not a JSON object")
    return document
