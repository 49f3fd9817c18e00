"""Aggregation of records: totals per group, bytes per time window, kernel vs model per tenant.

:class:`Summary` is fed one record at a time (a file, many files, or a live tail), so memory grows
with the number of groups, windows and connections, never with the number of lines.

``--since``: message records before it are not counted. Kernel counters are cumulative per
connection, so a sample before it is kept as that connection's baseline and only what the
counters grew by afterwards is counted.

Kernel reconciliation, per (side, tenant): the kernel total of a connection is its last sample
(minus its baseline); a connection id whose counters go backwards, or that reappears after a
``close`` event, is a new connection and the old one's total is kept. The model is the sum of the
logged ``frame`` bytes plus the ZMTP/CURVE handshake of every connection first seen after
``--since`` (:func:`shared.metering.handshake_bytes`, DEALER on the edge, ROUTER on the gateway).
``in`` compares with ``bytes_received``, ``out`` with ``bytes_acked`` (``bytes_sent`` also counts
retransmissions, shown apart). The kernel counts in TCP sequence space, so up to two SYN/FIN
octets per connection are in its numbers and not in the model. The relative difference is
(kernel − model) / model.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from shared.bandwidth.records import KernelCounters, KernelSample, MessageRecord, Record
from shared.bandwidth.units import GROUP_KEYS
from shared.metering import handshake_bytes

MAX_FILLED_WINDOWS = 10_000  # more windows than this between first and last: list only non-empty ones
ZERO = KernelCounters()


@dataclass(slots=True)
class Totals:
    messages: int = 0
    payload: int = 0
    compressed: int = 0
    frame: int = 0

    def add(self, rec: MessageRecord) -> None:
        self.messages += 1
        self.payload += rec.payload
        self.compressed += rec.compressed
        self.frame += rec.frame

    def to_json(self) -> dict[str, int]:
        return {"messages": self.messages, "payload": self.payload, "compressed": self.compressed, "frame": self.frame}


@dataclass(frozen=True, slots=True)
class Window:
    start: float
    length: float
    totals: Totals

    @property
    def frame_per_s(self) -> float:
        return self.totals.frame / self.length

    def to_json(self) -> dict[str, object]:
        return {
            "start": self.start,
            "end": self.start + self.length,
            **self.totals.to_json(),
            "frame_bytes_per_s": round(self.frame_per_s, 3),
        }


@dataclass(slots=True)
class ConnState:
    """One connection id's cumulative counters (several connections when the id is reused)."""

    banked: KernelCounters = ZERO  # connections that ended, counted part
    last: KernelCounters | None = None
    baseline: KernelCounters = ZERO  # the current connection's value at --since
    closed: bool = False
    counted: bool = False  # the current connection has samples at/after --since
    connections: int = 0
    handshakes: int = 0

    def observe(self, sample: KernelSample, *, counted: bool) -> None:
        new = self.last is None or self.closed or sample.counters.went_backwards(self.last)
        if self.last is not None and new:
            self.banked = self.banked + (self.last - self.baseline)
        if not counted:
            self.last = self.baseline = sample.counters
            self.counted = False
        elif new:
            self.last, self.baseline = sample.counters, ZERO
            self.connections += 1
            self.handshakes += 1
            self.counted = True
        else:
            self.connections += not self.counted
            self.last = sample.counters
            self.counted = True
        self.closed = sample.event == "close"

    def total(self) -> KernelCounters:
        return self.banked + (self.last - self.baseline) if self.last is not None else self.banked


@dataclass(frozen=True, slots=True)
class Reconciliation:
    side: str
    tenant: str
    connections: int
    frame_in: int
    frame_out: int
    handshake_in: int
    handshake_out: int
    kernel: KernelCounters | None  # None: no kernel samples for this side and tenant

    @property
    def model_in(self) -> int:
        return self.frame_in + self.handshake_in

    @property
    def model_out(self) -> int:
        return self.frame_out + self.handshake_out

    @property
    def diff_in(self) -> float | None:
        return None if self.kernel is None else _relative(self.kernel.bytes_received, self.model_in)

    @property
    def diff_out(self) -> float | None:
        return None if self.kernel is None else _relative(self.kernel.bytes_acked, self.model_out)

    def to_json(self) -> dict[str, object]:
        k = self.kernel
        return {
            "side": self.side,
            "tenant": self.tenant,
            "connections": self.connections,
            "model_in": self.model_in,
            "model_out": self.model_out,
            "frame_in": self.frame_in,
            "frame_out": self.frame_out,
            "handshake_in": self.handshake_in,
            "handshake_out": self.handshake_out,
            "kernel_in": None if k is None else k.bytes_received,
            "kernel_out": None if k is None else k.bytes_acked,
            "diff_in": _round(self.diff_in),
            "diff_out": _round(self.diff_out),
            "bytes_sent": None if k is None else k.bytes_sent,
            "bytes_retrans": None if k is None else k.bytes_retrans,
            "segs_in": None if k is None else k.segs_in,
            "segs_out": None if k is None else k.segs_out,
        }


