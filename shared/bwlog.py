"""The bandwidth log: one JSON object per line, the same schema on edge and gateway.

Schema version 1 (``v``), one record per message crossing the wire::

    {"v": 1, "ts": 1780000000.123, "side": "gateway", "tenant": "home1", "twin": "home1",
     "dir": "in", "type": "state", "rid": "9f3c…", "payload": 412, "compressed": 180, "frame": 283}

``payload``/``compressed``/``frame`` are the metering layers of shared.metering. Where the side tracks
its TCP connections (shared.kernel_accounting.KernelAccounting) a message record also names the connection it
crossed (``"conn"``), when that is known.

Kernel samples (``"type": "tcp_info"``), the kernel's cumulative TCP_INFO counters of one connection::

    {"v": 1, "ts": 1780000060.0, "side": "gateway", "tenant": "home1", "twin": "home1",
     "type": "tcp_info", "conn": "127.0.0.1:50412-127.0.0.1:5555@1780000000001", "event": "sample",
     "bytes_acked": 51234, "bytes_received": 48810, "bytes_sent": 51234, "bytes_retrans": 0,
     "segs_out": 410, "segs_in": 395, "tcp_state": "established"}

``event`` is ``"sample"`` (periodic) or ``"close"`` (the connection's last record; ``"final"`` says
whether its counters were read at the close, ``"exact"``, or repeat the last periodic sample,
``"last_sample"``). A counter the running kernel does not provide is ``null``. ``tcp_state`` lets a
reader tell the SYN/FIN octets the kernel counts apart from stream bytes (shared.tcpinfo).

Writing never blocks the caller: records go onto a queue and a listener thread writes them, rotating
by size (``path``, ``path.1`` …).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import time
from pathlib import Path
from typing import Literal

from shared.tcpinfo import TcpCounters

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
KERNEL_TYPE = "tcp_info"
Side = Literal["edge", "gateway"]


class BandwidthLog:
    def __init__(self, path: Path, *, side: Side, max_bytes: int, backups: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.side = side
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        handler = _Handler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
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
        try:
            self._handler.close()
        except OSError as exc:  # the last flush on a full disk: those records are lost, the process is not
            log.warning("bandwidth log %s: closing failed: %s", self.path, exc)

    @property
    def dropped(self) -> int:
        """Records that could not be written (disk full, file removed) since the log started."""
        return self._handler.dropped

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
        conn: str | None = None,
    ) -> None:
        fields: dict[str, object] = {
            "tenant": tenant,
            "twin": twin,
            "dir": direction,
            "type": msg_type,
            "rid": rid.hex(),
            "payload": payload,
            "compressed": compressed,
            "frame": frame,
        }
        if conn:
            fields["conn"] = conn
        self.write(fields, ts=ts)

    def tcp_info(
        self,
        *,
        tenant: str,
        twin: str,
        conn: str,
        event: Literal["sample", "close"],
        counters: TcpCounters,
        final: Literal["exact", "last_sample"] | None = None,
        ts: float | None = None,
    ) -> None:
        """One kernel sample of connection ``conn`` (cumulative counters; None is written as null)."""
        fields: dict[str, object] = {
            "tenant": tenant,
            "twin": twin,
            "type": KERNEL_TYPE,
            "conn": conn,
            "event": event,
            "bytes_acked": counters.bytes_acked,
            "bytes_received": counters.bytes_received,
            "bytes_sent": counters.bytes_sent,
            "bytes_retrans": counters.bytes_retrans,
            "segs_out": counters.segs_out,
            "segs_in": counters.segs_in,
            "tcp_state": counters.state,
        }
        if final is not None:
            fields["final"] = final
        self.write(fields, ts=ts)

    def write(self, fields: dict[str, object], *, ts: float | None = None) -> None:
        record: dict[str, object] = {
            "v": SCHEMA_VERSION,
            "ts": round(time.time() if ts is None else ts, 6),
            "side": self.side,
        }
        record.update(fields)
        line = json.dumps(record, separators=(",", ":"), sort_keys=False)
        self._queue.put(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))


class _Handler(logging.handlers.RotatingFileHandler):
    """A rotating file handler that counts records it could not write and says so once per outage,
    instead of logging's default of a traceback on stderr for every record (a full disk would turn
    each message into a traceback)."""

    dropped = 0
    _failing = False

    def emit(self, record: logging.LogRecord) -> None:
        before = self.dropped
        super().emit(record)
        if self._failing and self.dropped == before:
            self._failing = False
            log.warning("bandwidth log %s: writing again (%d records dropped so far)", self.baseFilename, self.dropped)

    def handleError(self, record: logging.LogRecord) -> None:
        self.dropped += 1
        if not self._failing:
            self._failing = True
            log.warning("bandwidth log %s: cannot write, records are dropped until it can", self.baseFilename)
