"""``llmtwin bench <name> --out FILE.json``: the benchmarks behind every number the README quotes.

Each benchmark measures ratios against a baseline in the same run and writes a JSON file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("bench", help="run a benchmark, write its JSON results")
    names = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    engine = names.add_parser("engine", help="multi-LoRA batching vs base, per-request swapping, merged models")
    engine.add_argument("--adapters", type=int, default=16)
    engine.add_argument("--batch", type=int, default=16)
    engine.add_argument("--new-tokens", type=int, default=32)
    engine.set_defaults(handler=_engine)
    gateway = names.add_parser("gateway", help="many tenants with distinct adapters through the real gateway")
    gateway.add_argument("--tenants", type=int, default=64)
    gateway.add_argument("--registered", type=int, default=1000)
    gateway.add_argument("--duration", type=float, default=60.0, help="seconds per load phase")
    gateway.add_argument("--new-tokens", type=int, default=16)
    gateway.set_defaults(handler=_gateway)
    finetune = names.add_parser("finetune", help="one edge fine-tuning round (child process): time, memory, accuracy")
    finetune.add_argument("--home", type=int, default=1, help="which home of the default scenario")
    finetune.add_argument("--threads", type=int, default=2)
    finetune.add_argument("--max-time", type=float, default=300.0, help="the round's time budget (s)")
    finetune.add_argument("--rounds", type=int, default=1, help="consecutive rounds, each warm-started")
    finetune.add_argument("--recipe", default="{}", help='JSON of RoundRequest overrides, e.g. {"lr": 0.005}')
    finetune.set_defaults(handler=_finetune)
    memory = names.add_parser(
        "round-memory", help="a round's peak memory, eval in a fresh process vs in the training process"
    )
    memory.add_argument("--home", type=int, default=1, help="which home of the default scenario")
    memory.add_argument("--threads", type=int, default=2)
    memory.add_argument("--max-time", type=float, default=150.0, help="each round's time budget (s)")
    memory.add_argument("--rounds", type=int, default=2, help="consecutive rounds per chain, each warm-started")
    memory.set_defaults(handler=_round_memory)
    for p in (engine, gateway, finetune, memory):
        p.add_argument("--base", default="smollm2-135m")
        p.add_argument("--cache-dir", type=Path)
        p.add_argument("--out", type=Path, required=True, help="results file (JSON)")
    bandwidth = names.add_parser(
        "bandwidth", help="wire bytes vs full-JSON sync and FL-DTN on the same trace and transport"
    )
    bandwidth.add_argument("--hours", type=float, default=24.0, help="the first H hours of the 24 h default trace")
    bandwidth.add_argument("--tick", type=float, default=10.0, help="sync tick (s)")
    bandwidth.add_argument("--fl-rounds", type=int, default=1, help="K: FL-DTN rounds per day")
    bandwidth.add_argument("--lambda-h", type=float, default=24.0, help="λ: hours between adapter uploads")
    bandwidth.add_argument("--base", default="smollm2-135m", help="model for FL weights, adapters and the gateway")
    bandwidth.add_argument("--cache-dir", type=Path)
    bandwidth.add_argument("--out", type=Path, required=True, help="results file (JSON)")
    bandwidth.add_argument(
        "--baselines-out", type=Path, help="also write the curves alone, for `llmtwin bandwidth --baselines`"
    )
    bandwidth.set_defaults(handler=_bandwidth)
    _register_paper(names)
    chaos = names.add_parser(
        "chaos", help="hostile input, auth, faults, load and leak scans against real processes, with counts"
    )
    chaos.add_argument("--parts", default="", help="comma-separated subset: hostile,auth,faults,load,leaks")
    chaos.add_argument("--cache-dir", type=Path, help="model cache (the tiny model is prepared there if missing)")
    chaos.add_argument("--out", type=Path, required=True, help="results file (JSON)")
    chaos.set_defaults(handler=_chaos)


def _engine(args: argparse.Namespace) -> int:
    from benchmarks import engine

    result = engine.run(
        args.base,
        args.out,
        n_adapters=args.adapters,
        batch=args.batch,
        new_tokens=args.new_tokens,
        cache_dir=args.cache_dir,
    )
    print(json.dumps(result, indent=2))
    return 0


def _gateway(args: argparse.Namespace) -> int:
    from benchmarks import gateway

    opts = gateway.GatewayBench(
        base=args.base,
        tenants=args.tenants,
        registered=args.registered,
        duration_s=args.duration,
        new_tokens=args.new_tokens,
        cache_dir=args.cache_dir,
    )
    result = gateway.run(args.out, opts)
    print(json.dumps(result, indent=2))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from benchmarks import finetune

    try:
        recipe = json.loads(args.recipe)
    except ValueError as exc:
        print(f"--recipe: not JSON: {exc}")
        return 2
    if not isinstance(recipe, dict):
        print("--recipe: must be a JSON object of RoundRequest fields")
        return 2
    try:
        result = finetune.run(
            args.base,
            args.out,
            home=args.home,
            threads=args.threads,
            max_time_s=args.max_time,
            rounds=args.rounds,
            cache_dir=args.cache_dir,
            **recipe,
        )
    except ValueError as exc:
        print(f"--recipe: {exc}")
        return 2
    print(json.dumps({k: v for k, v in result.items() if k not in ("loss_curve", "rounds")}, indent=2))
    return 0


def _round_memory(args: argparse.Namespace) -> int:
    from benchmarks import round_memory

    result = round_memory.run(
        args.base,
        args.out,
        home=args.home,
        threads=args.threads,
        max_time_s=args.max_time,
        rounds=args.rounds,
        cache_dir=args.cache_dir,
    )
    print(json.dumps({k: v for k, v in result.items() if k != "by_round"}, indent=2))
    return 0


def _bandwidth(args: argparse.Namespace) -> int:
    from benchmarks import bandwidth

    try:
        bandwidth.BandwidthBench(
            hours=args.hours, tick_s=args.tick, fl_rounds=args.fl_rounds, lambda_h=args.lambda_h
        ).check()
    except ValueError as exc:
        print(f"bench bandwidth: {exc}")
        return 2
    result = bandwidth.run(
        args.out,
        hours=args.hours,
        tick_s=args.tick,
        fl_rounds=args.fl_rounds,
        base=args.base,
        cache_dir=args.cache_dir,
        lambda_h=args.lambda_h,
        baselines_out=args.baselines_out,
    )
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_home", "series", "method")}, indent=2))
    return 0


def _chaos(args: argparse.Namespace) -> int:
    from benchmarks.chaos import run

    parts = [p.strip() for p in args.parts.split(",") if p.strip()] or list(run.PARTS)
    unknown = run.check_parts(parts)
    if unknown:
        print(f"--parts: unknown {', '.join(unknown)} (known: {', '.join(run.PARTS)})")
        return 2
    result = run.run(args.out, parts=parts, cache_dir=args.cache_dir)
    print(json.dumps({k: v for k, v in result.items() if k != "details"}, indent=2))
    return 0 if result["targets_met"] else 1


def _register_paper(names: Any) -> None:
    paper = names.add_parser("paper", help="the paper's case study (Table 2, Fig. 5-9), resumable: JSON, PNGs, doc")
    paper.add_argument("--out", type=Path, help="results file (JSON); required unless --figures-only")
    paper.add_argument("--cache-dir", type=Path)
    # settings: left out when not given, so benchmarks.paper.config.PaperConfig holds every default (and the CLI's
    # start-up does not import it)
    unset = {"default": argparse.SUPPRESS}
    paper.add_argument("--base", **unset, help="prepared base model")
    paper.add_argument("--work", type=Path, **unset, help="adapters and phase state, resumable")
    paper.add_argument("--homes", **unset, help="homes of the default scenario")
    paper.add_argument("--rounds", type=int, **unset, help="fine-tuning rounds per home, each warm-started")
    paper.add_argument("--max-time", dest="max_time_s", type=float, **unset, help="each round's time budget (s)")
    paper.add_argument("--threads", type=int, **unset)
    paper.add_argument("--normal-sizes", dest="sizes_normal", **unset, help="normal-prompt counts")
    paper.add_argument("--reverse-sizes", dest="sizes_reverse", **unset, help="reverse-prompt counts")
    paper.add_argument("--fl-steps", type=int, **unset, help="timed full-weight training steps, after warm-up")
    paper.add_argument("--server-n", type=int, **unset, help="entities N for server compute, n = 1..N")
    paper.add_argument("--comms-hours", type=int, **unset, help="hours of the trace measured for comms (1..24)")
    paper.add_argument("--horizon", dest="horizon_h", type=int, **unset, help="simulated hours of the comms figure")
    paper.add_argument("--link-mbps", type=float, **unset, help="uplink rate for transfer times (Mbit/s)")
    paper.add_argument("--recipe", default="{}", help="JSON of RoundRequest overrides for the adapters")
    paper.add_argument(
        "--pseudonyms",
        action="store_true",
        default=argparse.SUPPRESS,
        help="homes train on keyed pseudonyms of their objects (edge `finetune.pseudonyms`); attackers use real names",
    )
    paper.add_argument(
        "--restart",
        action="store_true",
        help="measure every phase again; trained rounds in the work dir are reused where their requests match "
        "(delete WORK/adapters to train again)",
    )
    paper.add_argument(
        "--redo",
        default="",
        metavar="PHASE[,PHASE]",
        help="measure these phases of the work dir's run again (adapters, privacy, compute, comms)",
    )
    paper.add_argument("--figures", type=Path, help="PNG folder (default: docs/figures)")
    paper.add_argument("--doc", type=Path, help="markdown file (default: docs/results.md)")
    paper.add_argument("--figures-only", type=Path, metavar="FILE.json", help="re-render figures + markdown only")
    paper.set_defaults(handler=_paper)


_PAPER_INT_LISTS = {"homes": "--homes", "sizes_normal": "--normal-sizes", "sizes_reverse": "--reverse-sizes"}


def _paper(args: argparse.Namespace) -> int:
    from benchmarks.paper import config, run

    defaults = config.PaperConfig(Path("paper.json"))
    figures, doc = args.figures or defaults.figures, args.doc or defaults.doc
    try:
        if args.figures_only is not None:
            drawn = run.rerender(args.figures_only, figures, doc)
            print("\n".join(["wrote:", *map(str, drawn), str(doc)]))
            return 0
        if args.out is None:
            raise config.PaperInputError("--out FILE.json is required (or --figures-only FILE.json)")
        try:
            recipe = json.loads(args.recipe)
        except ValueError as exc:
            raise config.PaperInputError(f"--recipe: not JSON: {exc}") from None
        if not isinstance(recipe, dict):
            raise config.PaperInputError("--recipe: must be a JSON object of RoundRequest fields")
        explicit = {"out", "cache_dir", "figures", "doc", "recipe"}  # set below from the other arguments
        settings = {f.name for f in dataclasses.fields(config.PaperConfig)} - explicit
        given = {name: value for name, value in vars(args).items() if name in settings}
        for name, flag in _PAPER_INT_LISTS.items():
            if name in given:
                given[name] = config.parse_ints(given[name], flag)
        cfg = config.PaperConfig(
            out=args.out, cache_dir=args.cache_dir, figures=figures, doc=doc, recipe=recipe, **given
        )
        redo = tuple(name.strip() for name in args.redo.split(",") if name.strip())
        result = run.run(cfg, restart=args.restart, redo=redo)
    except config.PaperInputError as exc:
        print(f"bench paper: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(run.summary(result), indent=2))
    return 0
