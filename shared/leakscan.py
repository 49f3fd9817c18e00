"""Leak scan: search bytes, files, folders and payload captures for sensitive values.

A *needle* is one sensitive value (a door code, the owner's name, the presence schedule) with the
byte forms it could take where it must never be:

- UTF-8, matched case-insensitively (covers lower/upper-cased copies and a msgpack str, whose bytes
  are the UTF-8 bytes after a 1-5 byte length prefix);
- UTF-16-LE (SQLite text in a UTF-16 database, Windows tools);
- JSON-escaped, when that differs from the plain text (quotes, backslashes, non-ASCII);
- each ``;``-separated clause of at least :data:`MIN_CLAUSE` characters on its own (the presence
  schedule could leak one clause at a time: "weekdays away 08:25-16:35").

Short and numeric values would hit by chance inside longer numbers (a 6-digit PIN inside a
millisecond timestamp), so a value that is all digits, or shorter than :data:`TOKEN_BELOW`
characters, only matches as a whole token: the bytes on either side must not be letters or digits,
nor a ``.``/``,`` that continues a number. Values shorter than :data:`MIN_VALUE` characters cannot
be scanned meaningfully and are refused (:class:`ValueError`). Binary data (SQLite pages, adapter
floats) is scanned as it lies on disk, freed pages included: a deleted copy is still a leak.

A :class:`Hit` names the needle's label, the form, the place and the byte offset, never the value, so
a report about leaks does not leak.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.capture import read_capture
from shared.protocol import BY_TAG, type_name

MIN_VALUE = 4
TOKEN_BELOW = 8
MIN_CLAUSE = 16
_WORD = re.compile(rb"[A-Za-z0-9]")


@dataclass(frozen=True, slots=True)
class Needle:
    label: str  # e.g. "home1 door_code" (reports show this, never the value)
    forms: tuple[tuple[str, bytes], ...]  # (form name, lower-cased bytes to find)
    token: bool  # whole-token matching only


@dataclass(frozen=True, slots=True)
class Hit:
    label: str
    form: str
    where: str
    offset: int


def needles(values: Mapping[str, str]) -> list[Needle]:
    """One needle per ``label → value``."""
    out = []
    for label, value in sorted(values.items()):
        text = value.strip()
        if len(text) < MIN_VALUE:
            raise ValueError(f"{label}: a value under {MIN_VALUE} characters cannot be scanned for")
        out.append(Needle(label, _forms(text), token=text.isdigit() or len(text) < TOKEN_BELOW))
    return out


def _forms(text: str) -> tuple[tuple[str, bytes], ...]:
    lower = text.lower()
    forms: dict[bytes, str] = {lower.encode(): "utf-8", lower.encode("utf-16-le"): "utf-16-le"}
    escaped = json.dumps(lower)[1:-1].encode()
    forms.setdefault(escaped, "json")
    if ";" in text:
        for clause in lower.split(";"):
            if len(clause.strip()) >= MIN_CLAUSE:
                forms.setdefault(clause.strip().encode(), "clause")
    return tuple((name, pattern) for pattern, name in forms.items())


def scan_bytes(data: bytes, targets: Iterable[Needle], where: str) -> list[Hit]:
    hay = data.lower()
    hits = []
    for needle in targets:
        for form, pattern in needle.forms:
            start = hay.find(pattern)
            while start >= 0:
                if not needle.token or _whole_token(data, start, len(pattern)):
                    hits.append(Hit(needle.label, form, where, start))
                start = hay.find(pattern, start + 1)
    return hits


def _whole_token(data: bytes, start: int, length: int) -> bool:
    before = data[max(0, start - 2) : start]
    after = data[start + length : start + length + 2]
    if before[-1:] and _WORD.match(before[-1:]):
        return False
    if after[:1] and _WORD.match(after[:1]):
        return False
    if len(before) == 2 and re.fullmatch(rb"[0-9][.,]", before):
        return False  # the fraction of a number (a timestamp's ".195119")
    return not (len(after) == 2 and re.fullmatch(rb"[.,][0-9]", after))


def files(root: Path) -> Iterator[Path]:
    """``root`` itself if it is a file, else every regular file under it (sorted, links not followed)."""
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


def scan_path(root: Path, targets: list[Needle], *, relative_to: Path | None = None) -> tuple[int, list[Hit]]:
    """(files scanned, hits) for a file or a folder."""
    n, hits = 0, []
    for path in files(root):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        n += 1
        name = str(path.relative_to(relative_to)) if relative_to and path.is_relative_to(relative_to) else str(path)
        hits.extend(scan_bytes(data, targets, name))
    return n, hits


def scan_capture(path: Path, targets: list[Needle]) -> tuple[int, list[Hit]]:
    """(payloads scanned, hits) of a payload capture file (shared.capture): each message on its own."""
    n, hits = 0, []
    for record in read_capture(path):
        n += 1
        kind = type_name(BY_TAG[record.tag]) if record.tag in BY_TAG else f"tag {record.tag}"
        where = f"{path.name}@{record.offset} {kind} rid {record.rid.hex()[:8]}"
        hits.extend(scan_bytes(record.body, targets, where))
    return n, hits
