"""The wire codec: round trips of every message, each limit at its boundary and one past, hostile input."""

from __future__ import annotations

import dataclasses
import math
import os
import tracemalloc
import typing
from typing import Any, Literal

import lz4.frame
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import errors
from shared.protocol import DEFAULT_LIMITS, Limits, codec, decode, decode_result, encode, encode_result
from shared.protocol import messages as m
from shared.protocol.results import RESULT_FOR, QueryResult
from shared.typed import Length, Pattern, Range

RID = bytes(range(16))
SIG_QUERY = b"LTW1" + bytes([m.Query.TAG])


# ------------------------------------------------------------------------------------------------
# hypothesis strategies derived from the declared field types: the schema is the single source


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    base, metas = tp, ()
    if typing.get_origin(tp) is typing.Annotated:
        base, *rest = typing.get_args(tp)
        metas = tuple(rest)
    rng = next((x for x in metas if isinstance(x, Range)), Range())
    length = next((x for x in metas if isinstance(x, Length)), None)
    pattern = next((x for x in metas if isinstance(x, Pattern)), None)
    origin = typing.get_origin(base)
    if dataclasses.is_dataclass(base):
        hints = typing.get_type_hints(base, include_extras=True)
        fields = {f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(base)}
        return st.builds(base, **fields)
    if origin is Literal:
        return st.sampled_from(typing.get_args(base))
    if origin is tuple:
        hi = min(length.max if length else 3, 3)
        return st.lists(strategy_for(typing.get_args(base)[0]), max_size=hi).map(tuple)
    if origin is dict:
        hi = min(length.max if length else 3, 3)
        return st.dictionaries(st.text(max_size=8), strategy_for(typing.get_args(base)[1]), max_size=hi)
    if base is bool:
        return st.booleans()
    if base is int:
        lo = int(rng.ge) if rng.ge is not None else -(2**63)
        hi_i = int(rng.le) if rng.le is not None else 2**63 - 1
        return st.integers(lo, hi_i)
    if base is float:
        return st.floats(rng.ge, rng.le, allow_nan=False, allow_infinity=False)
    if base is bytes:
        lo_b = length.min if length else 0
        return st.binary(min_size=lo_b, max_size=max(lo_b, min(length.max if length else 64, 64)))
    if base is str:
        if pattern is not None:
            return st.from_regex(pattern.regex, fullmatch=True).filter(
                lambda s: length is None or length.min <= len(s) <= length.max
            )
        lo_s = length.min if length else 0
        return st.text(min_size=lo_s, max_size=max(lo_s, min(length.max if length else 40, 40)))
    raise TypeError(tp)


def message_strategy() -> st.SearchStrategy[m.Message]:
    return st.one_of([strategy_for(cls) for cls in m.REQUESTS + m.REPLIES])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(message_strategy(), st.binary(min_size=16, max_size=16), st.integers(0, 2**63 - 1))
def test_every_message_round_trips(message: m.Message, rid: bytes, seq: int) -> None:
    side: Literal["request", "reply"] = "request" if message.TAG < 0x80 else "reply"
    (frame,) = encode(message, rid=rid, seq=seq).frames
    # decode checks schema only; semantic limits are exercised separately below
    cls = codec._check_signature(frame[:5], side)
    head, body = codec._split(frame, DEFAULT_LIMITS)
    header = codec._decode_header(head, DEFAULT_LIMITS)
    plain = codec._open_body(body, header, DEFAULT_LIMITS)
    assert codec._decode_struct(cls, plain, DEFAULT_LIMITS, max_bytes=len(plain)) == message
    assert header.rid == rid and header.seq == seq


@settings(max_examples=100)
@given(strategy_for(QueryResult))
def test_query_results_round_trip(result: QueryResult) -> None:
    assert decode_result(m.Query.TAG, encode_result(result)) == result


def test_every_command_with_a_final_has_a_result_type() -> None:
    for cls in m.REQUESTS:
        if cls not in (m.Fetch, m.Ping):
            assert cls.TAG in RESULT_FOR, cls.__name__


