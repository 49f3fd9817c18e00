"""An edge device inside the bench process: the real outbox (SQLite), TwinClient and Uplink.

The chaos parts drive prompts into it at their own pace instead of running the simulator, so a
case knows exactly what was queued and when. Every reply the uplink gets passes through the
client's byte hook; a state acknowledgement that is *not* a replay and says ``stored = false`` means
the gateway executed an outbox rid whose prompt it already held: counted in ``re_executed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from edge.client import ClientKeys, TwinClient
from edge.outbox import Outbox, create_schema
from edge.uplink import Uplink, state_body
from shared.config.edge import GatewayLink
from shared.db import Database
from shared.protocol import Encoded, Envelope, decode_result
from shared.protocol import messages as m
from shared.protocol.results import StateAck, UploadStatus
from shared.semantic import EntityState, encode_prompt, merge_deltas


def prompt_text(twin: str, value: int, kind: str = "D") -> str:
    """A one-entity state prompt whose brightness carries ``value`` (so order and content are checkable)."""
    entity = EntityState(f"light.{twin}_kitchen_ceiling", "on", (("brightness", value),))
    return encode_prompt(kind, [entity], twin)  # type: ignore[arg-type]


@dataclass
class ReplyLog:
    """What the uplink heard back, from the client's byte hook."""

    re_executed: int = 0  # non-replayed StateAck(stored=False): a rid executed after its prompt was held
    upload_status: list[UploadStatus] | None = None

    def __call__(self, direction: str, message: m.Message, rid: bytes, wire: Encoded | Envelope) -> None:
        if direction != "in" or not isinstance(message, m.Final):
            return
        try:
            result = decode_result(message.kind, message.result)
        except Exception:  # a result we cannot read is the client's business, not ours
            return
        if isinstance(result, StateAck) and not result.stored and not message.replayed:
            self.re_executed += 1
        if isinstance(result, UploadStatus) and self.upload_status is not None:
            self.upload_status.append(result)


class Device:
    """One twin: ``async with Device(...) as d: await d.put(value)``; the uplink runs meanwhile."""

    def __init__(
        self,
        twin: str,
        folder: Path,
        endpoint: str,
        keys: ClientKeys,
        *,
        timeout_s: float = 0.5,
        max_pending_deltas: int = 100_000,
    ) -> None:
        self.twin = twin
        self.db = Database(folder / f"{twin}-outbox.sqlite3")
        self.replies = ReplyLog(upload_status=[])
        self.client = TwinClient(endpoint, keys, on_bytes=self.replies)
        link = GatewayLink(endpoint, Path("-"), Path("-"), request_timeout_s=timeout_s,
                           backoff_initial_s=0.02, backoff_max_s=0.2)  # fmt: skip
        self.uplink = Uplink(
            self.client,
            self.db,
            m.Hello(twin, "chaos/1"),
            link,
            merge=lambda texts: merge_deltas(texts, twin),
            max_pending_deltas=max_pending_deltas,
        )
        self._task: asyncio.Task[None] | None = None
        self.queued = 0

    async def __aenter__(self) -> Device:
        await self.db.open(create_schema)
        await self.client.__aenter__()
        self._task = asyncio.create_task(self.uplink.run(), name=f"uplink:{self.twin}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.__aexit__(exc_type, exc, tb)
        await self.db.close()

    def check(self) -> None:
        """Raise what the uplink task died of, if it did."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            self._task.result()

    async def put(self, value: int, kind: str = "D") -> None:
        """Queue one state prompt (durably, with its rid) and wake the uplink."""
        wire = "key" if kind == "K" else "delta"
        build = functools.partial(_body, twin=self.twin, value=value, kind=kind, wire=wire)
        await self.db.run(Outbox.put_state, self.twin, build, wire, time.time())
        self.queued += 1
        self.uplink.wake()

    async def put_adapter(self, artifact: Path, manifest: Path, version: int, sha256: str) -> None:
        job = (
            f'{{"artifact": "{artifact}", "manifest": "{manifest}", "version": {version}, "sha256": "{sha256}"}}'
        ).encode()
        await self.db.run(Outbox.put_adapter, self.twin, job, time.time())
        self.uplink.wake()

    async def counts(self) -> dict[str, int]:
        return await self.db.run(Outbox.counts)

    async def rows(self) -> list[tuple[int, str, bytes, str]]:
        """(seq, status, rid, kind) of every outbox item, in queue order."""

        def read(conn: object) -> list[tuple[int, str, bytes, str]]:
            rows = conn.execute("SELECT seq, status, rid, kind FROM outbox ORDER BY id").fetchall()  # type: ignore[attr-defined]
            return [(int(s or 0), str(st), bytes(r), str(k)) for s, st, r, k in rows]

        return await self.db.run(read)


def _body(seq: int, *, twin: str, value: int, kind: str, wire: str) -> bytes:
    return state_body(twin, seq, 1000 * seq, wire, prompt_text(twin, value, kind), "group")


def new_rid() -> bytes:
    return os.urandom(16)
