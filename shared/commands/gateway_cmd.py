"""``llmtwin gateway --config gateway.toml``: run the gateway until SIGTERM/SIGINT (twice: force)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from shared.config import GatewayConfig, load_config


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("gateway", help="run the cloud gateway")
    parser.add_argument("--config", type=Path, required=True, help="gateway TOML file")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(GatewayConfig, args.config)
    asyncio.run(_serve(cfg))
    return 0


async def _serve(cfg: GatewayConfig) -> None:
    from gateway.service import GatewayService  # heavy: zmq, onnxruntime

    service = GatewayService(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.request_stop)
    loop.add_signal_handler(signal.SIGHUP, service.tenants.reload)
    try:
        await service.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