def test_tags_are_unique_and_sides_disjoint() -> None:
    tags = [c.TAG for c in m.REQUESTS + m.REPLIES]
    assert len(tags) == len(set(tags))
    assert all(t < 0x80 for t in (c.TAG for c in m.REQUESTS))
    assert all(t >= 0x80 for t in (c.TAG for c in m.REPLIES))


# ------------------------------------------------------------------------------------------------
# compression: only where it pays


def query(question: str = "temperature in the kitchen?", **kw: Any) -> m.Query:
    return m.Query(twin_id="home1", question=question, **kw)


def test_small_bodies_stay_raw() -> None:
    enc = encode(query(), rid=RID)
    assert header_of(enc.frames).get("codec", 0) == codec.CODEC_RAW
    assert enc.sizes.payload == enc.sizes.compressed


def test_large_repetitive_bodies_are_lz4_and_metered() -> None:
    enc = encode(query("kitchen light on. " * 100), rid=RID)
    head = header_of(enc.frames)
    assert head["codec"] == codec.CODEC_LZ4
    assert enc.sizes.compressed < enc.sizes.payload
    assert decode(enc.frames, side="request").message == query("kitchen light on. " * 100)


def test_bodies_that_compress_beyond_the_receivers_ratio_limit_travel_raw() -> None:
    zeros = m.AdapterChunk(upload_id=RID, offset=0, data=bytes(65536))  # an all-zero slice of an adapter
    strict = dataclasses.replace(DEFAULT_LIMITS, max_ratio=64)
    enc = encode(zeros, rid=RID, limits=strict)
    assert header_of(enc.frames).get("codec", 0) == codec.CODEC_RAW
    assert decode(enc.frames, side="request", limits=strict).message == zeros  # not refused as a bomb
    default = encode(zeros, rid=RID)  # ~200:1 is within the default limit: the zeros cost ~330 B
    assert header_of(default.frames)["codec"] == codec.CODEC_LZ4 and default.sizes.compressed < 500
    assert decode(default.frames, side="request").message == zeros


def test_incompressible_bodies_stay_raw() -> None:
    chunk = m.AdapterChunk(upload_id=RID, offset=0, data=os.urandom(4096))
    enc = encode(chunk, rid=RID)
    assert header_of(enc.frames).get("codec", 0) == codec.CODEC_RAW


# ------------------------------------------------------------------------------------------------
# limits in order, at the boundary and one past


def parts(sig: bytes, head: bytes, body: bytes) -> list[bytes]:
    """The one wire frame holding these three parts."""
    return [codec.pack_frame(sig, head, body)]


def header_of(frames: list[bytes]) -> dict[str, Any]:
    head, _ = codec._split(frames[0], DEFAULT_LIMITS)
    return msgpack.unpackb(head)  # type: ignore[no-any-return]


def frames_with(
    header: dict[str, Any] | None = None, body: bytes | None = None, sig: bytes = SIG_QUERY
) -> list[bytes]:
    head = msgpack.packb({"rid": RID, **(header or {})})
    if body is None:
        body = msgpack.packb({"twin_id": "home1", "question": "hi?"})
    return parts(sig, head, body)


