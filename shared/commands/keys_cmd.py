"""``llmtwin keys generate``: CURVE key pairs for the gateway and devices (secret files 0600)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("keys", help="generate CURVE key pairs")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    gen = actions.add_parser(
        "generate",
        help="create <name>.key (public) and <name>.key_secret (0600)",
        description="Create CURVE key pairs. Copy the gateway's server.key to every "
        "device and each device's <name>.key into the gateway's tenants_dir.",
    )
    gen.add_argument("--dir", type=Path, required=True, help="where to write the key files")
    gen.add_argument("--server", action="store_true", help="also create the gateway's pair (server)")
    gen.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="NAME",
        help="a device / tenant name (repeatable); the name is its tenant id",
    )
    gen.add_argument("--force", action="store_true", help="replace existing key files")
    gen.set_defaults(handler=_generate)


def _generate(args: argparse.Namespace) -> int:
    from shared.keys import generate_keypair  # zmq

    names = (["server"] if args.server else []) + list(args.device)
    if not names:
        print("nothing to do: give --server and/or --device NAME")
        return 2
    for name in names:
        files = generate_keypair(args.dir, name, overwrite=args.force)
        print(f"{name}: public {files.public}, secret {files.secret} (mode 0600)")
    return 0
