"""Staging directories: write a result beside its final place, publish it by one rename.

A staging directory is named ``<prefix><pid>-<hex>`` so that one left behind by a killed process can be
recognised (its pid is gone) and removed by the next run. Used by model preparation
(edge.model.prepare) and fine-tuning rounds (edge.finetune.versions); each publishes its own way.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def staging(root: Path, prefix: str) -> Iterator[Path]:
    """A fresh ``root/<prefix><pid>-<hex>`` directory, removed on any exit (after a publish it is gone)."""
    root.mkdir(parents=True, exist_ok=True)
    stage = root / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
    stage.mkdir()
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def adopt(stage: Path) -> Iterator[Path]:
    """An existing staging directory, removed on any exit: a process that exec'd into this one made it
    (same pid, so it is not mistaken for a dead one's)."""
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def remove_dead_staging(root: Path, prefix: str) -> None:
    """Staging directories under ``root`` whose process is gone (killed mid-way) are removed."""
    if not root.is_dir():
        return
    for stage in root.glob(f"{prefix}*-*"):
        pid = stage.name.removeprefix(prefix).split("-")[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(stage, ignore_errors=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
