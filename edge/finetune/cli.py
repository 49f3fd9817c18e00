"""``python -m edge.finetune.round --request REQ.json``: run one round, write its result as JSON.

The daemon starts this as a child process (``--niceness``; the daemon watches its memory, see
edge.finetune.child). Progress goes to stdout as JSON lines (``--progress jsonl``: the daemon's
STATUS) or to stderr as a one-line bar
(``--progress bar``, the default on a terminal). The result JSON (``RoundResult``) is written
atomically to ``--result`` (default: ``<request>.result.json`` beside the request).

After training, the process exec(2)s ``python -m edge.finetune.round --finish <staging dir> --result ...``
in its place (same pid, stdout, stderr: see edge.finetune.handoff), which scores, gates and exports
without PyTorch's memory. ``--same-process`` and ``main(..., exec_eval=False)`` (in-process callers)
keep it all in one process.

Exit status: 0 accepted, rejected or skipped; 1 failed (the result says why, also for an unexpected
error); 2 unusable request; 143 on SIGTERM (no result; the staging directory is removed on the way out).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from edge.finetune.child import set_niceness
from edge.finetune.finish import finish_round
from edge.finetune.round import ExecFinish, ProgressFn, RoundProgress, RoundRequest, RoundResult, run_round
from shared.files import atomic_write_bytes
from shared.typed import FieldError

_BAR_WIDTH = 24


def main(argv: list[str] | None = None, *, exec_eval: bool = False) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.finetune.round", description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--request", type=Path, help="round request JSON (RoundRequest fields)")
    what.add_argument("--finish", type=Path, metavar="STAGE", help="(internal) the round handed over in STAGE")
    parser.add_argument("--result", type=Path, help="where to write the result JSON")
    parser.add_argument("--progress", choices=("auto", "bar", "jsonl", "none"), default="auto")
    parser.add_argument("--niceness", type=int, default=0, help="run at this niceness (0-19; never lowered)")
    parser.add_argument(
        "--same-process",
        action="store_true",
        help="score in the training process too (no exec): both phases' memory in one process, for comparison",
    )
    args = parser.parse_args(argv)
    if args.niceness:
        set_niceness(min(19, max(0, args.niceness)))
    if args.finish is not None and args.result is None:
        parser.error("--finish needs --result")
    result_path: Path = args.result or args.request.with_name(args.request.stem + ".result.json")
    # SIGTERM (the daemon stopping) unwinds like an exception, so the staging directory is removed
    signal.signal(signal.SIGTERM, _terminate)
    if args.finish is not None:
        return _done(args.progress, result_path, _finish(args.finish, args.progress))
    try:
        request = RoundRequest.from_json(args.request.read_text(encoding="utf-8"))
    except (OSError, ValueError, FieldError) as exc:
        print(f"{args.request}: unusable round request: {exc}", file=sys.stderr)
        _write(result_path, RoundResult("failed", f"unusable round request: {exc}", "", 0))
        return 2
    exec_finish = _exec_finish(result_path, args.progress) if exec_eval and not args.same_process else None
    try:
        result = run_round(request, _progress(args.progress), exec_finish)
    except Exception as exc:  # a bug, not a round outcome: still leave a result for the daemon
        traceback.print_exc()
        result = RoundResult("failed", f"internal error: {type(exc).__name__}: {exc}", request.twin_id, request.version)
    return _done(args.progress, result_path, result)


def _finish(stage: Path, progress: str) -> RoundResult:
    lead = "\n" if _shows_bar(progress) else ""  # below the bar's line
    print(f"{lead}{stage.name}: trained; scoring in a fresh process (PyTorch's memory is gone)", file=sys.stderr)
    try:
        return finish_round(stage, _progress(progress))
    except Exception as exc:
        traceback.print_exc()
        return RoundResult("failed", f"internal error: {type(exc).__name__}: {exc}", "", 0)


def _exec_finish(result_path: Path, progress: str) -> ExecFinish:
    """Replace this process with ``--finish <stage>`` (interpreter flags are not carried: the daemon and
    the benchmarks start rounds with none; the environment is)."""

    def go(stage: Path) -> None:
        argv = [sys.executable, "-m", "edge.finetune.round", "--finish", str(stage), "--result", str(result_path)]
        sys.stdout.flush()
        sys.stderr.flush()
        # held across the exec (the mask and a pending signal survive it) until the new image owns the
        # staging directory and has its handler (edge.finetune.finish.finish_round). Only this thread's
        # mask: a SIGTERM taken by another thread (PyTorch's) in the instant before the exec is lost,
        # and the daemon's SIGKILL after TERM_GRACE_S ends the round instead.
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            os.execv(sys.executable, [*argv, "--progress", progress])
        except OSError as exc:  # the round goes on in this process
            print(f"could not exec the round's eval in a fresh process ({exc}); continuing here", file=sys.stderr)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)

    return go


def _done(progress: str, result_path: Path, result: RoundResult) -> int:
    if _shows_bar(progress):
        print(file=sys.stderr)
    _write(result_path, result)
    print(f"round {result.status}: {result.reason}", file=sys.stderr)
    return 1 if result.status == "failed" else 0


def _shows_bar(mode: str) -> bool:
    """Whether ``mode`` draws the one-line bar on stderr (a line others must start below)."""
    return mode == "bar" or (mode == "auto" and sys.stderr.isatty())


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _progress(mode: str) -> ProgressFn | None:
    if mode == "jsonl":
        return lambda p: _jsonl(p, sys.stdout)
    if _shows_bar(mode):
        return lambda p: _bar(p, sys.stderr)
    return None


def _jsonl(p: RoundProgress, out: TextIO) -> None:
    out.write(json.dumps(asdict(p)) + "\n")
    out.flush()


def _bar(p: RoundProgress, out: TextIO) -> None:
    done = int(_BAR_WIDTH * p.step / p.total) if p.total else 0
    loss = f" loss {p.loss:.4f}" if p.loss is not None else ""
    line = f"\r{p.phase:<9} [{'#' * done}{'.' * (_BAR_WIDTH - done)}] {p.step}/{p.total}{loss} {p.elapsed_s:6.1f}s"
    out.write(line)
    out.flush()


def _write(path: Path, result: RoundResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, result.to_json().encode())
