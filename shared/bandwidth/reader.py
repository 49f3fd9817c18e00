"""Reading bandwidth logs: rotated sets oldest first, line by line, bad lines reported and skipped.

A LOG argument is the base path of a rotated set: ``path`` is the current file and ``path.1``,
``path.2`` … are older the higher the number (``logging.handlers.RotatingFileHandler``), so a set
is read as ``path.N`` … ``path.1``, ``path``. A gap in the numbers, or a set whose current file is
gone, is reported as a ``missing`` issue. The same file named twice (directly or through a set) is
read once. Lines longer than :data:`MAX_LINE_BYTES` are skipped without being held in memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from shared.bandwidth.issues import IssueLog
from shared.bandwidth.records import NewerSchemaError, Record, RecordError, parse_record

MAX_LINE_BYTES = 1 << 20


@dataclass(slots=True)
class FileStats:
    """What was read from one file."""

    path: str
    lines: int = 0
    records: int = 0
    skipped: int = 0

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "lines": self.lines, "records": self.records, "skipped": self.skipped}


@dataclass(frozen=True, slots=True)
class RawLine:
    number: int
    data: bytes
    complete: bool  # ended with a newline (False: the last line of the file, cut short or not)
    too_long: bool = False


def rotated_siblings(base: Path) -> dict[int, Path]:
    """``{N: base.N}`` for the rotated files of ``base`` that exist now."""
    prefix = base.name + "."
    found: dict[int, Path] = {}
    try:
        names = os.listdir(base.parent)
    except OSError:
        return found
    for name in names:
        suffix = name[len(prefix) :]
        if name.startswith(prefix) and suffix.isdigit() and suffix == str(int(suffix)) and int(suffix) > 0:
            found[int(suffix)] = base.parent / name
    return found


def rotated_set(base: Path, issues: IssueLog, *, current_required: bool = True) -> list[Path]:
    """The files of the set whose current file is ``base``, oldest first; gaps (and a missing
    current file, when ``current_required``) become issues."""
    siblings = rotated_siblings(base)
    oldest = max(siblings, default=0)
    for n in range(1, oldest):
        if n not in siblings:
            issues.add(
                f"{base}.{n}", None, "missing", f"missing from the rotated set ({base}.1 … {base}.{oldest} expected)"
            )
    paths = [siblings[n] for n in sorted(siblings, reverse=True)]
    if base.exists() or base.is_symlink():
        paths.append(base)
    elif not current_required:
        pass
    elif siblings:
        issues.add(str(base), None, "missing", f"current file missing (its rotated files {base}.N are present)")
    else:
        issues.add(str(base), None, "missing", "no such file (nor rotated files)")
    return paths


def expand_logs(logs: Sequence[Path], issues: IssueLog) -> list[Path]:
    """Every file of every rotated set, each set oldest first, each file once."""
    seen: set[Path] = set()
    out: list[Path] = []
    for base in logs:
        for path in rotated_set(base, issues):
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                out.append(path)
    return out


def iter_lines(fh: BinaryIO, *, first_number: int = 1) -> Iterator[RawLine]:
    """Lines of a binary file, numbered; an over-long line is consumed and yielded as ``too_long``."""
    number = first_number - 1
    while True:
        chunk = fh.readline(MAX_LINE_BYTES)
        if not chunk:
            return
        number += 1
        if chunk.endswith(b"\n"):
            yield RawLine(number, chunk, True)
        elif len(chunk) < MAX_LINE_BYTES:
            yield RawLine(number, chunk, False)
            return
        else:
            while (more := fh.readline(MAX_LINE_BYTES)) and not more.endswith(b"\n"):
                pass
            yield RawLine(number, b"", bool(more), too_long=True)


def decode_line(line: RawLine, file: str, issues: IssueLog) -> Record | None:
    """One line → a record, or None (blank, or an issue recorded for ``file:line``)."""
    if line.too_long:
        issues.add(file, line.number, "corrupt", f"line longer than {MAX_LINE_BYTES:,d} bytes: skipped")
        return None
    stripped = line.data.strip()
    if not stripped:
        return None
    try:
        obj = json.loads(stripped.decode("utf-8"))
    except UnicodeDecodeError as exc:
        issues.add(file, line.number, "corrupt", f"not UTF-8 (byte {exc.start + 1})")
        return None
    except json.JSONDecodeError as exc:
        if line.complete:
            issues.add(file, line.number, "corrupt", f"not valid JSON ({exc.msg} at column {exc.colno})")
        else:
            issues.add(file, line.number, "truncated", "truncated line (no newline at end of file, incomplete JSON)")
        return None
    except RecursionError:
        issues.add(file, line.number, "corrupt", "JSON nested too deeply")
        return None
    try:
        return parse_record(obj)
    except NewerSchemaError as exc:
        issues.add(file, line.number, "newer_schema", str(exc))
    except RecordError as exc:
        issues.add(file, line.number, "invalid", f"not a version-1 record: {exc}")
    return None


class LogReader:
    """Reads files into records; keeps per-file counts and records every issue in ``issues``."""

    def __init__(self, issues: IssueLog) -> None:
        self.issues = issues
        self.files: list[FileStats] = []

    def read(self, paths: Iterable[Path]) -> Iterator[Record]:
        for path in paths:
            yield from self.read_file(path)

    def read_file(self, path: Path) -> Iterator[Record]:
        name = str(path)
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            self.issues.add(name, None, "missing", "no such file")
            return
        except OSError as exc:
            self.issues.add(name, None, "unreadable", f"cannot open: {exc.strerror or exc}")
            return
        stats = FileStats(name)
        self.files.append(stats)
        with fh:
            lines = iter_lines(fh)
            while True:
                try:
                    line = next(lines, None)
                except OSError as exc:
                    self.issues.add(name, stats.lines + 1, "unreadable", f"read failed: {exc.strerror or exc}")
                    return
                if line is None:
                    return
                stats.lines = line.number
                record = decode_line(line, name, self.issues)
                if record is None:
                    stats.skipped += bool(line.data.strip()) or line.too_long
                    continue
                stats.records += 1
                yield record
