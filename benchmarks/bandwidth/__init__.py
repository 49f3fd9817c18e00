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

Modules: ``options`` (settings, constants, model), ``wire`` (byte counts), ``peers`` (sink, raw DEALER),
``trace`` (per-home changes and ticks), ``baselines`` (raw sync, FL round), ``twin`` (LLM-Twin through the
real gateway), ``report`` (the JSON); this module runs them in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from benchmarks.bandwidth.baselines import RawHome, fl_round, raw_sync
from benchmarks.bandwidth.options import DAY_S, REPLY_TIMEOUT_S, BandwidthBench, resolve_model
from benchmarks.bandwidth.peers import sink
from benchmarks.bandwidth.report import report
from benchmarks.bandwidth.trace import Home, homes, schedule
from benchmarks.bandwidth.twin import Tally, gateway, llmtwin_home, upload_adapter
from edge.client import ClientKeys
from shared.modelspec import default_cache_dir, load_spec
from shared.scenario import generate
from shared.scenario.hass import start_time

__all__ = [  # the pieces benchmarks.paper.comms measures with, and the tests
    "DAY_S",
    "REPLY_TIMEOUT_S",
    "BandwidthBench",
    "Home",
    "RawHome",
    "Tally",
    "fl_round",
    "gateway",
    "homes",
    "raw_sync",
    "run",
    "schedule",
    "sink",
    "upload_adapter",
]


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