@pytest.mark.parametrize("n", [0, 2, 3, 5, 10_000])
def test_frame_count(n: int) -> None:
    with pytest.raises(errors.FrameCountError):
        decode(frames_with() * n, side="request")


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"", errors.BadSignature),
        (b"LTW1", errors.BadSignature),  # shorter than a signature
        (b"XTW1" + bytes([m.Query.TAG]) + b"\x00\x00", errors.BadSignature),
        (b"LTW2" + bytes([m.Query.TAG]) + b"\x00\x00", errors.UnsupportedVersion),
        (b"LTW1\x7f\x00\x00", errors.UnknownCommand),
        (b"LTW1" + bytes([m.Final.TAG]) + b"\x00\x00", errors.UnknownCommand),  # a reply sent as a request
        (b"LTW1" + bytes([m.Query.TAG]) + b"\x00", errors.HeaderError),  # ends inside the header length
        (b"LTW1" + bytes([m.Query.TAG]) + b"\x00\x30rid", errors.HeaderError),  # ends inside the header
    ],
)
def test_signature_version_and_command(frame: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode([frame], side="request")


def test_header_size_boundary() -> None:
    body = msgpack.packb({"twin_id": "home1", "question": "hi?"})
    head = msgpack.packb({"rid": RID, "seq": 1})
    assert len(head) < 32
    head_at_limit = msgpack.packb(
        {"rid": RID, "seq": 2**63 - 1, "attempt": 255, "deadline_ms": 2**32 - 1, "ulen": 0, "minor": 0}
    )
    limits = Limits(max_header_bytes=max(len(head_at_limit), 32))
    assert decode(parts(SIG_QUERY, head_at_limit, body), side="request", limits=limits)
    with pytest.raises(errors.TooLarge):
        decode(parts(SIG_QUERY, head_at_limit + b"\x00", body), side="request", limits=limits)


@pytest.mark.parametrize(
    "head",
    [
        b"\xc1",  # never-used msgpack byte
        msgpack.packb({"rid": RID})[:-3],  # truncated
        msgpack.packb({"rid": RID}) + b"\x00",  # trailing data
        msgpack.packb([RID]),  # not a map
        msgpack.packb({"seq": 1}),  # missing rid
        msgpack.packb({"rid": RID[:15]}),  # wrong rid length
        msgpack.packb({"rid": RID, "evil": 1}),  # unknown key
        msgpack.packb({"rid": RID, "seq": -1}),  # out of range
        msgpack.packb({"rid": RID, "seq": 2**64 - 1}),  # huge int
        msgpack.packb({"rid": RID, "deadline_ms": float("nan")}),
        msgpack.packb({"rid": RID, "seq": True}),  # bool is not an int
        msgpack.packb({"rid": msgpack.ExtType(5, b"x" * 16)}),  # ext type
        msgpack.packb({"rid": RID, 1: 2}, strict_types=False),  # non-str key
        b"\x91" * 60 + b"\xc0",  # deep nesting
    ],
)
def test_bad_headers_are_header_errors(head: bytes) -> None:
    with pytest.raises(errors.HeaderError) as info:
        decode(parts(SIG_QUERY, head, b"\x80"), side="request")
    assert info.value.rid is None
    assert codec.peek_rid([SIG_QUERY, head, b"\x80"]) is None


def test_body_one_past_the_limit() -> None:
    limits = Limits(max_body_bytes=2048, max_chunk_bytes=1024)
    with pytest.raises(errors.TooLarge) as info:
        decode(parts(SIG_QUERY, msgpack.packb({"rid": RID}), b"\x80" * 2049), side="request", limits=limits)
    assert info.value.rid == RID  # the header was sound: the error can be answered


def test_body_exactly_at_limit_passes_size_check() -> None:
    limits = Limits(max_body_bytes=2048, max_chunk_bytes=1024, max_question_chars=4000)
    question = "q" * 2000
    body = msgpack.packb({"twin_id": "home1", "question": question})
    filler = 2048 - len(body)
    body = msgpack.packb({"twin_id": "home1", "question": question + "q" * filler})
    body = msgpack.packb({"twin_id": "home1", "question": question + "q" * (filler - (len(body) - 2048))})
    assert len(body) == 2048
    assert decode(parts(SIG_QUERY, msgpack.packb({"rid": RID}), body), side="request", limits=limits)


def lz4_frames(raw: bytes, ulen: int | None = None, body: bytes | None = None) -> list[bytes]:
    packed = lz4.frame.compress(raw, store_size=False) if body is None else body
    return frames_with({"codec": 1, "ulen": len(raw) if ulen is None else ulen}, packed)


def test_unknown_codec_is_415() -> None:
    with pytest.raises(errors.UnsupportedCodec):
        decode(frames_with({"codec": 7}), side="request")


def test_declared_size_boundary() -> None:
    limits = Limits(max_ulen=4096, max_ratio=1000)
    raw = msgpack.packb({"twin_id": "home1", "question": "a" * 3900})
    assert len(raw) <= 4096
    assert decode(lz4_frames(raw), side="request", limits=limits)
    with pytest.raises(errors.TooLarge):
        decode(lz4_frames(raw, ulen=4097), side="request", limits=limits)


def test_ratio_boundary() -> None:
    raw = msgpack.packb({"twin_id": "home1", "question": "a" * 3000})
    packed = lz4.frame.compress(raw, store_size=False)
    ratio = -(-len(raw) // len(packed))  # ceil
    assert decode(lz4_frames(raw), side="request", limits=Limits(max_ratio=ratio))
    with pytest.raises(errors.CompressionBomb):
        decode(lz4_frames(raw), side="request", limits=Limits(max_ratio=ratio - 1))


def test_declared_2_to_40_is_refused_before_decompressing() -> None:
    with pytest.raises(errors.TooLarge):
        decode(lz4_frames(b"x" * 100, ulen=2**40), side="request")


def test_bomb_without_declared_size_allocates_at_most_the_limit() -> None:
    """1 GiB of zeros (about 4 MiB of lz4) declared as 1 MiB: refused, memory stays bounded."""
    limits = Limits(max_body_bytes=8 << 20, max_frame_bytes=8 << 20, max_ulen=1 << 20, max_ratio=1024)
    compressor = lz4.frame.LZ4FrameCompressor()
    zeros = bytes(16 << 20)
    parts = [compressor.begin()] + [compressor.compress(zeros) for _ in range(64)] + [compressor.flush()]
    bomb = b"".join(parts)
    del zeros, parts
    frames = frames_with({"codec": 1, "ulen": 1 << 20}, bomb)
    tracemalloc.start()
    try:
        with pytest.raises(errors.SizeMismatch):
            decode(frames, side="request", limits=limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * limits.max_ulen + 2 * codec._LZ4_FEED  # output + its final copy, never 1 GiB


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda raw: lz4_frames(raw, body=b"not lz4 at all, just bytes"), errors.DecompressError),
        (
            lambda raw: lz4_frames(raw, body=_corrupt(lz4.frame.compress(raw, content_checksum=True))),
            errors.DecompressError,
        ),
        (
            lambda raw: lz4_frames(raw, body=lz4.frame.compress(raw, store_size=False)[:-6]),
            errors.DecompressError,
        ),
        (
            lambda raw: lz4_frames(raw, body=lz4.frame.compress(raw, store_size=False) * 2),
            errors.DecompressError,
        ),
        (lambda raw: lz4_frames(raw, ulen=len(raw) - 1), errors.SizeMismatch),
        (lambda raw: lz4_frames(raw, ulen=len(raw) + 1), errors.SizeMismatch),
        (lambda raw: frames_with({"codec": 1, "ulen": len(raw)}, raw), errors.DecompressError),  # flag lies
        (lambda raw: frames_with({"codec": 0}, lz4.frame.compress(raw)), errors.SchemaError),  # flag lies
        (lambda raw: frames_with({"codec": 0, "ulen": 3}, raw), errors.SizeMismatch),
    ],
)
def test_compression_failures(make: Any, error: type[Exception]) -> None:
    raw = msgpack.packb({"twin_id": "home1", "question": "where is the cat? " * 40})
    with pytest.raises(error) as info:
        decode(make(raw), side="request")
    assert getattr(info.value, "rid", None) == RID


