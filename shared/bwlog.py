"""The bandwidth log: one JSON object per line, the same schema on edge and gateway.

Schema version 1 (``v``), one record per message crossing the wire::

    {"v": 1, "ts": 1780000000.123, "side": "gateway", "tenant": "home1", "twin": "home1",
     "dir": "in", "type": "state", "rid": "9f3c…", "payload": 412, "compressed": 180, "frame": 283}

``payload``/``compressed``/``frame`` are the metering layers of shared.metering. Kernel samples
(issue 7) use ``"type": "tcp_info"`` with their own counters. Writing never blocks the caller: records
go onto a queue and a listener thread writes them, rotating by size (``path``, ``path.1`` …).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import time
from pathlib import Path
from typing import Literal

SCHEMA_VERSION = 1
Side = Literal["edge", "gateway"]


class BandwidthLog:
    def __init__(self, path: Path, *, side: Side, max_bytes: int, backups: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.side = side
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._listener = logging.handlers.QueueListener(self._queue, handler)
        self._handler = handler
        self._started = False

    def start(self) -> None:
        self._listener.start()
        self._started = True

    def stop(self) -> None:
        """Write everything queued so far, then close the file."""
        if self._started:
            self._listener.stop()
            self._started = False
        self._handler.close()

    def message(
        self,
        *,
        tenant: str,
        twin: str,
        direction: str,
        msg_type: str,
        rid: bytes,
        payload: int,
        compressed: int,
        frame: int,
        ts: float | None = None,
    ) -> None:
        self.write(
            {
                "tenant": tenant,
                "twin": twin,
                "dir": direction,
                "type": msg_type,
                "rid": rid.hex(),
                "payload": payload,
                "compressed": compressed,
                "frame": frame,
            },
            ts=ts,
        )

    def write(self, fields: dict[str, object], *, ts: float | None = None) -> None:
        record: dict[str, object] = {
            "v": SCHEMA_VERSION,
            "ts": round(time.time() if ts is None else ts, 6),
            "side": self.side,
        }
        record.update(fields)
        line = json.dumps(record, separators=(",", ":"), sort_keys=False)
        self._queue.put(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))
