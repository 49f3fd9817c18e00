"""``llmtwin demo``: gateway + three simulated homes on the real model (see edge/demo.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("demo", help="run the whole system locally, end to end")
    parser.add_argument("--work", type=Path, default=Path(".demo"), help="work folder (keys, configs, state, logs)")
    parser.add_argument("--base", default="smollm2-135m", help="base model: smollm2-135m | tiny | PATH")
    parser.add_argument("--cache-dir", type=Path, help="model cache (default: $XDG_CACHE_HOME/llmtwin)")
    parser.add_argument("--speed", type=float, default=120.0, help="simulated seconds per real second")
    parser.add_argument("--sync-hours", type=float, default=2.0, help="simulated hours to sync before asking")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from edge.demo import DemoOptions, run_demo  # heavy: zmq

    return run_demo(DemoOptions(args.work, args.base, args.cache_dir, args.speed, args.sync_hours))
