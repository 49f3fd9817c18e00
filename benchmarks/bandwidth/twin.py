"""(c) LLM-Twin as built: the real client to the real gateway, with its prompts and adapter uploads."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import math
import tomllib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.bandwidth.options import ADAPTER_DTYPE, ADAPTER_RANK, DAY_S, REPLY_TIMEOUT_S, BandwidthBench
from benchmarks.bandwidth.trace import Home, schedule
from benchmarks.bandwidth.wire import Timeline, Wire, kernel_stream
from benchmarks.relay import TcpRelay
from edge.client import ClientKeys, Reply, TwinClient
from edge.finetune.train import TrainOptions, first_lora_layer
from edge.uplink import CHUNK_BYTES
from gateway.service import GatewayService
from shared.adapters import AdapterManifest, write_adapter
from shared.config import GatewayConfig, parse_config
from shared.kernel_accounting import KernelAccounting
from shared.keys import generate_keypair
from shared.metering import Sample, handshake_bytes
from shared.metrics import Registry
from shared.modelspec import ModelSpec, lora_a_name, lora_b_name
from shared.protocol import Encoded, Envelope
from shared.protocol import messages as m
from shared.protocol.results import UploadStatus


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
