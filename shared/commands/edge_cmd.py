"""``llmtwin edge --config <profile>.toml``: the edge daemon (what systemd runs), and its actions.

``llmtwin edge status --config ...`` prints the running daemon's status from its admin server.
``llmtwin edge train-now --config ... [--wait]`` asks the running daemon for a fine-tuning round now;
``--wait`` follows it with a progress bar until it ends and exits 0 only if the adapter was accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from shared.config import EdgeConfig, load_config


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("edge", help="run the edge daemon (or talk to it)")
    parser.add_argument(
        "action",
        nargs="?",
        choices=("run", "status", "train-now"),
        default="run",
        help="run the daemon (default), print a running daemon's status, or ask it for a fine-tuning round",
    )
    parser.add_argument("--wait", action="store_true", help="train-now: follow the round to its end")
    parser.add_argument("--config", type=Path, required=True, help="device profile (TOML)")
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    cfg = load_config(EdgeConfig, args.config)
    if args.action == "status":
        return _status(cfg)
    if args.action == "train-now":
        return _train_now(cfg, args.wait)
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


def _train_now(cfg: EdgeConfig, wait: bool) -> int:
    base = f"http://{cfg.admin.host}:{cfg.admin.port}"
    before = _rounds(base)
    if before is None:
        return 1
    request = urllib.request.Request(f"{base}/finetune", method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            print(f"round requested ({response.status})")
    except urllib.error.HTTPError as exc:
        print(f"refused: {json.load(exc).get('error', exc.reason)}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"no daemon answers at {base}: {exc}", file=sys.stderr)
        return 1
    if not wait:
        return 0
    last_before = before[0]["version"] if before else 0
    while True:  # a user watching a progress bar: poll the daemon's status
        time.sleep(1.0)
        status = _get(f"{base}/status")
        if status is None:
            return 1
        ft = status.get("finetune") or {}
        progress = ft.get("progress")
        if progress:
            loss = f" loss {progress['loss']:.3f}" if progress.get("loss") is not None else ""
            print(
                f"\rv{ft['running']} {progress['phase']:<9} {progress['step']}/{progress['total']}{loss} "
                f"{progress['elapsed_s']:.0f}s   ",
                end="",
                flush=True,
            )
        done = [r for r in ft.get("rounds", []) if r["version"] > last_before and r["status"] != "running"]
        if done:
            r = done[0]
            print(f"\nround v{r['version']} {r['status']}: {r['reason']}")
            return 0 if r["status"] == "accepted" else 1


def _rounds(base: str) -> list[dict[str, Any]] | None:
    status = _get(f"{base}/status")
    if status is None:
        return None
    return list((status.get("finetune") or {}).get("rounds", []))


def _get(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            doc: dict[str, Any] = json.load(response)
            return doc
    except OSError as exc:
        print(f"no daemon answers at {url}: {exc}", file=sys.stderr)
        return None
