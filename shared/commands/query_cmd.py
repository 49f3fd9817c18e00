"""``llmtwin query --twin ID [--inter] "question"``: ask a twin through the gateway."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from shared.config import EdgeConfig, load_config
from shared.protocol import messages as m
from shared.protocol.results import QueryResult


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("query", help="ask a twin a question")
    parser.add_argument("question")
    parser.add_argument("--twin", required=True, help="twin id")
    parser.add_argument("--inter", action="store_true", help="include other twins' shared state")
    parser.add_argument(
        "--facts",
        action="store_true",
        help="ask the twin's adapter alone (static facts learnt on the device), without state context",
    )
    parser.add_argument("--scope", choices=("group", "region"), default="group")
    parser.add_argument("--config", type=Path, help="edge profile: gateway endpoint and this device's keys")
    parser.add_argument("--endpoint", help="gateway endpoint (overrides --config)")
    parser.add_argument("--server-key", type=Path, help="the gateway's public certificate")
    parser.add_argument("--key", type=Path, help="this client's secret certificate")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the answer")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    endpoint, server_key, key = args.endpoint, args.server_key, args.key
    if args.config is not None:
        cfg = load_config(EdgeConfig, args.config)
        endpoint = endpoint or cfg.gateway.endpoint
        server_key = server_key or cfg.gateway.server_public_key
        key = key or cfg.gateway.client_secret_key
    if not (endpoint and server_key and key):
        print("llmtwin query: give --config, or --endpoint, --server-key and --key")
        return 2
    result = asyncio.run(_ask(args, endpoint, server_key, key))
    if args.json:
        print(json.dumps(_plain(result), indent=2))
    else:
        print(result.answer)
        for agg in result.aggregates:
            print(f"  [{agg.name}: {agg.value:g}{agg.unit} over {agg.n}]")
        if result.base_only:
            print(f"  [the base model answered: adapter v{result.adapter_version} reads the state worse]")
    return 0


async def _ask(args: argparse.Namespace, endpoint: str, server_key: Path, key: Path) -> QueryResult:
    from edge.client import ClientKeys, TwinClient  # heavy: zmq

    message: m.Message
    if args.inter:
        message = m.InterQuery(args.twin, args.question, args.scope, args.max_new_tokens)
    else:
        message = m.Query(args.twin, args.question, args.max_new_tokens, context="none" if args.facts else "state")
    async with TwinClient(endpoint, ClientKeys.from_files(server_key, key)) as client:
        reply = await client.request(message, timeout_s=args.timeout)
    reply.raise_for_error()
    assert isinstance(reply.result, QueryResult)
    return reply.result


def _plain(result: QueryResult) -> Any:
    from shared.typed import to_plain

    return to_plain(result)
