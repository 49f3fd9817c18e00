"""A twin's adapter versions on disk: ``<out_dir>/v<N>/`` directories, published by one rename.

A round writes only into a staging directory ``<out_dir>/.round-<pid>-<hex>`` (same filesystem, so the
publish is an atomic ``os.rename``); the directory is removed on any exit, and one left behind by a
killed process is removed by the next round. After a publish the newest ``keep`` versions stay, and
the version in service is never deleted (the gateway may still be serving it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from edge.staging import adopt
from edge.staging import remove_dead_staging as remove_dead
from edge.staging import staging as shared_staging

__all__ = ["adopt", "own_staging", "prune", "publish", "remove_dead_staging", "staging", "versions"]

_STAGING = ".round-"


def staging(out_dir: Path) -> contextlib.AbstractContextManager[Path]:
    return shared_staging(out_dir, _STAGING)


def own_staging(stage: Path) -> bool:
    """Whether ``stage`` is a staging directory of this process (or of the one it was exec'd from)."""
    return stage.name.startswith(f"{_STAGING}{os.getpid()}-") and stage.is_dir()


def remove_dead_staging(out_dir: Path) -> None:
    """Staging directories whose process is gone (killed mid-round) are removed."""
    remove_dead(out_dir, _STAGING)


def publish(stage: Path, final: Path) -> None:
    """The staging directory becomes ``final`` in one atomic rename (never over an existing version)."""
    if final.exists():
        raise FileExistsError(f"{final} already exists: versions are never overwritten")
    os.rename(stage, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def versions(out_dir: Path) -> list[tuple[int, Path]]:
    """Published version directories, oldest first."""
    found = []
    for child in out_dir.glob("v*"):
        number = child.name[1:]
        if child.is_dir() and number.isdigit():
            found.append((int(number), child))
    return sorted(found)


def prune(out_dir: Path, keep: int, in_service: str | None) -> None:
    """Delete all but the newest ``keep`` versions; never the one in service."""
    protected = Path(in_service).resolve().parent if in_service else None
    for _number, path in versions(out_dir)[:-keep]:
        if path.resolve() != protected:
            shutil.rmtree(path, ignore_errors=True)