@dataclass(slots=True)
class Summary:
    """Running totals. ``add`` every record; read the results at any time."""

    by: tuple[str, ...] = ("tenant", "type", "dir")
    window_s: float | None = None
    since: float | None = None
    messages: int = field(default=0, init=False)
    kernel_samples: int = field(default=0, init=False)
    before_since: int = field(default=0, init=False)
    first_ts: float | None = field(default=None, init=False)
    last_ts: float | None = field(default=None, init=False)
    total: Totals = field(default_factory=Totals, init=False)
    sides: Counter[str] = field(default_factory=Counter, init=False)
    types: Counter[str] = field(default_factory=Counter, init=False)
    _groups: dict[tuple[str, ...], Totals] = field(default_factory=dict, init=False, repr=False)
    _windows: dict[int, Totals] = field(default_factory=dict, init=False, repr=False)
    # (side, tenant) → [frame in, frame out], for the kernel reconciliation
    _model: dict[tuple[str, str], list[int]] = field(default_factory=dict, init=False, repr=False)
    _conns: dict[tuple[str, str, str], ConnState] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for key in self.by:
            if key not in GROUP_KEYS:
                raise ValueError(f"unknown grouping key {key!r}")
        if self.window_s is not None and not (self.window_s > 0 and math.isfinite(self.window_s)):
            raise ValueError("the window must be a positive number of seconds")

    def add(self, rec: Record) -> bool:
        """Count one record; False when it lies before ``since`` (kept only as a kernel baseline)."""
        counted = self.since is None or rec.ts >= self.since
        if isinstance(rec, KernelSample):
            state = self._conns.setdefault((rec.side, rec.tenant, rec.conn), ConnState())
            state.observe(rec, counted=counted)
            self._model.setdefault((rec.side, rec.tenant), [0, 0])
        if not counted:
            self.before_since += 1
            return False
        self.first_ts = rec.ts if self.first_ts is None else min(self.first_ts, rec.ts)
        self.last_ts = rec.ts if self.last_ts is None else max(self.last_ts, rec.ts)
        self.sides[rec.side] += 1
        if isinstance(rec, KernelSample):
            self.kernel_samples += 1
            return True
        self.messages += 1
        self.types[rec.type] += 1
        self.total.add(rec)
        self._groups.setdefault(self._group_key(rec), Totals()).add(rec)
        if self.window_s is not None:
            self._windows.setdefault(math.floor(rec.ts / self.window_s), Totals()).add(rec)
        model = self._model.setdefault((rec.side, rec.tenant), [0, 0])
        model[rec.direction == "out"] += rec.frame
        return True

    def _group_key(self, rec: MessageRecord) -> tuple[str, ...]:
        values = {"tenant": rec.tenant, "twin": rec.twin, "side": rec.side, "type": rec.type, "dir": rec.direction}
        return tuple(values[k] for k in self.by)

    def groups(self) -> list[tuple[tuple[str, ...], Totals]]:
        return sorted(self._groups.items())

    def windows(self) -> tuple[list[Window], bool]:
        """(windows oldest first, sparse): empty windows between the first and last are included
        unless there would be more than :data:`MAX_FILLED_WINDOWS` (then ``sparse`` is True)."""
        if self.window_s is None or not self._windows:
            return [], False
        lo, hi = min(self._windows), max(self._windows)
        sparse = hi - lo + 1 > MAX_FILLED_WINDOWS
        indices = sorted(self._windows) if sparse else range(lo, hi + 1)
        w = self.window_s
        return [Window(i * w, w, self._windows.get(i, Totals())) for i in indices], sparse

    def frame_by_dir(self) -> tuple[int, int]:
        """Frame bytes (in, out) counted so far, over every side and tenant."""
        return sum(m[0] for m in self._model.values()), sum(m[1] for m in self._model.values())

    @property
    def has_kernel(self) -> bool:
        return bool(self._conns)

    def reconciliation(self) -> list[Reconciliation]:
        """Per (side, tenant) that has messages or kernel samples; empty when no kernel samples."""
        if not self._conns:
            return []
        per: dict[tuple[str, str], tuple[KernelCounters, int, int]] = {}
        for (side, tenant, _conn), state in self._conns.items():
            counters, conns, shakes = per.get((side, tenant), (ZERO, 0, 0))
            per[(side, tenant)] = (counters + state.total(), conns + state.connections, shakes + state.handshakes)
        up, down = handshake_bytes("DEALER", "ROUTER", "curve")
        rows = []
        for (side, tenant), (frame_in, frame_out) in sorted(self._model.items()):
            counters, conns, shakes = per.get((side, tenant), (ZERO, 0, 0))
            # the edge is the DEALER (client): it sends the client half of the handshake
            shake_in, shake_out = (down, up) if side == "edge" else (up, down)
            rows.append(
                Reconciliation(
                    side,
                    tenant,
                    conns,
                    frame_in,
                    frame_out,
                    shakes * shake_in,
                    shakes * shake_out,
                    counters if (side, tenant) in per else None,
                )
            )
        return rows

    def to_json(self) -> dict[str, object]:
        windows, sparse = self.windows()
        return {
            "since": self.since,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "messages": self.messages,
            "kernel_samples": self.kernel_samples,
            "before_since": self.before_since,
            "sides": dict(sorted(self.sides.items())),
            "by": list(self.by),
            "groups": [{**dict(zip(self.by, key, strict=True)), **t.to_json()} for key, t in self.groups()],
            "total": self.total.to_json(),
            "window_s": self.window_s,
            "windows_sparse": sparse,
            "windows": [w.to_json() for w in windows],
            "kernel": [r.to_json() for r in self.reconciliation()],
        }


def _relative(kernel: int, model: int) -> float | None:
    return None if model == 0 else (kernel - model) / model


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
