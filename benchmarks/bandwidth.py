"""``llmtwin bench bandwidth``: the bandwidth claim, measured against two baselines on the same trace and
the same transport.

The trace is the default scenario (``shared.scenario.generate(7, 3, 86400.0)``: 3 homes, 24 h), its
first ``hours``, at a tick of ``tick_s`` (10 s). Every system sends, per home, over its own ZeroMQ
CURVE connection on 127.0.0.1 (a DEALER), through a byte-counting TCP relay in this process, and every
message is acknowledged by the server, so the reply traffic is on the wire too. Messages go as fast as
the round trips allow, not in real time; each is charged to its trace time for the time series.

What each system sends
----------------------
``raw``      bit-level sync, a conventional IoT twin: at every tick the full JSON state of every entity
             the home has reported so far, as Home Assistant state objects (entity_id, state,
             attributes, last_changed, last_updated; every attribute ever reported is kept, as
             ``/api/states`` shows it): ``json.dumps([obj, ...], ensure_ascii=False)``, UTF-8, no
             compression, one message per tick per home, sent as ONE RAW ZeroMQ FRAME (not the LLM-Twin
             codec) to a CURVE ROUTER sink written here, which answers each with one 8-byte frame. Its
             JSON bytes are ``edge.fidelity.replay``'s ``baseline_bytes`` (reported side by side).
``fl``       FL-DTN (paper Eq. 8-10): the same state sync as ``raw`` plus, K rounds a day per home, the
             base model's full fp32 weights (the bytes of the prepared model's ``hf/*.safetensors``)
             uploaded as raw frames of ``fl_chunk_bytes`` (1 MiB), each acknowledged with 8 B by the
             sink. The first round of every home is really sent (``fl_rounds_measured``); any further
             rounds are charged that home's measured round (``fl_rounds_extrapolated``). The state-sync
             part is the measured ``raw`` run itself (not sent twice), and a round excludes the
             handshake of the connection it was measured on (an FL device uploads on its sync link).
``llmtwin``  LLM-Twin as built: ``edge.fidelity.replay`` runs each home's trace through the state split
             and the compressor (``CompressorSettings()`` defaults) and the prompts go, after a Hello,
             as StateUpload messages through ``edge.client.TwinClient`` to a real
             ``gateway.service.GatewayService`` (in this process: CURVE + ZAP, SQLite), each answered by
             its FINAL; plus one adapter upload per λ per home: a rank-8 LoRA (the default targets) of the base model
             laid out as the edge trains it (random weights in the top layers, zeros
             below) and written as the edge writes it (``FinetuneSection().adapter_dtype``, trained
             layers only: see shared.adapter_codec), a real artifact, and uploaded with
             AdapterBegin / AdapterChunk (256 KiB, as the uplink) / AdapterCommit; the
             gateway verifies and activates it. The gateway runs the same base model (no inference).

FL round j and adapter upload j (1..n) are charged at trace time ``min(end, j * period)`` (the end of
each period), n = ceil(hours / period) and at least 1; the FL period is 24 h / K, the adapter's λ.

How bytes are counted (per connection, the client's view, both directions)
-------------------------------------------------------------------------
``model``   shared.metering: every frame's ZMTP + CURVE bytes plus the connection's CURVE handshake;
``kernel``  TCP_INFO of the DEALER's TCP socket (its descriptor from the ZeroMQ monitor's
            EVENT_CONNECTED, read through a duplicate: shared.tcpinfo / shared.kernel_accounting):
            tcpi_bytes_acked + tcpi_bytes_received less the SYN/FIN octets, read right after the last
            acknowledgement (nothing else is in flight then);
``relay``   what the relay read from each side.
``raw_bytes``, ``fl_bytes`` and ``llmtwin_bytes`` are model bytes; every system also reports its kernel
and relay counts and ``kernel_vs_model_error`` = |kernel - model| / kernel (the top-level field is the
LLM-Twin run's). Fidelity (``fidelity``) is the replay's score just before each tick (the worst moment:
it pays for up to one tick of latency), the minimum over homes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import tempfile
import time
import tomllib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from benchmarks.finetune import prepared_model
from benchmarks.relay import TcpRelay
from edge.client import ClientKeys, Reply, TwinClient
from edge.compressor import CompressorSettings
from edge.fidelity import ReplayResult, replay
from edge.finetune.train import TrainOptions, first_lora_layer
from edge.uplink import CHUNK_BYTES
from gateway.service import GatewayService
from shared.adapters import AdapterManifest, write_adapter
from shared.config import GatewayConfig, parse_config
from shared.config.edge import FinetuneSection
from shared.kernel_accounting import KernelAccounting
from shared.keys import generate_keypair
from shared.metering import Sample, handshake_bytes, part_wire_bytes
from shared.metrics import Registry
from shared.modelspec import HF_DIR, ModelSpec, default_cache_dir, find_prepared, load_spec, lora_a_name, lora_b_name
from shared.protocol import Encoded, Envelope
from shared.protocol import messages as m
from shared.protocol.results import UploadStatus
from shared.scenario import Scenario, StateChange, generate, to_state_object
from shared.scenario.hass import start_time
from shared.scenario.model import AttrValue
from shared.tcpinfo import TcpCounters, TcpHandle, control_octets

DAY_S = 86400.0
ACK_BYTES = 8
ADAPTER_RANK = 8
ADAPTER_DTYPE = FinetuneSection().adapter_dtype  # what an edge daemon ships by default
HANDSHAKE_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 120.0
PARTS = ("handshake", "hello", "state", "adapter")


@dataclass(frozen=True, slots=True)
class BandwidthBench:
    hours: float = 24.0
    tick_s: float = 10.0
    fl_rounds: int = 1  # K: FL rounds per day (the same cadence as one adapter per λ = 24 h)
    lambda_h: float = 24.0
    base: str = "smollm2-135m"
    cache_dir: Path | None = None
    seed: int = 7
    homes: int = 3
    fl_chunk_bytes: int = 1 << 20
    sample_every: int = 1  # fidelity sampled at every n-th tick

    def check(self) -> None:
        if not (0 < self.hours <= 24 and self.tick_s > 0 and self.lambda_h > 0 and self.fl_rounds >= 1):
            raise ValueError("need 0 < hours <= 24, tick_s > 0, lambda_h > 0 and fl_rounds >= 1")


def run(
    out: Path,
    *,
    hours: float = 24.0,
    tick_s: float = 10.0,
    fl_rounds: int = 1,
    base: str = "smollm2-135m",
    cache_dir: Path | None = None,
    lambda_h: float = 24.0,
    baselines_out: Path | None = None,
) -> dict[str, Any]:
    """Measure the three systems, write the JSON report to ``out`` (and the plot curves alone, in the
    ``--baselines`` format, to ``baselines_out``). Returns the report."""
    opts = BandwidthBench(
        hours=hours, tick_s=tick_s, fl_rounds=fl_rounds, lambda_h=lambda_h, base=base, cache_dir=cache_dir
    )
    opts.check()
    report = asyncio.run(_measure(opts))
    _write_json(out, report)
    if baselines_out is not None:
        _write_json(baselines_out, report["series"])
    return report


def _write_json(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------------
# byte counts


@dataclass(slots=True)
class Wire:
    """Bytes of one connection (or a sum), the client's view: up = client → server."""

    model_up: int = 0
    model_down: int = 0
    kernel_up: int = 0
    kernel_down: int = 0
    relay_up: int = 0
    relay_down: int = 0
    messages: int = 0  # requests sent (each answered)

    @property
    def model(self) -> int:
        return self.model_up + self.model_down

    @property
    def kernel(self) -> int:
        return self.kernel_up + self.kernel_down

    @property
    def relay(self) -> int:
        return self.relay_up + self.relay_down

    def __add__(self, other: Wire) -> Wire:
        return Wire(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)))

    def __sub__(self, other: Wire) -> Wire:
        return Wire(*(a - b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)))

    def times(self, k: int) -> Wire:
        return Wire(*(k * a for a in dataclasses.astuple(self)))

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "kernel": self.kernel,
            "relay": self.relay,
            "model_up": self.model_up,
            "model_down": self.model_down,
            "kernel_up": self.kernel_up,
            "kernel_down": self.kernel_down,
            "relay_up": self.relay_up,
            "relay_down": self.relay_down,
            "messages": self.messages,
            "kernel_vs_model_error": round(error(self), 6),
        }


