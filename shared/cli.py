"""The ``llmtwin`` command line.

Each subcommand lives in its own module with a ``register(subparsers)`` function; this table is
the one place that lists them, imported lazily so ``llmtwin --help`` stays fast and a command's
heavy dependencies (torch, onnxruntime, zmq) load only when that command runs. A command exists
here only once it works.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from shared.errors import TwinError

COMMANDS: tuple[str, ...] = (
    "shared.commands.config_cmd",
    "shared.commands.scenario_cmd",
    "shared.commands.keys_cmd",
    "shared.commands.model_cmd",
    "shared.commands.gateway_cmd",
    "shared.commands.edge_cmd",
    "shared.commands.query_cmd",
    "shared.commands.demo_cmd",
    "shared.commands.bench_cmd",
    "shared.commands.bandwidth_cmd",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmtwin",
        description="LLM-Twin: edge-to-cloud digital twins (semantic prompts + per-device LoRA adapters).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except TwinError as exc:
        print(f"llmtwin: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
