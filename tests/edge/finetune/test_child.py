"""``edge.finetune.child``: the daemon's side of a round's process. These children stand in for the round's
Python (``ChildSettings.python``) at its boundary: they speak the same progress lines and use real memory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from edge.finetune.child import ChildRound, ChildSettings
from edge.finetune.request import RoundProgress

_GROW = """
import json, os, signal, sys
open(sys.argv[1], "w").write(str(os.getpid()))
print(json.dumps({"phase": "eval", "step": 0, "total": 10, "loss": None, "elapsed_s": 1.0}), flush=True)
block = bytearray(300 << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
signal.pause()  # the process under test: held resident until it is terminated
"""


def child_python(tmp_path: Path, body: str) -> str:
    """An executable that ignores the round's arguments and runs ``body`` instead."""
    script = tmp_path / "child.py"
    script.write_text(body)
    launcher = tmp_path / "python"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} {script} {tmp_path / 'pid'}\n")
    launcher.chmod(0o755)
    return str(launcher)


def child_round(tmp_path: Path, python: str, cap_mb: int, seen: list[RoundProgress]) -> ChildRound:
    files = (tmp_path / "req.json", tmp_path / "res.json", tmp_path / "round.log")
    return ChildRound(*files, ChildSettings(10, cap_mb, python), seen.append)


async def test_a_memory_cap_kill_names_the_phase_the_round_was_in(tmp_path: Path) -> None:
    seen: list[RoundProgress] = []
    child = child_round(tmp_path, child_python(tmp_path, _GROW), 200, seen)
    result = await child.run()
    assert result.status == "failed"
    assert result.reason.startswith("memory cap hit: resident") and result.reason.endswith("(during eval)")
    assert [p.phase for p in seen] == ["eval"] and child.peak_rss_mb > 200


async def test_an_error_in_the_progress_callback_terminates_the_child(tmp_path: Path) -> None:
    def broken(progress: RoundProgress) -> None:
        raise ValueError(f"cannot show {progress.phase}")

    files = (tmp_path / "req.json", tmp_path / "res.json", tmp_path / "round.log")
    child = ChildRound(*files, ChildSettings(10, 4096, child_python(tmp_path, _GROW)), broken)
    with pytest.raises(ExceptionGroup) as caught:
        await child.run()
    assert caught.group_contains(ValueError, match="cannot show eval")
    with pytest.raises(ProcessLookupError):  # terminated and reaped, not left running
        os.kill(int((tmp_path / "pid").read_text()), 0)
