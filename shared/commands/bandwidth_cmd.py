"""``llmtwin bandwidth LOG [LOG ...]``: a report over the bandwidth logs edge daemons and the gateway write.

Exit status: 0 when something was summarised (even with issues), 1 when no file could be read (or
the plot could not be written), 2 on bad arguments (including an invalid baselines file).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.bandwidth.units import parse_by, parse_duration, parse_since


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "bandwidth",
        help="report over bandwidth logs (totals, rates, kernel vs model, plot, live tail)",
        description="Summarise bandwidth logs (JSONL, schema in shared/bandwidth/__init__.py). A LOG may be "
        "the base path of a rotated set: its path.N siblings are read too, oldest first. Bad lines are "
        "reported with file:line and skipped; everything else is still summarised.",
    )
    parser.add_argument("logs", nargs="+", type=Path, metavar="LOG", help="log file or base path of a rotated set")
    parser.add_argument(
        "--by",
        type=_arg(parse_by),
        default=("tenant", "type", "dir"),
        metavar="KEYS",
        help="group totals by these comma-separated keys: tenant, twin, side, type, dir (default: tenant,type,dir)",
    )
    parser.add_argument(
        "--window", type=_arg(parse_duration), metavar="DURATION", help="also bytes per time window: 10m, 1h, 1d …"
    )
    parser.add_argument(
        "--since",
        type=_arg(parse_since),
        metavar="TIME",
        help="count records from this time on: epoch seconds, ISO 8601 (UTC if no zone), or a duration ago (2h)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document (issues included) instead of tables")
    parser.add_argument("--plot", type=Path, metavar="OUT.png", help="write cumulative wire bytes per type as a PNG")
    parser.add_argument(
        "--baselines",
        type=Path,
        metavar="FILE.json",
        help="baseline curves for --plot (format: README, shared/bandwidth/baselines.py)",
    )
    parser.add_argument(
        "--follow", action="store_true", help="keep reading new records (survives rotation); Ctrl-C prints the report"
    )
    parser.add_argument(
        "--interval", type=_arg(parse_duration), default=0.5, metavar="DURATION", help="--follow poll interval (0.5s)"
    )
    parser.set_defaults(handler=_run)


def _arg(parse: Callable[[str], object]) -> Callable[[str], object]:
    def convert(text: str) -> object:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__.removeprefix("parse_")
    return convert


def _fail(message: str, status: int) -> int:
    print(f"llmtwin bandwidth: error: {message}", file=sys.stderr)
    return status


def _run(args: argparse.Namespace) -> int:
    from shared.bandwidth.baselines import Baseline, BaselineError, load_baselines
    from shared.bandwidth.issues import IssueLog
    from shared.bandwidth.plot import PlotUnavailable, WireSeries, render_png, require_matplotlib
    from shared.bandwidth.reader import FileStats, LogReader, expand_logs
    from shared.bandwidth.records import MessageRecord
    from shared.bandwidth.render import render_json, render_text
    from shared.bandwidth.summary import Summary

    if args.follow and args.plot:
        return _fail("--plot cannot be combined with --follow", 2)
    if args.baselines and not args.plot:
        return _fail("--baselines is only used with --plot", 2)
    baselines: list[Baseline] = []
    if args.plot:
        try:
            require_matplotlib()
            baselines = load_baselines(args.baselines) if args.baselines else []
        except (PlotUnavailable, BaselineError) as exc:
            return _fail(str(exc), 2)

    issues = IssueLog()
    summary = Summary(by=tuple(args.by), window_s=args.window, since=args.since)
    series = WireSeries() if args.plot else None
    files: list[FileStats]
    if args.follow:
        from shared.bandwidth.follow import follow

        def emit(line: str) -> None:
            print(line, flush=True)

        files = follow(args.logs, summary, issues, emit=emit, interval_s=args.interval, as_json=args.json)
    else:
        reader = LogReader(issues)
        for rec in reader.read(expand_logs(args.logs, issues)):
            if summary.add(rec) and series is not None and isinstance(rec, MessageRecord):
                series.add(rec)
        files = reader.files
    if not files:
        for issue in issues.issues:
            print(f"llmtwin bandwidth: {issue}", file=sys.stderr)
        return _fail("no log file could be read", 1)
    if args.json:
        indent = None if args.follow else 2
        print(json.dumps(render_json(summary, files, issues), indent=indent))
    else:
        print(render_text(summary, files, issues), end="")
    if series is not None:
        try:
            render_png(series, baselines, args.plot)
        except OSError as exc:
            return _fail(f"cannot write {args.plot}: {exc.strerror or exc}", 1)
        if not args.json:
            print(f"plot: {args.plot} ({len(series):,d} messages)")
    return 0
