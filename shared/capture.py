"""Opt-in payload capture: every application message a client sends, as plain msgpack, before lz4 and
before CURVE encrypts it, appended to a file (edge profile ``[log] payload_capture = "FILE"``).

It exists for audits such as the leak scan (``python -m benchmarks.chaos.leaks``): what left the device
is exactly what is in this file, so scanning it for the owner's secrets proves they never left. It
holds what the wire carries, adapter chunks included, so keep it off in production.

File format: the line ``LTWCAP1`` (8 bytes with its newline), then one record per message: a 4-byte
big-endian length N, then N bytes: the command byte, the 16-byte rid and the msgpack body
(:func:`shared.protocol.pack_body`). Each record is flushed as written, so a kill -9 loses at most the
message being sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from shared.errors import TwinError
from shared.protocol import Message, pack_body

MAGIC = b"LTWCAP1\n"
_LEN = 4
_RID = 16


@dataclass(frozen=True, slots=True)
class Captured:
    offset: int  # where the record starts in the file
    tag: int  # the command byte (shared.protocol.messages BY_TAG)
    rid: bytes
    body: bytes


class PayloadCapture:
    """Appends to ``path`` (created with its folder); use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.records = 0
        self._fh: BinaryIO | None = open(path, "ab")  # noqa: SIM115 - held for the client's life
        if self._fh.tell() == 0:
            self._fh.write(MAGIC)
            self._fh.flush()
        else:  # a kill mid-record left a cut tail: drop it, or every record appended after it is unreadable
            self._fh.truncate(_complete_length(path))

    def append(self, message: Message, rid: bytes) -> None:
        if self._fh is None:
            return
        record = bytes([message.TAG]) + rid + pack_body(message)
        self._fh.write(len(record).to_bytes(_LEN, "big") + record)
        self._fh.flush()
        self.records += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> PayloadCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _complete_length(path: Path) -> int:
    """Bytes of ``path`` up to the end of its last complete record."""
    end = len(MAGIC)
    for record in read_capture(path):
        end = record.offset + _LEN + 1 + _RID + len(record.body)
    return end


def read_capture(path: Path) -> Iterator[Captured]:
    """The records of a capture file; a record cut short by a kill at the end is ignored."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise TwinError(f"{path}: not a payload capture file (no {MAGIC[:-1].decode()} header)")
    pos = len(MAGIC)
    while pos + _LEN <= len(data):
        n = int.from_bytes(data[pos : pos + _LEN], "big")
        start = pos + _LEN
        if n < 1 + _RID or start + n > len(data):
            return
        yield Captured(pos, data[start], data[start + 1 : start + 1 + _RID], data[start + 1 + _RID : start + n])
        pos = start + n