def _corrupt(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]


@pytest.mark.parametrize(
    "body",
    [
        msgpack.packb({"twin_id": "home1", "question": "hi", "evil": 1}),  # unknown field
        msgpack.packb({"twin_id": "home1"}),  # missing field
        msgpack.packb({"twin_id": "../etc", "question": "hi"}),  # path characters
        msgpack.packb({"twin_id": "home1", "question": 5}),  # wrong type
        msgpack.packb({"twin_id": "home1", "question": "hi", "temperature": float("inf")}),
        msgpack.packb({"twin_id": "home1", "question": "hi", "temperature": float("nan")}),
        msgpack.packb({"twin_id": "home1", "question": "hi", "seed": 2**64 - 1}),
        msgpack.packb({"twin_id": "home1", "question": "hi", "max_new_tokens": 2**40}),
        msgpack.packb({"twin_id": "home1", "question": msgpack.ExtType(1, b"x")}),
        msgpack.packb({"twin_id": "home1", "question": "hi", "stop": ["x"] * 9}),
        msgpack.packb({"twin_id": "home1", "question": msgpack.Timestamp(1_700_000_000)}),
        msgpack.packb({"twin_id": "home1", "question": b"\xff\xfe"}, use_bin_type=False),  # bad utf-8
        msgpack.packb({"twin_id": "home1", "question": "hi"}) + b"\x00",  # trailing data
        b"\x91" * 2000 + b"\xc0",  # deep nesting
        b"\xdd\xff\xff\xff\xff",  # array32 claiming 4 G elements
        b"\xdb\xff\xff\xff\xff",  # str32 claiming 4 GiB
    ],
)
def test_bad_bodies_are_schema_errors(body: bytes) -> None:
    with pytest.raises(errors.SchemaError) as info:
        decode(parts(SIG_QUERY, msgpack.packb({"rid": RID}), body), side="request")
    assert info.value.rid == RID


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (query("   "), errors.SemanticError),
        (query("q" * (DEFAULT_LIMITS.max_question_chars + 1)), errors.TooLarge),
        (query(max_new_tokens=0), errors.SemanticError),
        (query(max_new_tokens=-5), errors.SemanticError),
        (query(max_new_tokens=DEFAULT_LIMITS.max_new_tokens + 1), errors.SemanticError),
        (query(stop=("a",) * (DEFAULT_LIMITS.max_stop + 1)), errors.SemanticError),
        (m.StateUpload(twin_id="home1", seq=1, ts_ms=1, kind="delta", text=" "), errors.SemanticError),
        (
            m.AdapterBegin(
                twin_id="home1",
                version=1,
                size=DEFAULT_LIMITS.max_adapter_bytes + 1,
                sha256="0" * 64,
                manifest=b"{}",
            ),
            errors.TooLarge,
        ),
    ],
)
def test_semantic_limits(message: m.Message, error: type[Exception]) -> None:
    frames = encode(message, rid=RID).frames
    with pytest.raises(error) as info:
        decode(frames, side="request")
    assert info.value.rid == RID  # type: ignore[attr-defined]