def error(wire: Wire) -> float:
    """|kernel - model| / kernel."""
    return abs(wire.kernel - wire.model) / wire.kernel if wire.kernel else math.inf


def kernel_stream(counters: TcpCounters) -> tuple[int, int]:
    """(up, down) stream bytes of the connecting side: bytes_acked / bytes_received less SYN/FIN."""
    if counters.bytes_acked is None or counters.bytes_received is None:
        raise OSError("this kernel's TCP_INFO has no bytes_acked / bytes_received")
    control_in, control_out = control_octets(counters.state, connecting=True)
    return counters.bytes_acked - control_out, counters.bytes_received - control_in


@dataclass(slots=True)
class Timeline:
    """Model bytes charged to trace times, for the cumulative curves."""

    events: list[tuple[float, int]] = field(default_factory=list)

    def add(self, ts_s: float, nbytes: int) -> None:
        self.events.append((ts_s, nbytes))

    def extend(self, other: Timeline) -> None:
        self.events.extend(other.events)

    def cumulative(self, start_epoch: float, duration_s: float, step_s: float = 3600.0) -> list[list[float]]:
        """``[[epoch_s, cumulative_bytes], ...]`` at 0, step, 2 step, ... and the end."""
        marks = [k * step_s for k in range(math.ceil(duration_s / step_s))] + [duration_s]
        events = sorted(self.events)
        points, total, i = [], 0, 0
        for mark in marks:
            while i < len(events) and events[i][0] <= mark:
                total += events[i][1]
                i += 1
            points.append([round(start_epoch + mark, 3), float(total)])
        return points


