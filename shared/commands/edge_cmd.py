"""``llmtwin edge --config <profile>.toml``: the edge daemon (what systemd runs), and its actions.

``llmtwin edge status --config ...`` prints the running daemon's status from its admin server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import urllib.request
from pathlib import Path
from typing import Any

from shared.config import EdgeConfig, load_config


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("edge", help="run the edge daemon (or talk to it)")
    parser.add_argument(
        "action",
        nargs="?",
        choices=("run", "status"),
        default="run",
        help="run the daemon (default) or print a running daemon's status",
    )
    parser.add_argument("--config", type=Path, required=True, help="device profile (TOML)")
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    cfg = load_config(EdgeConfig, args.config)
    if args.action == "status":
        return _status(cfg)
    asyncio.run(_serve(cfg, args.config))
    return 0


async def _serve(cfg: EdgeConfig, path: Path) -> None:
    from edge.daemon import EdgeDaemon  # heavy: zmq, aiohttp

    daemon = EdgeDaemon(cfg, config_path=path)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    loop.add_signal_handler(signal.SIGHUP, daemon.request_reload)
    try:
        await daemon.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def _status(cfg: EdgeConfig) -> int:
    url = f"http://{cfg.admin.host}:{cfg.admin.port}/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            print(json.dumps(json.load(response), indent=2))
    except OSError as exc:
        logging.getLogger(__name__).error("no daemon answers at %s: %s", url, exc)
        return 1
    return 0
