"""``llmtwin query --twin ID [--inter] "question"``: ask a twin through the gateway."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from shared.config import EdgeConfig, load_config
from shared.errors import ConfigError
from shared.protocol import messages as m
from shared.protocol.results import QueryResult
from shared.pseudonyms import TABLE_FILE, Pseudonyms


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
    parser.add_argument(
        "--names",
        type=Path,
        help="the twin's pseudonym table (finetune.pseudonyms; default with --config: <data_dir>/pseudonyms.json): "
        "object names in the question are sent as their pseudonyms and turned back in the answer",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    endpoint, server_key, key = args.endpoint, args.server_key, args.key
    cfg: EdgeConfig | None = None
    if args.config is not None:
        cfg = load_config(EdgeConfig, args.config)
        endpoint = endpoint or cfg.gateway.endpoint
        server_key = server_key or cfg.gateway.server_public_key
        key = key or cfg.gateway.client_secret_key
    if not (endpoint and server_key and key):
        print("llmtwin query: give --config, or --endpoint, --server-key and --key")
        return 2
    try:
        names = _names(args, cfg)
    except ConfigError as exc:
        print(f"llmtwin query: {exc}")
        return 2
    if names is not None:
        sent = names.hide(args.question, facts=args.facts and not args.inter)  # facts: by fact names
        _note_unhidden(names, args.question, sent)
        args.question = sent
    result = asyncio.run(_ask(args, endpoint, server_key, key))
    if names is not None:
        result = dataclasses.replace(result, answer=names.reveal(result.answer))
    if args.json:
        print(json.dumps(_plain(result), indent=2))
    else:
        print(result.answer)
        for agg in result.aggregates:
            print(f"  [{agg.name}: {agg.value:g}{agg.unit} over {agg.n}]")
        if result.base_only:
            print(f"  [the base model answered: adapter v{result.adapter_version} reads the state worse]")
    return 0


def _names(args: argparse.Namespace, cfg: EdgeConfig | None) -> Pseudonyms | None:
    """The tenant's pseudonym table for the asked twin: ``--names``, else the device's when it uses them."""
    path = args.names
    if path is None and cfg is not None and cfg.finetune.pseudonyms:
        path = cfg.device.data_dir / TABLE_FILE
        if not path.exists():
            raise ConfigError(path, "", None, "no pseudonym table yet: the daemon writes it when it reports state")
    if path is None:
        return None
    names = Pseudonyms.load(path)
    if names.twin_id != args.twin:
        raise ConfigError(path, "twin_id", names.twin_id, f"this table is not twin {args.twin!r}'s")
    return names


def _note_unhidden(names: Pseudonyms, asked: str, sent: str) -> None:
    """Say on stderr which words of an object's real name the question still carries as written (a name
    worded otherwise than the table knows), and the full names that would have gone as pseudonyms (matched
    on every such word as asked: "the ceiling lamp in the kitchen" -> kitchen ceiling light)."""
    left = names.unhidden(sent)
    if not left:
        return
    words = ", ".join(repr(w) for w in left)
    full = names.named_by(names.unhidden(asked))[:5]
    hint = f"; name the object in full to send it as its pseudonym, e.g. {', '.join(full)}" if full else ""
    note = f"llmtwin query: note: {words} went to the gateway as written (not a full object name){hint}"
    print(note, file=sys.stderr)


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