# ------------------------------------------------------------------------------------------------
# transport pieces: an acknowledging CURVE sink, a raw CURVE DEALER (the relay is benchmarks.relay)


@contextlib.asynccontextmanager
async def sink(ctx: zmq.asyncio.Context, secret: bytes) -> AsyncIterator[int]:
    """A CURVE ROUTER on 127.0.0.1 that answers every message with one 8-byte frame; yields its port."""
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    sock.curve_server = True
    sock.curve_secretkey = secret
    port = sock.bind_to_random_port("tcp://127.0.0.1")

    async def serve() -> None:
        n = 0
        while True:
            route, *_ = await sock.recv_multipart()
            n += 1
            await sock.send_multipart([route, n.to_bytes(ACK_BYTES, "big")])

    task = asyncio.create_task(serve(), name="bench-sink")
    try:
        yield port
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sock.close(linger=0)


class RawPeer:
    """A CURVE DEALER sending one raw frame per message and waiting for the sink's ack."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, server_public: bytes) -> None:
        self._ctx = ctx
        self._endpoint = endpoint
        self._server_public = server_public
        self._sock: zmq.asyncio.Socket | None = None
        self._handle: TcpHandle | None = None
        up, down = handshake_bytes("DEALER", "ROUTER", "curve")
        self.wire = Wire(model_up=up, model_down=down)

    async def __aenter__(self) -> RawPeer:
        public, secret = zmq.curve_keypair()
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self._server_public, public, secret
        monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self._sock = sock
        sock.connect(self._endpoint)
        through = False
        try:
            await self._handshake(monitor)
            through = True
        finally:
            sock.disable_monitor()
            monitor.close(linger=0)
            if not through:
                await self.__aexit__(None, None, None)
        return self

    async def _handshake(self, monitor: zmq.asyncio.Socket) -> None:
        """Until CURVE is through; the TCP socket is adopted when the monitor reports it (CONNECTED)."""
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            while True:
                event = parse_monitor_message(await monitor.recv_multipart())
                if event["event"] == zmq.EVENT_CONNECTED:
                    self._handle = TcpHandle.adopt(int(event["value"]))
                elif event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    break
        if self._handle is None:
            raise OSError(f"{self._endpoint}: no TCP connection seen by the monitor")

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    async def send(self, frame: bytes | memoryview) -> int:
        """Send one frame, wait for its ack; returns the model bytes of both."""
        assert self._sock is not None
        await self._sock.send(frame, copy=len(frame) < 65536)
        ack = await self._sock.recv()
        up, down = part_wire_bytes(len(frame)), part_wire_bytes(len(ack))
        self.wire.model_up += up
        self.wire.model_down += down
        self.wire.messages += 1
        return up + down

    def sample(self, relay: TcpRelay) -> Wire:
        """The counts so far, with the kernel's and the relay's read now."""
        assert self._handle is not None
        up, down = kernel_stream(self._handle.sample())
        return dataclasses.replace(self.wire, kernel_up=up, kernel_down=down, relay_up=relay.up, relay_down=relay.down)


# ------------------------------------------------------------------------------------------------
# the trace


@dataclass(frozen=True, slots=True)
class Home:
    index: int
    twin_id: str
    changes: tuple[StateChange, ...]
    replayed: ReplayResult


def homes(scenario: Scenario, opts: BandwidthBench) -> list[Home]:
    """Each home's changes and its replay through the compressor, over the first ``hours``."""
    sliced = dataclasses.replace(scenario, duration_s=opts.hours * 3600.0)
    out = []
    for index, home in enumerate(scenario.homes):
        ids = {e.entity_id for e in home.entities}
        changes = tuple(c for c in scenario.trace if c.entity_id in ids and c.ts_s < sliced.duration_s)
        result = replay(sliced, index, CompressorSettings(), opts.tick_s, sample_every=opts.sample_every)
        out.append(Home(index, home.home_id, changes, result))
    return out