def test_semantic_limits_at_the_boundary_pass() -> None:
    ok = query(
        "q" * DEFAULT_LIMITS.max_question_chars,
        max_new_tokens=DEFAULT_LIMITS.max_new_tokens,
        stop=("a",) * DEFAULT_LIMITS.max_stop,
    )
    assert decode(encode(ok, rid=RID).frames, side="request").message == ok


def test_first_failing_check_wins() -> None:
    """A body both too large and malformed reports the size (step 4 before step 7)."""
    limits = Limits(max_body_bytes=1024, max_chunk_bytes=512)
    with pytest.raises(errors.TooLarge):
        decode(
            parts(SIG_QUERY, msgpack.packb({"rid": RID, "codec": 9}), b"\xc1" * 2000),
            side="request",
            limits=limits,
        )
    with pytest.raises(errors.UnsupportedCodec):
        decode(parts(SIG_QUERY, msgpack.packb({"rid": RID, "codec": 9}), b"\xc1"), side="request")


def test_errors_never_echo_input() -> None:
    secret = "door code 4711 hunter2"
    body = msgpack.packb({"twin_id": "home1", "question": "x", secret: secret})
    with pytest.raises(errors.SchemaError) as info:
        decode(parts(SIG_QUERY, msgpack.packb({"rid": RID}), body), side="request")
    assert "4711" not in str(info.value) and "hunter2" not in info.value.detail
    body = msgpack.packb({"twin_id": secret, "question": "x"})
    with pytest.raises(errors.SchemaError) as info:
        decode(parts(SIG_QUERY, msgpack.packb({"rid": RID}), body), side="request")
    assert "4711" not in str(info.value)


def test_encode_refuses_a_body_the_peer_would_refuse() -> None:
    big = m.StateUpload(twin_id="home1", seq=1, ts_ms=1, kind="key", text=os.urandom(600_000).hex())
    with pytest.raises(errors.TooLarge):
        encode(big, rid=RID, limits=Limits(max_body_bytes=65536, max_chunk_bytes=1024))


def test_float_fields_accept_ints_and_stay_finite() -> None:
    body = msgpack.packb({"twin_id": "home1", "question": "hi", "temperature": 1, "top_p": 0.5})
    env = decode(parts(SIG_QUERY, msgpack.packb({"rid": RID}), body), side="request")
    assert isinstance(env.message, m.Query)
    assert env.message.temperature == 1.0 and math.isfinite(env.message.top_p)
