"""Fig. 9 analogue: communication bytes and link time over simulated time, for several λ and K.

Measured (in this run, with ``benchmarks.bandwidth``'s own pieces, over CURVE through byte-counting
relays; bytes are ``shared.metering`` model bytes, which ``llmtwin bench bandwidth`` checks against the
kernel's TCP counters):

- per home, the first ``hours`` of the default trace: full-JSON state sync every tick (``raw_sync``, the
  conventional twin and FL-DTN's state sync) and LLM-Twin's Hello + compressor prompts through the real
  ``TwinClient`` to a real ``GatewayService``, binned into hourly byte counts (hour 0 = the handshake);
- per home, one upload of that home's REAL adapter artifact from the adapters phase (the bytes the edge
  uplink sends: the artifact file and its manifest; Begin / 256 KiB chunks / Commit, each answered);
- one FL round: the prepared base model's fp32 weights (``fl_round``: 1 MiB raw frames, each acked).

Composed (:func:`compose`, pure): over ``horizon_h`` hours, the measured state-sync hours repeated
(hour h uses measured hour ((h - 1) mod hours) + 1; the handshake once); LLM-Twin adds every home's
measured upload at λ, 2λ, ... ≤ horizon; FL-DTN adds every home's measured round at 24/K h, 2·24/K h, ...
(an update is charged at the end of its period, as ``bench bandwidth`` does). Link time = bytes of one
home x 8 / ``link_mbps`` (each home has its own uplink). ``bytes_llmtwin`` / ``bytes_fl``: all homes,
λ = 24 h / K = 1, the first 24 h.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from benchmarks import bandwidth as bw
from benchmarks.relay import TcpRelay
from edge.client import ClientKeys, TwinClient
from shared.adapters import AdapterManifest, manifest_path
from shared.modelspec import HF_DIR
from shared.protocol import messages as m
from shared.scenario import generate
from shared.scenario.hass import start_time

DEFAULT_LAMBDAS_H = (6.0, 24.0, 72.0)
DEFAULT_KS = (1, 4, 24)


@dataclass(frozen=True, slots=True)
class HomeUnits:
    twin_id: str
    raw_hourly: list[int]  # full-JSON sync bytes charged to hour 0 (handshake), 1, ... hours
    state_hourly: list[int]  # LLM-Twin Hello + prompts, likewise
    adapter_upload_bytes: int  # one upload of the home's artifact, both directions, framing included
    adapter_artifact_bytes: int
    adapter_upload_s: float  # loopback wall time of that upload (gateway verification included)
    fidelity: float


@dataclass(frozen=True, slots=True)
class Units:
    hours: int
    tick_s: float
    homes: list[HomeUnits]
    fl_round_bytes: int  # one round of full weights, both directions, handshake excluded
    fl_weights_bytes: int
    fl_round_s: float  # loopback wall time of that round

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Units:
        return cls(**{**doc, "homes": [HomeUnits(**h) for h in doc["homes"]]})


# ------------------------------------------------------------------------------------------------
# composition (pure)


def hourly(events: Sequence[tuple[float, int]], hours: int) -> list[int]:
    """Bytes per hour mark: bin 0 holds events at t <= 0, bin k those in ((k-1) h, k h]."""
    bins = [0] * (hours + 1)
    for ts, nbytes in events:
        bins[min(hours, max(0, math.ceil(ts / 3600.0 - 1e-9)))] += nbytes
    return bins


def periodic(horizon_h: float, period_h: float) -> list[float]:
    """End of every period within the horizon: period, 2 period, ... <= horizon."""
    return [j * period_h for j in range(1, math.floor(horizon_h / period_h + 1e-9) + 1)]


def repeated(day: Sequence[int], horizon_h: int) -> list[int]:
    """Hourly bytes over ``horizon_h`` hours from ``day`` (bin 0 + ``len(day) - 1`` measured hours)."""
    span = len(day) - 1
    return [day[0]] + [day[(h - 1) % span + 1] for h in range(1, horizon_h + 1)]


def cumulative(per_hour: Sequence[int], events_h: Sequence[float], each: int) -> list[int]:
    """Cumulative bytes at every hour mark: ``per_hour`` plus ``each`` bytes at every event time
    (charged at the first hour mark at or after it)."""
    extra = [0] * len(per_hour)
    for t in events_h:
        extra[min(len(per_hour) - 1, math.ceil(t - 1e-9))] += each
    out, total = [], 0
    for a, b in zip(per_hour, extra, strict=True):
        total += a + b
        out.append(total)
    return out


def compose(
    units: Units,
    *,
    horizon_h: int = 72,
    lambdas_h: Sequence[float] = DEFAULT_LAMBDAS_H,
    ks: Sequence[int] = DEFAULT_KS,
    link_mbps: float = 10.0,
) -> dict[str, Any]:
    """Cumulative bytes (all homes) and link seconds (per home) at every hour, per λ and per K."""
    n = len(units.homes)
    raw = [sum(v) for v in zip(*(repeated(h.raw_hourly, horizon_h) for h in units.homes), strict=True)]
    state = [sum(v) for v in zip(*(repeated(h.state_hourly, horizon_h) for h in units.homes), strict=True)]
    upload = sum(h.adapter_upload_bytes for h in units.homes)
    llmtwin = {f"{lam:g}": cumulative(state, periodic(horizon_h, lam), upload) for lam in lambdas_h}
    fl = {str(k): cumulative(raw, periodic(horizon_h, 24.0 / k), n * units.fl_round_bytes) for k in ks}

    def link_s(total: int) -> float:
        return round(total / n * 8 / (link_mbps * 1e6), 3)

    at = min(24, horizon_h)
    rows = [
        {
            "system": "LLM-Twin",
            "lambda_h": float(lam),
            "K": None,
            "bytes_24h": llmtwin[f"{lam:g}"][at],
            "bytes_horizon": llmtwin[f"{lam:g}"][-1],
            "link_s_per_home_horizon": link_s(llmtwin[f"{lam:g}"][-1]),
        }
        for lam in lambdas_h
    ] + [
        {
            "system": "FL-DTN",
            "lambda_h": None,
            "K": k,
            "bytes_24h": fl[str(k)][at],
            "bytes_horizon": fl[str(k)][-1],
            "link_s_per_home_horizon": link_s(fl[str(k)][-1]),
        }
        for k in ks
    ]
    return {
        "horizon_h": horizon_h,
        "link_mbps": link_mbps,
        "homes": n,
        "hours": list(range(horizon_h + 1)),
        "series": {"raw": cumulative(raw, [], 0), "llmtwin": llmtwin, "fl": fl},
        "table": rows,
        "bytes_llmtwin": cumulative(state, periodic(24, 24.0), upload)[at] if horizon_h >= 24 else None,
        "bytes_fl": cumulative(raw, periodic(24, 24.0), n * units.fl_round_bytes)[at] if horizon_h >= 24 else None,
        "adapter_upload_bytes": [h.adapter_upload_bytes for h in units.homes],
        "adapter_artifact_bytes": [h.adapter_artifact_bytes for h in units.homes],
        "fl_round_bytes": units.fl_round_bytes,
        "fl_weights_bytes": units.fl_weights_bytes,
        "fidelity": min(h.fidelity for h in units.homes),
        "measured_hours": units.hours,
        "tick_s": units.tick_s,
    }


# ------------------------------------------------------------------------------------------------
# measurement


@dataclass(frozen=True, slots=True)
class Artifact:
    home: int  # 1-based index in the scenario
    twin_id: str
    path: Path


def measure(
    model_dir: Path,
    base: str,
    cache_dir: Path,
    artifacts: Sequence[Artifact],
    *,
    hours: int = 24,
    tick_s: float = 10.0,
    seed: int = 7,
    n_homes: int = 3,
) -> Units:
    """The per-unit costs above, sent for real (see the module docstring)."""
    if not 1 <= hours <= 24:
        raise ValueError("hours must be 1..24 (the measured slice of the 24 h trace)")
    opts = bw.BandwidthBench(
        hours=float(hours), tick_s=tick_s, base=base, cache_dir=cache_dir, seed=seed, homes=n_homes
    )
    return asyncio.run(_measure(opts, model_dir, cache_dir, artifacts))


async def _measure(opts: bw.BandwidthBench, model_dir: Path, cache: Path, artifacts: Sequence[Artifact]) -> Units:
    scenario = generate(opts.seed, opts.homes, bw.DAY_S)
    start_epoch = start_time(scenario.start_iso).timestamp()
    trace = bw.homes(scenario, opts)
    chosen = [trace[a.home - 1] for a in artifacts]
    weights = memoryview(b"".join(p.read_bytes() for p in sorted((model_dir / HF_DIR).glob("*.safetensors"))))
    ctx = zmq.asyncio.Context()
    try:
        public, secret = zmq.curve_keypair()
        async with bw.sink(ctx, secret) as port:
            raw = [await bw.raw_sync(ctx, port, public, h, scenario.start_iso, opts) for h in chosen]
            clock = time.perf_counter()
            round_wire = await bw.fl_round(ctx, port, public, weights, opts.fl_chunk_bytes)
            fl_s = time.perf_counter() - clock
    finally:
        ctx.term()
    homes = []
    with tempfile.TemporaryDirectory(prefix="llmtwin-paper-comms-") as tmp:
        root = Path(tmp)
        async with bw.gateway(root, cache, opts.base, [h.twin_id for h in chosen]) as service:
            for home, art, r in zip(chosen, artifacts, raw, strict=True):
                keys = ClientKeys.from_files(root / "keys" / "server.key", root / "keys" / f"{home.twin_id}.key_secret")
                homes.append(await _twin_home(service.endpoint, keys, home, art, r, start_epoch, opts))
    return Units(int(opts.hours), opts.tick_s, homes, round_wire.model, len(weights), round(fl_s, 3))


async def _twin_home(
    endpoint: str,
    keys: ClientKeys,
    home: bw.Home,
    art: Artifact,
    raw: bw.RawHome,
    start_epoch: float,
    opts: bw.BandwidthBench,
) -> HomeUnits:
    """Hello and the home's prompts in trace order, then one upload of its real artifact."""
    tally = bw.Tally()
    hours = int(opts.hours)
    async with contextlib.AsyncExitStack() as stack:
        relay = await stack.enter_async_context(TcpRelay(int(endpoint.rsplit(":", 1)[1])))
        client = await stack.enter_async_context(TwinClient(relay.endpoint, keys, on_bytes=tally))
        entities = len({c.entity_id for c in home.changes})
        hello = m.Hello(home.twin_id, "llmtwin-bench", "bench", "", entities)
        (await client.request(hello, timeout_s=bw.REPLY_TIMEOUT_S)).raise_for_error()
        tally.part = "state"
        for index, prompt in enumerate(home.replayed.prompts):
            tally.now_s = prompt.ts
            up = m.StateUpload(home.twin_id, index + 1, int((start_epoch + prompt.ts) * 1000), prompt.kind, prompt.text)
            (await client.request(up, timeout_s=bw.REPLY_TIMEOUT_S)).raise_for_error()
        state_hourly = hourly(tally.timeline.events, hours)
        before = tally.wire.model
        data, manifest = art.path.read_bytes(), manifest_path(art.path).read_bytes()
        version = AdapterManifest.from_json(manifest, str(art.path)).version
        tally.part = "adapter"
        clock = time.perf_counter()
        await bw.upload_adapter(client, home.twin_id, version, data, manifest)
        upload_s = time.perf_counter() - clock
        upload = tally.wire.model - before
    return HomeUnits(
        twin_id=home.twin_id,
        raw_hourly=hourly(raw.timeline.events, hours),
        state_hourly=state_hourly,
        adapter_upload_bytes=upload,
        adapter_artifact_bytes=len(data),
        adapter_upload_s=round(upload_s, 3),
        fidelity=round(home.replayed.fidelity_stale.fraction, 6),
    )


def method(units: Units) -> str:
    return (
        f"measured in this run over CURVE (model bytes, both directions): {units.hours} h of the default trace "
        f"per home at a {units.tick_s:g} s tick as full-JSON sync (benchmarks.bandwidth.raw_sync) and as "
        "LLM-Twin prompts to the real gateway; one upload of each home's real adapter artifact from the "
        "adapters phase; one FL round of the base model's fp32 weights (benchmarks.bandwidth.fl_round). "
        "Composed: the measured hours repeated over the horizon, an upload per home every λ and an FL round "
        "per home every 24/K h, charged at the end of each period; link time = one home's bytes x 8 / link rate"
    )