def state_ticks(changes: Sequence[StateChange], start_iso: str, tick_s: float, duration_s: float) -> Iterator[
    tuple[float, bytes]
]:
    """(trace time, JSON) per tick: every entity's current HA state object, as edge.fidelity's baseline."""
    attrs: dict[str, dict[str, AttrValue]] = {}
    changed_at: dict[str, tuple[str, float]] = {}
    objects: dict[str, str] = {}
    i = 0
    for k in range(math.ceil(duration_s / tick_s)):
        now = k * tick_s
        while i < len(changes) and changes[i].ts_s <= now:
            c = changes[i]
            held = attrs.setdefault(c.entity_id, {})
            held.update(c.attributes)
            previous = changed_at.get(c.entity_id)
            since = previous[1] if previous is not None and previous[0] == c.state else c.ts_s
            changed_at[c.entity_id] = (c.state, since)
            full = StateChange(c.ts_s, c.entity_id, c.state, held)
            obj = to_state_object(full, start_iso, last_changed_s=since)
            objects[c.entity_id] = json.dumps(obj, ensure_ascii=False)
            i += 1
        yield now, ("[" + ", ".join(objects.values()) + "]").encode()


def schedule(duration_s: float, period_s: float) -> list[float]:
    """Trace times of a periodic job: the end of each period, the last one at the end of the trace."""
    n = max(1, math.ceil(duration_s / period_s - 1e-9))
    return [min(duration_s, (j + 1) * period_s) for j in range(n)]


# ------------------------------------------------------------------------------------------------
# (a) raw state sync and (b) FL rounds, against the sink


@dataclass(slots=True)
class RawHome:
    wire: Wire
    timeline: Timeline
    json_bytes: int
    ticks: int


async def raw_sync(ctx: zmq.asyncio.Context, port: int, public: bytes, home: Home, start_iso: str,
                   opts: BandwidthBench) -> RawHome:  # fmt: skip
    timeline = Timeline()
    json_bytes = ticks = 0
    async with TcpRelay(port) as relay, RawPeer(ctx, relay.endpoint, public) as peer:
        timeline.add(0.0, peer.wire.model)  # the handshake
        for now, body in state_ticks(home.changes, start_iso, opts.tick_s, opts.hours * 3600.0):
            timeline.add(now, await peer.send(body))
            json_bytes += len(body)
            ticks += 1
        wire = peer.sample(relay)
    return RawHome(wire, timeline, json_bytes, ticks)


async def fl_round(ctx: zmq.asyncio.Context, port: int, public: bytes, weights: memoryview, chunk: int) -> Wire:
    """One round of full weights, really sent; the counts of the round alone (handshake excluded)."""
    async with TcpRelay(port) as relay, RawPeer(ctx, relay.endpoint, public) as peer:
        before = peer.sample(relay)
        for offset in range(0, len(weights), chunk):
            await peer.send(weights[offset : offset + chunk])
        return peer.sample(relay) - before


# ------------------------------------------------------------------------------------------------
# (c) LLM-Twin: the real client to the real gateway


