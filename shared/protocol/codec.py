"""Frames ⇄ typed messages, with every limit enforced before input-sized allocation.

A message is ONE ZeroMQ frame (the ROUTER's routing-id frame is handled by the transport) holding
three parts::

    signature  b"LTW" + major (b"1") + command tag (1 byte)            5 bytes
    hlen       length of the header, big-endian                          2 bytes
    header     msgpack map {rid, minor, codec, ulen, ...}                hlen ≤ max_header_bytes
    body       msgpack map of the message struct, or lz4-frame(msgpack) when codec = 1; the rest

One frame rather than one per part because CURVE adds 33 bytes (and ZMTP 2-9) to *every* frame:
for a 50-byte state prompt, three frames cost more than the prompt itself (measured: -138 bytes
per request/reply pair, a third of a small state sync's wire bytes).

Decoding checks, in this order, and stops at the first failure:

1. frame count (exactly 1)                          FrameCountError 400
2. signature, major version, command for this side  BadSignature, UnsupportedVersion, UnknownCommand 415
3. header size, then strict msgpack + header schema TooLarge 413, HeaderError 400
4. body size                                        TooLarge 413
5. codec; declared uncompressed size and ratio      UnsupportedCodec 415, TooLarge 413, CompressionBomb 422
6. bounded lz4 decompression to exactly that size   DecompressError, SizeMismatch 422
7. body schema (strict msgpack: no ext types, no    SchemaError 400
   unknown fields, finite floats, int ranges)
8. semantic limits of the message                   SemanticError 400, TooLarge 413

Errors raised after step 3 carry the request's ``rid`` so the gateway can answer with an ERROR
reply; earlier failures have no trustworthy rid and are dropped and counted. No error message
contains input bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import lz4.frame
import msgpack

from shared.errors import (
    BadSignature,
    CompressionBomb,
    DecompressError,
    FrameCountError,
    HeaderError,
    SchemaError,
    SizeMismatch,
    TooLarge,
    UnknownCommand,
    UnsupportedCodec,
    UnsupportedVersion,
    WireError,
)
from shared.protocol.limits import DEFAULT_LIMITS, Limits
from shared.protocol.messages import BY_TAG, REPLIES, REQUESTS, U32, U63, Message, Rid
from shared.protocol.results import RESULT_FOR
from shared.typed import FieldError, Range, from_plain, to_plain

SIGNATURE = b"LTW"
MAJOR = b"1"
MINOR = 0
CODEC_RAW = 0
CODEC_LZ4 = 1
N_FRAMES = 1
SIG_BYTES = 5
HLEN_BYTES = 2
# Compression must save at least this much to be used (lz4 frame overhead is ~15 B).
_MIN_SAVING = 32
# Compressed input is fed to the decompressor in pieces of this size (bounds its input buffer).
_LZ4_FEED = 64 * 1024

Side = Literal["request", "reply"]
_TAGS: dict[Side, frozenset[int]] = {
    "request": frozenset(c.TAG for c in REQUESTS),
    "reply": frozenset(c.TAG for c in REPLIES),
}
M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class Header:
    """Per-message metadata. Defaults are omitted on the wire (a typical header is ~22 bytes)."""

    rid: Rid
    minor: Annotated[int, Range(0, 255)] = MINOR
    codec: Annotated[int, Range(0, 255)] = CODEC_RAW
    ulen: Annotated[int, Range(0, 2**40)] = 0
    deadline_ms: U32 = 0  # time budget from receipt; 0 = none
    attempt: Annotated[int, Range(0, 255)] = 0
    seq: U63 = 0


@dataclass(frozen=True, slots=True)
class FrameSizes:
    """Byte sizes of one message at the application layer (metering input)."""

    payload: int  # signature + header + uncompressed body
    compressed: int  # the bytes handed to ZeroMQ: sum of frame lengths
    frames: tuple[int, ...]  # each frame's length, for the ZMTP/CURVE framing model


@dataclass(frozen=True, slots=True)
class Envelope:
    header: Header
    message: Message
    sizes: FrameSizes

    @property
    def rid(self) -> bytes:
        return self.header.rid


@dataclass(frozen=True, slots=True)
class Encoded:
    frames: list[bytes]
    sizes: FrameSizes


# ------------------------------------------------------------------------------------------------
# encoding


def encode(
    message: Message,
    *,
    rid: bytes,
    seq: int = 0,
    deadline_ms: int = 0,
    attempt: int = 0,
    limits: Limits = DEFAULT_LIMITS,
) -> Encoded:
    """Encode ``message`` into frames; lz4 only when the body is large, compression pays and the
    ratio stays within what a receiver accepts (``limits.max_ratio``)."""
    raw = _pack(to_plain(message, omit_defaults=True))
    body, codec, ulen = raw, CODEC_RAW, 0
    if len(raw) >= limits.compress_min_bytes:
        packed = lz4.frame.compress(raw, store_size=False)
        # beyond max_ratio a receiver refuses the body as a bomb, so such a body travels raw
        if len(packed) + _MIN_SAVING <= len(raw) <= limits.max_ratio * len(packed):
            body, codec, ulen = packed, CODEC_LZ4, len(raw)
    if len(body) > limits.max_body_bytes:
        raise TooLarge(f"body: {len(body)} B > limit {limits.max_body_bytes} B")
    header = Header(rid=rid, codec=codec, ulen=ulen, deadline_ms=deadline_ms, attempt=attempt, seq=seq)
    head = _pack(to_plain(header, omit_defaults=True))
    sig = SIGNATURE + MAJOR + bytes([message.TAG])
    frame = pack_frame(sig, head, body)
    sizes = FrameSizes(
        payload=SIG_BYTES + HLEN_BYTES + len(head) + len(raw),
        compressed=len(frame),
        frames=(len(frame),),
    )
    return Encoded([frame], sizes)


def pack_frame(sig: bytes, head: bytes, body: bytes) -> bytes:
    """The one wire frame: signature, header length (u16 big-endian), header, body."""
    return sig + len(head).to_bytes(HLEN_BYTES, "big") + head + body


def encode_result(result: object) -> bytes:
    """The bytes of a per-command result struct (for ``Final.result``)."""
    return _pack(to_plain(result, omit_defaults=True))


def pack_body(message: Message) -> bytes:
    """The msgpack body of a message (what idempotency stores to replay a reply)."""
    return _pack(to_plain(message, omit_defaults=True))


def unpack_body(tag: int, body: bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """The message of a stored body (strictly decoded, like a received one)."""
    cls = BY_TAG.get(tag)
    if cls is None:
        raise UnknownCommand(f"command 0x{tag:02x} is unknown")
    return _decode_struct(cls, body, limits, max_bytes=len(body))


def _pack(plain: Any) -> bytes:
    return msgpack.packb(plain, use_bin_type=True)  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------------
# decoding


def decode(frames: Sequence[bytes], *, side: Side, limits: Limits = DEFAULT_LIMITS) -> Envelope:
    """Decode one message, enforcing the limits in the documented order."""
    if len(frames) != N_FRAMES:
        raise FrameCountError(f"expected {N_FRAMES} frame, got {len(frames)}")
    frame = frames[0]
    cls = _check_signature(frame[:SIG_BYTES], side)
    head, body = _split(frame, limits)
    header = _decode_header(head, limits)
    try:
        plain_body = _open_body(body, header, limits)
        message = _decode_struct(cls, plain_body, limits, max_bytes=len(plain_body))
        message.check(limits)
    except WireError as exc:
        exc.rid = header.rid
        raise
    sizes = FrameSizes(
        payload=SIG_BYTES + HLEN_BYTES + len(head) + len(plain_body),
        compressed=len(frame),
        frames=(len(frame),),
    )
    return Envelope(header, message, sizes)


def _split(frame: bytes, limits: Limits) -> tuple[memoryview, memoryview]:
    """Header and body (views, no copies) of a frame whose signature was checked; the header's size
    is checked first."""
    if len(frame) < SIG_BYTES + HLEN_BYTES:
        raise HeaderError("frame ends before the header length")
    hlen = int.from_bytes(frame[SIG_BYTES : SIG_BYTES + HLEN_BYTES], "big")
    if hlen > limits.max_header_bytes:
        raise TooLarge(f"header: {hlen} B > limit {limits.max_header_bytes} B")
    start = SIG_BYTES + HLEN_BYTES
    if len(frame) < start + hlen:
        raise HeaderError("frame ends inside the header")
    view = memoryview(frame)
    return view[start : start + hlen], view[start + hlen :]


def decode_result(kind: int, data: bytes, limits: Limits = DEFAULT_LIMITS) -> object:
    """Decode ``Final.result`` for the command ``kind`` (strict, like a body)."""
    cls = RESULT_FOR.get(kind)
    if cls is None:
        raise UnknownCommand(f"no result type for command 0x{kind:02x}")
    return _decode_struct(cls, data, limits, max_bytes=len(data))


def peek_rid(frames: Sequence[bytes], limits: Limits = DEFAULT_LIMITS) -> bytes | None:
    """The rid of a message whose decoding failed, if its header is sound (else None: drop it)."""
    if len(frames) != N_FRAMES:
        return None
    try:
        return _decode_header(_split(frames[0], limits)[0], limits).rid
    except WireError:
        return None


def _check_signature(sig: bytes, side: Side) -> type[Message]:
    if len(sig) != SIG_BYTES or sig[:3] != SIGNATURE:
        raise BadSignature("frame 0 is not an LTW signature")
    if sig[3:4] != MAJOR:
        raise UnsupportedVersion(f"major version not supported (this side speaks {MAJOR.decode()})")
    tag = sig[4]
    if tag not in _TAGS[side]:
        raise UnknownCommand(f"command 0x{tag:02x} is not a {side}")
    return BY_TAG[tag]


def _decode_header(head: bytes | memoryview, limits: Limits) -> Header:
    if len(head) > limits.max_header_bytes:
        raise TooLarge(f"header: {len(head)} B > limit {limits.max_header_bytes} B")
    try:
        plain = _unpack(head, max_bytes=64, max_array_len=0, max_map_len=16)
        return from_plain(Header, plain)
    except (ValueError, FieldError) as exc:
        raise HeaderError(_reason(exc)) from None


def _open_body(body: bytes | memoryview, header: Header, limits: Limits) -> bytes | memoryview:
    if len(body) > limits.max_body_bytes:
        raise TooLarge(f"body: {len(body)} B > limit {limits.max_body_bytes} B")
    if header.codec == CODEC_RAW:
        if header.ulen not in (0, len(body)):
            raise SizeMismatch("ulen: declared size differs from the raw body size")
        return body
    if header.codec != CODEC_LZ4:
        raise UnsupportedCodec(f"codec {header.codec} not supported (0 raw, 1 lz4)")
    if header.ulen > limits.max_ulen:
        raise TooLarge(f"ulen: declared {header.ulen} B > limit {limits.max_ulen} B")
    if header.ulen == 0 or header.ulen > limits.max_ratio * max(len(body), 1):
        raise CompressionBomb(f"ulen: declared ratio outside [1 B, {limits.max_ratio}x body]")
    return _lz4_exact(body, header.ulen)


def _lz4_exact(body: bytes | memoryview, ulen: int) -> bytes:
    """Decompress one lz4 frame into exactly ``ulen`` bytes.

    Input is fed in small pieces and output is capped at ``ulen + 1`` bytes, so neither the
    decompressor's input buffer nor the output grows with what a hostile frame would inflate to.
    """
    decompressor = lz4.frame.LZ4FrameDecompressor()
    view = memoryview(body)
    out = bytearray()
    pos = 0
    try:
        while not decompressor.eof:
            piece: bytes | memoryview = b""
            if decompressor.needs_input:
                if pos >= len(view):
                    raise DecompressError("lz4: truncated frame")
                piece = view[pos : pos + _LZ4_FEED]
                pos += len(piece)
            chunk = decompressor.decompress(piece, max_length=ulen + 1 - len(out))
            out += chunk
            if len(out) > ulen:
                raise SizeMismatch("ulen: body inflates beyond the declared size")
            if not chunk and not piece:
                raise DecompressError("lz4: decompressor stalled")
    except RuntimeError:
        raise DecompressError("lz4: corrupt frame") from None
    if pos < len(view) or decompressor.unused_data:
        raise DecompressError("lz4: trailing data after the frame")
    if len(out) != ulen:
        raise SizeMismatch("ulen: body inflates to less than the declared size")
    return bytes(out)


def _decode_struct(cls: type[M], data: bytes | memoryview, limits: Limits, *, max_bytes: int) -> M:
    try:
        plain = _unpack(
            data, max_bytes=max_bytes, max_array_len=limits.max_array_len, max_map_len=limits.max_map_len
        )
        return from_plain(cls, plain)
    except (ValueError, FieldError) as exc:
        raise SchemaError(_reason(exc)) from None


def _unpack(data: bytes | memoryview, *, max_bytes: int, max_array_len: int, max_map_len: int) -> object:
    """Strict msgpack: no ext types (incl. timestamps), str keys only, no trailing data."""
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=max_array_len,
            max_map_len=max_map_len,
            max_ext_len=0,
        )
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ValueError(f"msgpack: {type(exc).__name__}") from None
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError) as exc:
        raise ValueError(f"msgpack: {type(exc).__name__}") from None


def _reason(exc: Exception) -> str:
    """A short reason naming the field, never the offending input."""
    if isinstance(exc, FieldError):
        return f"{exc.safe_key or '<root>'}: {exc.reason}"
    return str(exc)
