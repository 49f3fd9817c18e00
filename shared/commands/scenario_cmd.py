"""``llmtwin scenario generate|summary``: the seeded smart-home scenario."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from shared.scenario import generate, state_objects


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("scenario", help="the seeded smart-home scenario")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, handler, text in (
        ("generate", _generate, "write the scenario to a file"),
        ("summary", _summary, "print counts per home and domain"),
    ):
        p = actions.add_parser(name, help=text)
        p.add_argument("--seed", type=int, default=7)
        p.add_argument("--homes", type=int, default=3)
        p.add_argument("--hours", type=float, default=24.0, help="length of the dynamic trace")
        p.set_defaults(handler=handler)
        if name == "generate":
            p.add_argument("--out", type=Path, required=True, help="output file")
            p.add_argument(
                "--format",
                choices=("json", "ha-jsonl"),
                default="json",
                help="canonical scenario JSON, or the trace as Home Assistant state objects",
            )


def _generate(args: argparse.Namespace) -> int:
    scenario = generate(args.seed, args.homes, args.hours * 3600.0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "json":
        data = scenario.to_json()
    else:
        data = "".join(json.dumps(o, sort_keys=True) + "\n" for o in state_objects(scenario)).encode()
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]})")
    return 0


def _summary(args: argparse.Namespace) -> int:
    scenario = generate(args.seed, args.homes, args.hours * 3600.0)
    print(
        f"seed {scenario.seed}: {len(scenario.homes)} homes, {scenario.n_static_records:,} static records "
        f"({sum(1 for f in scenario.static_facts() if f.sensitive)} sensitive), "
        f"{len(scenario.trace):,} state changes over {scenario.duration_s / 3600:g} h"
    )
    for home in scenario.homes:
        domains = Counter(e.domain for e in home.entities)
        facts = sum(len(e.static) for e in home.entities)
        listing = ", ".join(f"{d} {n}" for d, n in sorted(domains.items()))
        print(
            f"  {home.home_id} ({home.group}, {home.region}): {len(home.entities)} entities, "
            f"{facts} static records: {listing}"
        )
    return 0