class Tally:
    """TwinClient's byte hook: model bytes per message, charged to the trace time and the part
    (``hello``, ``state``, ``adapter``) being sent; a reply goes with its request."""

    def __init__(self) -> None:
        self.now_s = 0.0
        self.part = "hello"
        self.timeline = Timeline()
        up, down = handshake_bytes("DEALER", "ROUTER", "curve")
        self.timeline.add(0.0, up + down)
        self.wire = Wire(model_up=up, model_down=down)
        self.by_part: dict[str, int] = {"handshake": up + down}

    def __call__(self, direction: str, message: m.Message, rid: bytes, sized: Encoded | Envelope) -> None:
        frame = Sample.of(sized.sizes.payload, sized.sizes.frames).frame
        if direction == "out":
            self.wire.model_up += frame
            self.wire.messages += 1
        else:
            self.wire.model_down += frame
        self.by_part[self.part] = self.by_part.get(self.part, 0) + frame
        self.timeline.add(self.now_s, frame)


def edge_adapter(spec: ModelSpec, twin_id: str, version: int, seed: int, folder: Path) -> tuple[bytes, bytes]:
    """A real rank-8 artifact on the graph's targets, laid out as the edge trains it: random weights in the LoRA
    layers (the top ``TrainOptions().top_layers``), zeros below, stored in the edge's default
    ``adapter_dtype`` (which leaves the zero layers out): (artifact bytes, manifest JSON)."""
    rng = np.random.default_rng(seed)
    first = first_lora_layer(spec.n_layers, TrainOptions().top_layers)
    tensors = {}
    for layer in range(spec.n_layers):
        for module in spec.target_modules:
            d_in, d_out = spec.target_shape(module)
            bound = 1.0 / math.sqrt(d_in)
            a = rng.uniform(-bound, bound, (d_in, ADAPTER_RANK)).astype(np.float32)
            b = rng.normal(0.0, 0.01, (ADAPTER_RANK, d_out)).astype(np.float32)
            tensors[lora_a_name(layer, module)] = a if layer >= first else np.zeros_like(a)
            tensors[lora_b_name(layer, module)] = b if layer >= first else np.zeros_like(b)
    manifest = AdapterManifest(
        twin_id, version, spec.fingerprint, ADAPTER_RANK, 2.0 * ADAPTER_RANK, spec.target_modules, dtype=ADAPTER_DTYPE
    )
    path = folder / f"{twin_id}-v{version}.onnx_adapter"
    written = write_adapter(path, tensors, manifest)
    return path.read_bytes(), written.to_json().encode()


async def upload_adapter(client: TwinClient, twin_id: str, version: int, data: bytes, manifest: bytes) -> None:
    """AdapterBegin → AdapterChunk (CHUNK_BYTES) … → AdapterCommit, as the uplink drives it."""
    begin = m.AdapterBegin(twin_id, version, len(data), hashlib.sha256(data).hexdigest(), manifest)
    status = _status(await client.request(begin, timeout_s=REPLY_TIMEOUT_S))
    while not status.complete:
        if status.received >= len(data):
            message: m.Message = m.AdapterCommit(status.upload_id)
        else:
            piece = data[status.received : status.received + CHUNK_BYTES]
            message = m.AdapterChunk(status.upload_id, status.received, piece)
        status = _status(await client.request(message, timeout_s=REPLY_TIMEOUT_S))


def _status(reply: Reply) -> UploadStatus:
    result = reply.raise_for_error().result
    if not isinstance(result, UploadStatus):
        raise RuntimeError(f"adapter upload: unexpected reply {reply.message!r}")
    return result


@dataclass(slots=True)
class TwinHome:
    wire: Wire
    timeline: Timeline
    by_part: dict[str, int]
    prompts: int
    adapter_uploads: int
    adapter_bytes: int


