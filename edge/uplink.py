"""The uplink: drains the outbox to the gateway, in order, exactly once per rid.

One item at a time (ordered per twin, and prompts are small): send with the item's rid and wait for
its FINAL. On a time-out the gateway may or may not have it, so the next attempt first asks with
FETCH (a few bytes) and resends the full message only if the gateway answers 404. 429 and 5xx are
retried after ``retry_after_ms`` or an exponential backoff with jitter; any other 4xx is definitive:
the item is marked rejected with its reason and the queue moves on. Adapter uploads are driven
chunk by chunk from the offset the gateway reports, so an interrupted upload resumes.

After every reconnect the uplink says HELLO; if the gateway holds fewer state prompts than were
acknowledged (it lost data), the compressor is asked for a keyframe.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.client import Reply, TwinClient
from edge.outbox import Item, Merge, Outbox
from shared.config.edge import GatewayLink
from shared.db import Database
from shared.protocol import messages as m
from shared.protocol import pack_body, unpack_body
from shared.protocol.results import HelloResult, UploadStatus

log = logging.getLogger(__name__)

RETRY_STATUSES = {409, 429, 500, 503, 504}
CHUNK_BYTES = 256 * 1024


@dataclass
class UplinkStats:
    acked: int = 0
    rejected: int = 0
    coalesced: int = 0
    timeouts: int = 0
    retries: int = 0
    last_ack: float = 0.0
    served_adapter_version: int = 0
    connected: bool = False


class Uplink:
    def __init__(
        self,
        client: TwinClient,
        db: Database,
        hello: m.Hello,
        link: GatewayLink,
        *,
        merge: Merge,
        max_pending_deltas: int = 30,
        on_resync: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._db = db
        self._hello = hello
        self._link = link
        self._merge = merge
        self._max_deltas = max_pending_deltas
        self._on_resync = on_resync
        self._clock = clock
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._need_hello = True
        self.stats = UplinkStats()
        self.idle = asyncio.Event()

    def wake(self) -> None:
        """Something was added to the outbox."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            if self._need_hello:
                await self._say_hello()
            self.stats.coalesced += await self._db.run(
                Outbox.coalesce,
                self._hello.twin_id,
                self._merge,
                self._max_deltas,
                _rebuild,
                _text_of,
                self._clock(),
            )
            items = await self._db.run(Outbox.pending, 1)
            if not items:
                self.idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            self.idle.clear()
            await self._deliver(items[0])

    # ---- delivery ----------------------------------------------------------------------------------

    async def _deliver(self, item: Item) -> None:
        if item.kind == "adapter":
            reply = await self._upload_adapter(item)
        else:
            reply = await self._exchange(
                item.rid, unpack_body(m.StateUpload.TAG, item.body), item.id, resend_first=item.attempts == 0
            )
        now = self._clock()
        if isinstance(reply.message, m.Error):
            self.stats.rejected += 1
            detail = f"{reply.message.status} {reply.message.code}: {reply.message.detail}"
            log.warning("gateway rejected outbox item %d (%s): %s", item.id, item.kind, detail)
            await self._db.run(Outbox.finish, item.id, "rejected", detail, now)
            return
        self.stats.acked += 1
        self.stats.last_ack = now
        await self._db.run(Outbox.finish, item.id, "acked", "", now)

    async def _exchange(
        self, rid: bytes, message: m.Message, item_id: int | None, *, resend_first: bool = True
    ) -> Reply:
        """Until the gateway gives a definitive answer for ``rid``: FINAL or a non-retryable ERROR."""
        attempt = 0
        fetch = not resend_first
        while True:
            if item_id is not None:
                await self._db.run(Outbox.attempted, item_id)
            try:
                reply = await self._send_or_fetch(rid, message, attempt, fetch)
            except TimeoutError:
                self.stats.timeouts += 1
                self.stats.connected = False
                self._need_hello = True
                fetch = True
                await self._backoff(attempt, 0)
                attempt += 1
                continue
            self.stats.connected = True
            msg = reply.message
            if isinstance(msg, m.Accepted) or (isinstance(msg, m.Error) and msg.status in RETRY_STATUSES):
                self.stats.retries += 1
                fetch = isinstance(msg, m.Accepted) or msg.status == 409
                await self._backoff(attempt, getattr(msg, "retry_after_ms", 0))
                attempt += 1
                continue
            return reply

    async def _send_or_fetch(self, rid: bytes, message: m.Message, attempt: int, fetch: bool) -> Reply:
        timeout = self._link.request_timeout_s
        if fetch:
            reply = await self._client.fetch(rid, timeout_s=timeout)
            if not (isinstance(reply.message, m.Error) and reply.message.status == 404):
                return reply
        return await self._client.request(message, rid=rid, timeout_s=timeout, attempt=min(attempt, 255))

    async def _backoff(self, attempt: int, retry_after_ms: int) -> None:
        base = min(self._link.backoff_max_s, self._link.backoff_initial_s * 2 ** min(attempt, 30))
        delay = max(retry_after_ms / 1000, base * self._rng.uniform(0.5, 1.0))
        await asyncio.sleep(delay)

    async def _say_hello(self) -> None:
        reply = await self._exchange(os.urandom(16), self._hello, None)
        self._need_hello = False
        if not isinstance(reply.result, HelloResult):
            log.warning("gateway refused HELLO: %s", reply.message)
            return
        self.stats.served_adapter_version = reply.result.adapter_version
        acked = await self._db.run(Outbox.last_acked_seq, self._hello.twin_id)
        if reply.result.last_state_seq < acked and self._on_resync is not None:
            log.info(
                "gateway holds state up to seq %d, we had %d acknowledged: sending a keyframe",
                reply.result.last_state_seq,
                acked,
            )
            self._on_resync()

    # ---- adapters ----------------------------------------------------------------------------------

    async def _upload_adapter(self, item: Item) -> Reply:
        job = json.loads(item.body)
        data = await asyncio.to_thread(Path(job["artifact"]).read_bytes)
        manifest = await asyncio.to_thread(Path(job["manifest"]).read_bytes)
        begin = m.AdapterBegin(item.twin_id, int(job["version"]), len(data), job["sha256"], manifest)
        reply = await self._exchange(item.rid, begin, item.id, resend_first=True)
        while isinstance(reply.result, UploadStatus) and not reply.result.complete:
            status = reply.result
            if status.received >= len(data):
                reply = await self._exchange(os.urandom(16), m.AdapterCommit(status.upload_id), None)
                continue
            piece = data[status.received : status.received + CHUNK_BYTES]
            chunk = m.AdapterChunk(status.upload_id, status.received, piece)
            reply = await self._exchange(os.urandom(16), chunk, None)
        if isinstance(reply.result, UploadStatus) and reply.result.complete:
            self.stats.served_adapter_version = reply.result.version
            log.info("adapter v%d of %s is served by the gateway", reply.result.version, item.twin_id)
        return reply


def _rebuild(old_body: bytes, text: str) -> bytes:
    """The newest pending delta's body with the merged text (same seq, timestamp and sharing)."""
    message = unpack_body(m.StateUpload.TAG, old_body)
    assert isinstance(message, m.StateUpload)
    return pack_body(dataclasses.replace(message, text=text))


def _text_of(body: bytes) -> str:
    message = unpack_body(m.StateUpload.TAG, body)
    assert isinstance(message, m.StateUpload)
    return message.text


def state_body(twin_id: str, seq: int, ts_ms: int, kind: str, text: str, share: str) -> bytes:
    return pack_body(m.StateUpload(twin_id, seq, ts_ms, kind, text, share))  # type: ignore[arg-type]
