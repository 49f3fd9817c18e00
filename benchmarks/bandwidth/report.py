"""The bandwidth bench's JSON report from the measured parts."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from typing import Any

from benchmarks.bandwidth.baselines import RawHome
from benchmarks.bandwidth.options import ADAPTER_DTYPE, ADAPTER_RANK, DAY_S, PARTS, BandwidthBench, Model
from benchmarks.bandwidth.trace import Home, schedule
from benchmarks.bandwidth.twin import TwinHome
from benchmarks.bandwidth.wire import Timeline, Wire, error
from shared.scenario import Scenario
from shared.scenario.hass import start_time


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