async def llmtwin_home(endpoint: str, keys: ClientKeys, spec: ModelSpec, home: Home, start_epoch: float,
                       opts: BandwidthBench, folder: Path) -> TwinHome:  # fmt: skip
    """Hello, the home's prompts and its adapter uploads in trace order, each waiting for its FINAL."""
    tally = Tally()
    kernel = KernelAccounting("llmtwin_bench", "edge", None, Registry(), tenant=home.twin_id, sample_s=DAY_S)
    prompts = home.replayed.prompts
    uploads = schedule(opts.hours * 3600.0, opts.lambda_h * 3600.0)
    jobs = sorted([(p.ts, 0, i) for i, p in enumerate(prompts)] + [(t, 1, v) for v, t in enumerate(uploads, 1)])
    artifact = 0
    async with contextlib.AsyncExitStack() as stack:
        relay = await stack.enter_async_context(TcpRelay(_port(endpoint)))
        client = await stack.enter_async_context(TwinClient(relay.endpoint, keys, on_bytes=tally, connections=kernel))
        entities = len({c.entity_id for c in home.changes})
        hello = m.Hello(home.twin_id, "llmtwin-bench", "bench", "", entities)  # as the daemon says it
        (await client.request(hello, timeout_s=REPLY_TIMEOUT_S)).raise_for_error()
        for ts, kind, index in jobs:
            tally.now_s = ts
            if kind == 0:
                tally.part = "state"
                prompt = prompts[index]
                up = m.StateUpload(home.twin_id, index + 1, int((start_epoch + ts) * 1000), prompt.kind, prompt.text)
                (await client.request(up, timeout_s=REPLY_TIMEOUT_S)).raise_for_error()
                continue
            tally.part = "adapter"
            data, manifest = edge_adapter(spec, home.twin_id, index, 1000 * home.index + index, folder)
            artifact = len(data)
            await upload_adapter(client, home.twin_id, index, data, manifest)
        conn = kernel.current()
        if conn is None:
            raise OSError("the client's TCP connection was never seen by its monitor")
        k_up, k_down = kernel_stream(conn.handle.sample())
        wire = dataclasses.replace(
            tally.wire, kernel_up=k_up, kernel_down=k_down, relay_up=relay.up, relay_down=relay.down
        )
    return TwinHome(wire, tally.timeline, tally.by_part, len(prompts), len(uploads), artifact)


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


@contextlib.asynccontextmanager
async def gateway(root: Path, cache: Path, base: str, tenants: Sequence[str]) -> AsyncIterator[GatewayService]:
    """A real GatewayService on 127.0.0.1 (CURVE + ZAP, SQLite) serving ``base``; keys under ``root``."""
    keys, tenants_dir = root / "keys", root / "tenants"
    tenants_dir.mkdir(parents=True)
    generate_keypair(keys, "server")
    for name in tenants:
        generate_keypair(keys, name)
        (tenants_dir / f"{name}.key").write_bytes((keys / f"{name}.key").read_bytes())
    text = f"""
[server]
bind = "tcp://127.0.0.1:*"
server_secret_key = "{keys / "server.key_secret"}"
tenants_dir = "{tenants_dir}"
[storage]
data_dir = "{root / "data"}"
[model]
base = "{base}"
cache_dir = "{cache}"
threads = 1
bank_slots = 4
[admission]
max_inflight_per_tenant = 64
rate_per_s = 1000000
burst = 1000000
queue_cap = 100000
[admin]
port = 0
"""
    cfg = parse_config(GatewayConfig, tomllib.loads(text), root / "gateway.toml")
    service = GatewayService(cfg, env={})
    task = asyncio.create_task(service.run(), name="bench-gateway")
    ready = asyncio.create_task(service.ready.wait())
    done, _ = await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()  # the startup error
    try:
        yield service
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 60)


# ------------------------------------------------------------------------------------------------
# the run


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    path: Path
    fallback: bool  # the requested base was not prepared: the tiny model stands in

    def weights(self) -> list[Path]:
        return sorted((self.path / HF_DIR).glob("*.safetensors"))


def resolve_model(base: str, cache: Path) -> Model:
    """The prepared ``base``; if it is not prepared, the tiny model (prepared here if needed)."""
    if find_prepared(cache, base) is not None:
        return Model(base, prepared_model(base, cache), fallback=False)  # re-prepared if its graph is stale
    return Model("tiny", prepared_model("tiny", cache), fallback=base != "tiny")


