"""``--follow``: tail rotated sets live, one running-summary line per batch of new records.

Every ``interval_s`` (a CLI tail, so polling is fine) each set is listed: ``path.N`` … ``path.1``,
``path``, and every file is known by its identity (device, inode), not its name, because rotation
renames files under the reader. A file seen for the first time is opened and read (whole when it
is already a rotated file); the current file is read up to its last complete line (a partial line
waits for its newline); a file that was current and now has a rotated name is read to its end,
since the writer closed it before renaming it. Files are handled oldest first and a poll stops at
the first file that changed under it, so a log that rotated several times between two polls is
still read once, in order, with nothing lost or counted twice.

Files already read stay open until they are deleted (``st_nlink == 0``): an open file keeps its
inode, so a new file can never reuse the identity of one already read, and a current file that was
rotated past the last backup can still be read to its end. A file truncated in place is read again
from its start (reported). Listing a directory while it is renamed is not atomic, so a listing is
used only once two in a row agree.

The first poll reads what the set holds already. The loop ends when ``stop`` is set, after
``max_polls`` polls, or on Ctrl-C (KeyboardInterrupt), always cleanly.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from shared.bandwidth.issues import IssueLog
from shared.bandwidth.reader import MAX_LINE_BYTES, FileStats, RawLine, decode_line, rotated_set, rotated_siblings
from shared.bandwidth.records import MessageRecord, Record
from shared.bandwidth.summary import Summary

CHUNK_BYTES = 1 << 20
SCAN_ATTEMPTS = 20
FileId = tuple[int, int]


def _file_id(st: os.stat_result) -> FileId:
    return (st.st_dev, st.st_ino)


@dataclass(slots=True)
class _Held:
    """One file of the set, open, read up to ``fh.tell()`` minus the partial line in ``buf``."""

    fh: BinaryIO
    buf: bytes = b""
    line: int = 0
    skipping: bool = False  # inside a line longer than MAX_LINE_BYTES
    done: bool = False  # rotated and read to its end


class Tailer:
    """One rotated set, followed across rotations."""

    def __init__(self, base: Path, issues: IssueLog) -> None:
        self.base = base
        self.issues = issues
        self.stats = FileStats(f"{base} (followed)")
        self._held: dict[FileId, _Held] = {}
        self._started = False
        self.opened_once = False

    def close(self) -> None:
        for held in self._held.values():
            held.fh.close()
        self._held.clear()

    def poll(self) -> list[Record]:
        """The records written since the last poll, oldest first."""
        if not self._started:
            self._started = True
            rotated_set(self.base, self.issues, current_required=False)  # report gaps once
        out: list[Record] = []
        for gone in self._held.values():
            if not gone.done and os.fstat(gone.fh.fileno()).st_nlink == 0:
                self.issues.add(
                    str(self.base),
                    None,
                    "rotation",
                    "the followed file was deleted before it was seen rotated (rotated past the last backup?): "
                    "read to its end, but files rotated away unseen in between are missing",
                )
                out += self._read(gone, str(self.base), final=True)
                gone.done = True
        listing = self._stable_listing()
        if listing is None:
            return out  # renamed under us at every try: again at the next poll
        for path, fid in listing:
            current = path == str(self.base)
            held = self._held.get(fid)
            if held is None:
                held = self._open(path, fid)
                if held is None:
                    break  # it changed since the listing; the files after it are newer: next poll
            elif held.done:
                continue
            out += self._read(held, path, final=not current)
            held.done = not current
        for fid, held in list(self._held.items()):
            st = os.fstat(held.fh.fileno())
            if held.done and st.st_nlink == 0:  # deleted: its identity may be reused now
                held.fh.close()
                del self._held[fid]
            elif not held.done and st.st_size < held.fh.tell():
                self.issues.add(
                    str(self.base),
                    None,
                    "rotation",
                    f"truncated in place while followed ({held.fh.tell():,d} → {st.st_size:,d} bytes): read again",
                )
                held.fh.seek(0)
                held.buf, held.line, held.skipping = b"", 0, False
                out += self._read(held, str(self.base), final=False)
        return out

    def _listing_once(self) -> list[tuple[str, FileId]] | None:
        siblings = rotated_siblings(self.base)
        paths = [siblings[n] for n in sorted(siblings, reverse=True)] + [self.base]
        out: list[tuple[str, FileId]] = []
        for path in paths:
            try:
                out.append((str(path), _file_id(os.stat(path))))
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.issues.add(str(path), None, "unreadable", f"cannot stat: {exc.strerror or exc}")
                return None
        if len({fid for _, fid in out}) != len(out):
            return None  # one file under two names: caught mid-rename
        return out

    def _stable_listing(self) -> list[tuple[str, FileId]] | None:
        previous = None
        for _ in range(SCAN_ATTEMPTS):
            listing = self._listing_once()
            if listing is not None and listing == previous:
                return listing
            previous = listing
        return None

    def _open(self, path: str, fid: FileId) -> _Held | None:
        try:
            fh = open(path, "rb", buffering=0)  # noqa: SIM115 (held open across polls)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.issues.add(path, None, "unreadable", f"cannot open: {exc.strerror or exc}")
            return None
        if _file_id(os.fstat(fh.fileno())) != fid:
            fh.close()
            return None
        held = _Held(fh)
        self._held[fid] = held
        self.opened_once = True
        return held

    def _read(self, held: _Held, name: str, *, final: bool) -> list[Record]:
        out: list[Record] = []
        while chunk := held.fh.read(CHUNK_BYTES):
            *lines, held.buf = (held.buf + chunk).split(b"\n")
            for raw in lines:
                held.line += 1
                if held.skipping:
                    held.skipping = False
                    self._take(RawLine(held.line, b"", True, too_long=True), name, out)
                else:
                    self._take(RawLine(held.line, raw + b"\n", True), name, out)
            if len(held.buf) > MAX_LINE_BYTES:
                held.buf, held.skipping = b"", True
        if final and (held.buf or held.skipping):
            held.line += 1
            self._take(RawLine(held.line, held.buf, False, too_long=held.skipping), name, out)
            held.buf, held.skipping = b"", False
        return out

    def _take(self, line: RawLine, name: str, out: list[Record]) -> None:
        self.stats.lines += 1
        record = decode_line(line, name, self.issues)
        if record is not None:
            self.stats.records += 1
            out.append(record)
        elif line.too_long or line.data.strip():
            self.stats.skipped += 1


def running_line(summary: Summary, batch: Sequence[Record], issues: IssueLog, *, now: float) -> str:
    """``HH:MM:SS  +N msgs +B B (state 3, query 1)  total M msgs, F B on the wire (in I / out O)``."""
    messages = [r for r in batch if isinstance(r, MessageRecord)]
    kinds = Counter(r.type for r in messages)
    listing = ", ".join(f"{k} {n:,d}" for k, n in kinds.most_common(4))
    if len(kinds) > 4:
        listing += ", …"
    frame_in, frame_out = summary.frame_by_dir()
    text = (
        f"{time.strftime('%H:%M:%S', time.gmtime(now))}  +{len(messages):,d} msgs "
        f"+{sum(r.frame for r in messages):,d} B"
    )
    if listing:
        text += f" ({listing})"
    kernel = len(batch) - len(messages)
    if kernel:
        text += f" +{kernel:,d} kernel samples"
    text += (
        f"  total {summary.messages:,d} msgs, {summary.total.frame:,d} B on the wire "
        f"(in {frame_in:,d} / out {frame_out:,d})"
    )
    if issues.total:
        text += f"  issues {issues.total:,d}"
    return text


def running_json(summary: Summary, batch: Sequence[Record], issues: IssueLog, *, now: float) -> str:
    messages = [r for r in batch if isinstance(r, MessageRecord)]
    frame_in, frame_out = summary.frame_by_dir()
    return json.dumps(
        {
            "event": "batch",
            "ts": round(now, 3),
            "batch_messages": len(messages),
            "batch_frame": sum(r.frame for r in messages),
            "batch_types": dict(Counter(r.type for r in messages)),
            "batch_kernel_samples": len(batch) - len(messages),
            "messages": summary.messages,
            "total": summary.total.to_json(),
            "frame_in": frame_in,
            "frame_out": frame_out,
            "issues_total": issues.total,
        },
        separators=(",", ":"),
    )


def follow(
    logs: Sequence[Path],
    summary: Summary,
    issues: IssueLog,
    *,
    emit: Callable[[str], None],
    interval_s: float = 0.5,
    stop: threading.Event | None = None,
    max_polls: int | None = None,
    as_json: bool = False,
) -> list[FileStats]:
    """Follow ``logs`` until stopped, feeding ``summary``; returns what was read from which file
    (empty when no file could be read)."""
    stop = stop or threading.Event()
    line = running_json if as_json else running_line
    tailers: list[Tailer] = []
    seen: set[Path] = set()
    for base in logs:
        if base.resolve() not in seen:
            seen.add(base.resolve())
            tailers.append(Tailer(base, issues))
    shown = 0

    def report(batch: Sequence[Record]) -> None:
        nonlocal shown
        if not as_json:
            for issue in issues.issues[shown:]:
                emit(f"  issue: {issue}")
        shown = len(issues.issues)
        emit(line(summary, batch, issues, now=time.time()))

    try:
        start: list[Record] = []
        for tailer in tailers:
            start += tailer.poll()
            if not tailer.opened_once:
                emit(f"  waiting for {tailer.base} to appear")
        for rec in start:
            summary.add(rec)
        report(start)
        polls = 0
        while not stop.is_set() and (max_polls is None or polls < max_polls):
            if stop.wait(interval_s):
                break
            polls += 1
            batch: list[Record] = []
            for tailer in tailers:
                batch += tailer.poll()
            for rec in batch:
                summary.add(rec)
            if batch or len(issues.issues) > shown:
                report(batch)
    except KeyboardInterrupt:
        pass
    finally:
        for tailer in tailers:
            tailer.close()
    return [t.stats for t in tailers if t.opened_once]
