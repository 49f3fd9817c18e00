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
    for p in (engine, gateway):
        p.add_argument("--base", default="smollm2-135m")
        p.add_argument("--cache-dir", type=Path)
        p.add_argument("--out", type=Path, required=True, help="results file (JSON)")


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
