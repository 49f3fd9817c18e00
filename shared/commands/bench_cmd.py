"""``llmtwin bench <name> --out FILE.json``: the benchmarks behind every number the README quotes.

Each benchmark measures ratios against a baseline in the same run and writes a JSON file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("bench", help="run a benchmark, write its JSON results")
    names = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    engine = names.add_parser("engine", help="multi-LoRA batching vs base, per-request swapping, merged models")
    engine.add_argument("--adapters", type=int, default=16)
    engine.add_argument("--batch", type=int, default=16)
    engine.add_argument("--new-tokens", type=int, default=32)
    engine.set_defaults(handler=_engine)
    gateway = names.add_parser("gateway", help="many tenants with distinct adapters through the real gateway")
    gateway.add_argument("--tenants", type=int, default=64)
    gateway.add_argument("--registered", type=int, default=1000)
    gateway.add_argument("--duration", type=float, default=60.0, help="seconds per load phase")
    gateway.add_argument("--new-tokens", type=int, default=16)
    gateway.set_defaults(handler=_gateway)
    finetune = names.add_parser("finetune", help="one edge fine-tuning round (child process): time, memory, accuracy")
    finetune.add_argument("--home", type=int, default=1, help="which home of the default scenario")
    finetune.add_argument("--threads", type=int, default=2)
    finetune.add_argument("--max-time", type=float, default=300.0, help="the round's time budget (s)")
    finetune.add_argument("--rounds", type=int, default=1, help="consecutive rounds, each warm-started")
    finetune.add_argument("--recipe", default="{}", help='JSON of RoundRequest overrides, e.g. {"lr": 0.005}')
    finetune.set_defaults(handler=_finetune)
    for p in (engine, gateway, finetune):
        p.add_argument("--base", default="smollm2-135m")
        p.add_argument("--cache-dir", type=Path)
        p.add_argument("--out", type=Path, required=True, help="results file (JSON)")
    bandwidth = names.add_parser(
        "bandwidth", help="wire bytes vs full-JSON sync and FL-DTN on the same trace and transport"
    )
    bandwidth.add_argument("--hours", type=float, default=24.0, help="the first H hours of the 24 h default trace")
    bandwidth.add_argument("--tick", type=float, default=10.0, help="sync tick (s)")
    bandwidth.add_argument("--fl-rounds", type=int, default=1, help="K: FL-DTN rounds per day")
    bandwidth.add_argument("--lambda-h", type=float, default=24.0, help="λ: hours between adapter uploads")
    bandwidth.add_argument("--base", default="smollm2-135m", help="model for FL weights, adapters and the gateway")
    bandwidth.add_argument("--cache-dir", type=Path)
    bandwidth.add_argument("--out", type=Path, required=True, help="results file (JSON)")
    bandwidth.add_argument(
        "--baselines-out", type=Path, help="also write the curves alone, for `llmtwin bandwidth --baselines`"
    )
    bandwidth.set_defaults(handler=_bandwidth)
    chaos = names.add_parser(
        "chaos", help="hostile input, auth, faults, load and leak scans against real processes, with counts"
    )
    chaos.add_argument("--parts", default="", help="comma-separated subset: hostile,auth,faults,load,leaks")
    chaos.add_argument("--cache-dir", type=Path, help="model cache (the tiny model is prepared there if missing)")
    chaos.add_argument("--out", type=Path, required=True, help="results file (JSON)")
    chaos.set_defaults(handler=_chaos)


def _engine(args: argparse.Namespace) -> int:
    from benchmarks import engine

    result = engine.run(
        args.base,
        args.out,
        n_adapters=args.adapters,
        batch=args.batch,
        new_tokens=args.new_tokens,
        cache_dir=args.cache_dir,
    )
    print(json.dumps(result, indent=2))
    return 0


def _gateway(args: argparse.Namespace) -> int:
    from benchmarks import gateway

    opts = gateway.GatewayBench(
        base=args.base,
        tenants=args.tenants,
        registered=args.registered,
        duration_s=args.duration,
        new_tokens=args.new_tokens,
        cache_dir=args.cache_dir,
    )
    result = gateway.run(args.out, opts)
    print(json.dumps(result, indent=2))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from benchmarks import finetune

    try:
        recipe = json.loads(args.recipe)
    except ValueError as exc:
        print(f"--recipe: not JSON: {exc}")
        return 2
    if not isinstance(recipe, dict):
        print("--recipe: must be a JSON object of RoundRequest fields")
        return 2
    try:
        result = finetune.run(
            args.base,
            args.out,
            home=args.home,
            threads=args.threads,
            max_time_s=args.max_time,
            rounds=args.rounds,
            cache_dir=args.cache_dir,
            **recipe,
        )
    except ValueError as exc:
        print(f"--recipe: {exc}")
        return 2
    print(json.dumps({k: v for k, v in result.items() if k not in ("loss_curve", "rounds")}, indent=2))
    return 0


def _bandwidth(args: argparse.Namespace) -> int:
    from benchmarks import bandwidth

    try:
        bandwidth.BandwidthBench(
            hours=args.hours, tick_s=args.tick, fl_rounds=args.fl_rounds, lambda_h=args.lambda_h
        ).check()
    except ValueError as exc:
        print(f"bench bandwidth: {exc}")
        return 2
    result = bandwidth.run(
        args.out,
        hours=args.hours,
        tick_s=args.tick,
        fl_rounds=args.fl_rounds,
        base=args.base,
        cache_dir=args.cache_dir,
        lambda_h=args.lambda_h,
        baselines_out=args.baselines_out,
    )
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_home", "series", "method")}, indent=2))
    return 0


def _chaos(args: argparse.Namespace) -> int:
    from benchmarks.chaos import run

    parts = [p.strip() for p in args.parts.split(",") if p.strip()] or list(run.PARTS)
    unknown = run.check_parts(parts)
    if unknown:
        print(f"--parts: unknown {', '.join(unknown)} (known: {', '.join(run.PARTS)})")
        return 2
    result = run.run(args.out, parts=parts, cache_dir=args.cache_dir)
    print(json.dumps({k: v for k, v in result.items() if k != "details"}, indent=2))
    return 0 if result["targets_met"] else 1

