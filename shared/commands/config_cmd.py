"""``llmtwin config check FILE``: validate an edge profile or a gateway config."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from shared.config import EdgeConfig, GatewayConfig, parse_config, read_toml
from shared.errors import ConfigError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("config", help="validate configuration files")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="validate edge profiles / gateway configs")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    check.add_argument(
        "--kind",
        choices=("auto", "edge", "gateway"),
        default="auto",
        help="config kind (auto: [device] means edge, [server] means gateway)",
    )
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            print(f"ok    {path}: {describe(path, args.kind)}")
        except ConfigError as exc:
            failed += 1
            print(f"FAIL  {exc}")
    return 1 if failed else 0


def describe(path: Path, kind: str = "auto") -> str:
    """Validate one file and return a one-line summary."""
    data = read_toml(path)
    if kind == "auto":
        kind = "edge" if "device" in data else "gateway" if "server" in data else ""
        if not kind:
            reason = "neither an edge profile ([device]) nor a gateway config ([server])"
            raise ConfigError(path, "", None, reason)
    if kind == "edge":
        edge = parse_config(EdgeConfig, data, path)
        sources = ", ".join(s.type for s in edge.sources)
        return (
            f"edge profile {edge.device.profile!r}, twin {edge.device.twin_id!r}, sources: {sources}, "
            f"λ = {edge.finetune.lambda_h:g} h"
        )
    gateway = parse_config(GatewayConfig, data, path)
    return f"gateway on {gateway.server.bind}, base model {gateway.model.base!r}"