async def _measure(opts: BandwidthBench) -> dict[str, Any]:
    cache = opts.cache_dir or default_cache_dir(os.environ)
    model = resolve_model(opts.base, cache)
    scenario = generate(opts.seed, opts.homes, DAY_S)
    start_epoch = start_time(scenario.start_iso).timestamp()
    wall: dict[str, float] = {}
    clock = time.monotonic()
    trace = homes(scenario, opts)
    wall["replay"] = time.monotonic() - clock
    ctx = zmq.asyncio.Context()
    try:
        public, secret = zmq.curve_keypair()
        async with sink(ctx, secret) as port:
            clock = time.monotonic()
            raw = [await raw_sync(ctx, port, public, h, scenario.start_iso, opts) for h in trace]
            wall["raw"] = time.monotonic() - clock
            clock = time.monotonic()
            weights = memoryview(b"".join(p.read_bytes() for p in model.weights()))
            rounds = [await fl_round(ctx, port, public, weights, opts.fl_chunk_bytes) for _ in trace]
            wall["fl_measured"] = time.monotonic() - clock
    finally:
        ctx.term()
    clock = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llmtwin-bench-bw-") as tmp:
        root = Path(tmp)
        async with gateway(root, cache, model.name, [h.twin_id for h in trace]) as service:
            spec = load_spec(model.path)
            twins = []
            for h in trace:
                keys = ClientKeys.from_files(root / "keys" / "server.key", root / "keys" / f"{h.twin_id}.key_secret")
                twins.append(await llmtwin_home(service.endpoint, keys, spec, h, start_epoch, opts, root))
    wall["llmtwin"] = time.monotonic() - clock
    return report(opts, model, scenario, trace, raw, rounds, twins, len(weights), wall)


# ------------------------------------------------------------------------------------------------
# the report


def _ratio(a: int, b: int) -> float:
    return round(a / b, 4) if b else math.inf


def _total(wires: Sequence[Wire]) -> Wire:
    total = Wire()
    for w in wires:
        total = total + w
    return total


