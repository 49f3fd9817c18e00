"""The HTTP ingest source: devices and scripts POST Home Assistant-style state objects to the daemon.

Endpoints (bound to ``cfg.host:cfg.port``; port 0 picks a free one, see :attr:`HttpIngest.port`):

- ``POST /api/states`` with a JSON list of ``{"entity_id", "state", "attributes", "last_changed"}``
  objects (``last_updated`` optional), validated strictly;
- ``POST /api/states/{entity_id}`` with one object, HA-compatible: ``entity_id`` defaults to the
  path (and must match it), ``attributes`` to ``{}``, ``last_changed`` to the time of receipt.

A batch is accepted or rejected as a whole: one invalid item rejects every item, so a client can
simply fix and resend the batch without working out which readings already landed (and no reading
is ever applied twice). Errors are JSON ``{"error": code, "message", "index", "field"}``:

=====  ==========================  =======================================================
 400   ``bad_json``, ``bad_schema``  body is not JSON / an item fails validation (index, field)
 401   ``unauthorized``              ``token_file`` is set and the bearer token is missing/wrong
 413   ``too_large``                 body larger than ``max_body_bytes``
 415   ``unsupported_media_type``    Content-Type is not ``application/json``
 422   ``unknown_entity``            the source was given known entities and this is not one
=====  ==========================  =======================================================

Each code is counted in :attr:`HttpIngest.errors`. The only SourceError is failing to listen
(port taken, token file unreadable); bad requests never stop the server.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections import Counter
from collections.abc import Collection
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Handler

from edge.readings import Reading, Sink, SourceError
from edge.sources.base import Source, announce_up, read_token
from edge.sources.clock import SYSTEM_CLOCK, Clock
from edge.sources.states import error_field, reading_from_state_object
from shared.config.edge import HttpSource
from shared.errors import ScenarioError


class Rejected(Exception):
    """One request's rejection: becomes a JSON error reply (internal to this module)."""

    def __init__(
        self, status: int, code: str, message: str, *, index: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.index, self.field = status, code, index, field

    def response(self) -> web.Response:
        body: dict[str, object] = {"error": self.code, "message": str(self)}
        if self.index is not None:
            body["index"] = self.index
        if self.field is not None:
            body["field"] = self.field
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return web.json_response(body, status=self.status, headers=headers)


class HttpIngest(Source):
    """Serves the ingest endpoints while ``run`` runs; readings go to the sink ``run`` was given."""

    def __init__(
        self,
        cfg: HttpSource,
        *,
        known_entities: Collection[str] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "http",
    ) -> None:
        super().__init__(name)
        self._cfg = cfg
        self._known = frozenset(known_entities) if known_entities is not None else None
        self._clock = clock
        self.port: int | None = None
        self.ready = asyncio.Event()
        self.errors: Counter[str] = Counter()
        self.accepted = 0

    async def run(self, sink: Sink) -> None:
        token = read_token(self._cfg.token_file) if self._cfg.token_file is not None else None
        app = web.Application(client_max_size=self._cfg.max_body_bytes)
        app.router.add_post("/api/states", self._batch_handler(sink, token))
        app.router.add_post("/api/states/{entity_id}", self._single_handler(sink, token))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, self._cfg.host, self._cfg.port).start()
            except OSError as err:
                raise SourceError(f"{self.name}: cannot listen on {self._cfg.host}:{self._cfg.port}: {err}") from err
            self.port = int(runner.addresses[0][1])
            self.ready.set()
            announce_up(sink)
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            self.ready.clear()
            await runner.cleanup()

    def _batch_handler(self, sink: Sink, token: str | None) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, sink, token, None)

        return handle

    def _single_handler(self, sink: Sink, token: str | None) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, sink, token, request.match_info["entity_id"])

        return handle

    async def _serve(
        self, request: web.Request, sink: Sink, token: str | None, path_entity: str | None
    ) -> web.StreamResponse:
        try:
            _check_token(request, token)
            document = await self._read_json(request)
            items = [self._single(document, path_entity)] if path_entity is not None else _as_list(document)
            readings = [self._reading(item, index) for index, item in enumerate(items)]
        except Rejected as rejected:
            self.errors[rejected.code] += 1
            return rejected.response()
        for reading in readings:  # only after every item validated: a batch is atomic
            sink(reading)
        self.accepted += len(readings)
        return web.json_response({"accepted": len(readings)})

    async def _read_json(self, request: web.Request) -> object:
        if request.content_type != "application/json":
            raise Rejected(415, "unsupported_media_type", "Content-Type must be application/json")
        limit = self._cfg.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise Rejected(413, "too_large", f"body larger than {limit} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise Rejected(413, "too_large", f"body larger than {limit} bytes") from None
        try:
            return json.loads(body, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise Rejected(400, "bad_json", "body is not valid JSON (NaN and Infinity are not JSON)") from None

    def _single(self, document: object, path_entity: str) -> dict[str, object]:
        """The single-object form with HA's defaults filled in (entity_id from the path)."""
        if not isinstance(document, dict):
            raise Rejected(400, "bad_schema", "expected a JSON object (a state object)")
        if document.setdefault("entity_id", path_entity) != path_entity:
            raise Rejected(400, "bad_schema", "entity_id differs from the URL", field="entity_id")
        document.setdefault("attributes", {})
        document.setdefault("last_changed", datetime.fromtimestamp(self._clock.time(), UTC).isoformat())
        return document

    def _reading(self, item: object, index: int) -> Reading:
        if not isinstance(item, dict):
            raise Rejected(400, "bad_schema", f"item {index} is not a JSON object", index=index)
        try:
            reading = reading_from_state_object(item, self.name)
        except ScenarioError as err:
            raise Rejected(400, "bad_schema", f"item {index}: {err}", index=index, field=error_field(err)) from None
        if self._known is not None and reading.entity_id not in self._known:
            message = f"item {index}: unknown entity {reading.entity_id!r}"
            raise Rejected(422, "unknown_entity", message, index=index, field="entity_id")
        return reading


def _as_list(document: object) -> list[object]:
    if not isinstance(document, list):
        raise Rejected(400, "bad_schema", "expected a JSON list of state objects")
    return document


def _check_token(request: web.Request, token: str | None) -> None:
    if token is None:
        return
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise Rejected(401, "unauthorized", "missing or wrong bearer token")


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not allowed")