def report(opts: BandwidthBench, model: Model, scenario: Scenario, trace: Sequence[Home], raw: Sequence[RawHome],
           rounds: Sequence[Wire], twins: Sequence[TwinHome], weights_bytes: int,
           wall: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    duration = opts.hours * 3600.0
    fl_times = schedule(duration, DAY_S / opts.fl_rounds)
    per_home: dict[str, Any] = {}
    fl_wires, fl_timelines = [], []
    for h, r, rnd, t in zip(trace, raw, rounds, twins, strict=True):
        fl = r.wire + rnd.times(len(fl_times))
        fl_timeline = Timeline(list(r.timeline.events) + [(ts, rnd.model) for ts in fl_times])
        fl_wires.append(fl)
        fl_timelines.append(fl_timeline)
        per_home[h.twin_id] = _home_json(h, r, rnd, fl, t, len(fl_times))
    raw_total, fl_total = _total([r.wire for r in raw]), _total(fl_wires)
    twin_total = _total([t.wire for t in twins])
    state_only = sum(t.by_part.get(k, 0) for t in twins for k in PARTS[:3])
    start_epoch = start_time(scenario.start_iso).timestamp()

    def curve(name: str, timelines: Sequence[Timeline]) -> dict[str, Any]:
        merged = Timeline()
        for tl in timelines:
            merged.extend(tl)
        return {"name": name, "points": merged.cumulative(start_epoch, duration)}

    series = {
        "baselines": [
            curve(f"bit-level sync: full JSON state every {opts.tick_s:g} s", [r.timeline for r in raw]),
            curve(f"FL-DTN: {model.name} fp32 weights, K={opts.fl_rounds}/day, + state sync", fl_timelines),
            curve(f"LLM-Twin: state prompts + one adapter per {opts.lambda_h:g} h", [t.timeline for t in twins]),
        ]
    }
    result: dict[str, Any] = {
        "benchmark": "bandwidth",
        "trace_hours": opts.hours,
        "tick_s": opts.tick_s,
        "K": opts.fl_rounds,
        "lambda_h": opts.lambda_h,
        "scenario": {"seed": opts.seed, "homes": opts.homes, "generated_s": DAY_S, "start_iso": scenario.start_iso},
        "raw_bytes": raw_total.model,
        "fl_bytes": fl_total.model,
        "llmtwin_bytes": twin_total.model,
        "ratio_raw_over_llmtwin": _ratio(raw_total.model, twin_total.model),
        "ratio_fl_over_llmtwin": _ratio(fl_total.model, twin_total.model),
        "ratio_raw_over_llmtwin_state_only": _ratio(raw_total.model, state_only),
        "fidelity": round(min(h.replayed.fidelity_stale.fraction for h in trace), 6),
        "fidelity_fresh": round(min(h.replayed.fidelity.fraction for h in trace), 6),
        "kernel_vs_model_error": round(error(twin_total), 6),
        "fl_model": model.name,
        "fl_model_requested": opts.base,
        "fl_model_fallback": model.fallback,
        "fl_weights_files": [p.name for p in model.weights()],
        "fl_weights_bytes": weights_bytes,
        "fl_chunk_bytes": opts.fl_chunk_bytes,
        "fl_rounds_measured": len(rounds),
        "fl_rounds_extrapolated": len(rounds) * (len(fl_times) - 1),
        "gateway_model": model.name,
        "adapter_artifact_bytes": max(t.adapter_bytes for t in twins),
        "adapter_uploads": sum(t.adapter_uploads for t in twins),
        "bytes": {"raw": raw_total.to_json(), "fl": fl_total.to_json(), "llmtwin": twin_total.to_json()},
        "llmtwin_parts": {k: sum(t.by_part.get(k, 0) for t in twins) for k in PARTS},
        "per_home": per_home,
        "series": series,
        "method": _method(opts, model),
        "wall_s": {k: round(v, 1) for k, v in wall.items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.system()} {platform.release()}",
    }
    if model.fallback:
        result["fl_model_note"] = f"{opts.base} is not prepared in the cache: the tiny model stands in (FL and gateway)"
    return result


def _home_json(h: Home, r: RawHome, rnd: Wire, fl: Wire, t: TwinHome, n_fl: int) -> dict[str, Any]:
    return {
        "raw_bytes": r.wire.model,
        "fl_bytes": fl.model,
        "llmtwin_bytes": t.wire.model,
        "ratio_raw_over_llmtwin": _ratio(r.wire.model, t.wire.model),
        "ratio_fl_over_llmtwin": _ratio(fl.model, t.wire.model),
        "fidelity": round(h.replayed.fidelity_stale.fraction, 6),
        "fidelity_fresh": round(h.replayed.fidelity.fraction, 6),
        "ticks": r.ticks,
        "raw_json_bytes": r.json_bytes,
        "replay_baseline_bytes": h.replayed.baseline_bytes,
        "prompts": t.prompts,
        "keyframes": h.replayed.keyframes,
        "prompt_text_bytes": h.replayed.prompt_bytes,
        "adapter_uploads": t.adapter_uploads,
        "adapter_artifact_bytes": t.adapter_bytes,
        "fl_rounds_measured": 1,
        "fl_rounds_extrapolated": n_fl - 1,
        "llmtwin_parts": t.by_part,
        "raw": r.wire.to_json(),
        "fl_round": rnd.to_json(),
        "fl": fl.to_json(),
        "llmtwin": t.wire.to_json(),
    }


def _method(opts: BandwidthBench, model: Model) -> dict[str, str]:
    return {
        "raw": (
            f"measured: every {opts.tick_s:g} s tick, json.dumps of all HA state objects (UTF-8, uncompressed) as "
            "one raw ZeroMQ frame (not the LLM-Twin codec) over CURVE to an acknowledging ROUTER sink (8-byte ack)"
        ),
        "fl": (
            f"state sync: the measured raw run; weights: {model.name} hf/*.safetensors bytes in "
            f"{opts.fl_chunk_bytes} B raw frames, each acked (8 B); the first round per home measured on the wire "
            "(handshake excluded); n = max(1, ceil(K x hours / 24)) rounds per home, the n - 1 further ones "
            "charged the measured round's bytes"
        ),
        "llmtwin": (
            "measured: Hello + every compressor prompt as StateUpload (codec frames) via TwinClient to the real "
            f"gateway, each FINAL; one real {ADAPTER_DTYPE} rank-{ADAPTER_RANK} adapter upload (Begin/Chunk/Commit) "
            f"per "
            f"{opts.lambda_h:g} h per home, verified and activated by the gateway"
        ),
        "bytes": (
            "model = shared.metering (ZMTP + CURVE framing of every frame + CURVE handshake), both directions; "
            "kernel = client TCP_INFO bytes_acked + bytes_received less SYN/FIN, read after the last ack; "
            "relay = a byte-counting TCP relay between client and server"
        ),
    }
