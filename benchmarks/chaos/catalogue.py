"""The hostile single-message catalogue: name → frames builder → what the gateway must do.

Every case is sent by an authenticated tenant (``home1``) over its CURVE connection to a running
gateway; see :mod:`benchmarks.chaos.frames` for the outcome kinds. Groups follow issue 9: framing,
signature and version, header, body schema, compression, semantics. Multi-message cases (floods,
slow consumers, reconnect storms, ...) are in :mod:`benchmarks.chaos.flows`.
"""

from __future__ import annotations

from collections.abc import Callable

import lz4.frame
import msgpack

from benchmarks.chaos.frames import Expect, FrameCase, frame, head, lz4_body, pack, raw
from shared.protocol import DEFAULT_LIMITS
from shared.protocol import messages as m

PING, STATE, QUERY, FETCH = m.Ping.TAG, m.StateUpload.TAG, m.Query.TAG, m.Fetch.TAG
CHUNK, BEGIN = m.AdapterChunk.TAG, m.AdapterBegin.TAG
MAX = DEFAULT_LIMITS.max_frame_bytes  # the gateway's ZMQ_MAXMSGSIZE
Build = Callable[[bytes], list[bytes]]


def drop(code: str) -> Expect:
    return Expect("drop", code)


def error(code: str) -> Expect:
    return Expect("error", code)


def ping(rid: bytes) -> bytes:
    return frame(PING, head(rid), pack({"sent_ms": 1}))


def parts(n: int) -> Build:
    return lambda rid: [ping(rid)] * n


def sized_chunk(total: int) -> Build:
    """An ADAPTER_CHUNK whose single frame is exactly ``total`` bytes."""

    def build(rid: bytes) -> list[bytes]:
        def at(n: int) -> bytes:
            return frame(CHUNK, head(rid), pack({"upload_id": rid, "offset": 0, "data": bytes(n)}))

        probe = at(1 << 17)  # bin32 from 64 KiB up: the overhead no longer depends on n
        return [at(total - (len(probe) - (1 << 17)))]

    return build


def sig(signature: bytes) -> Build:
    return lambda rid: [signature + (len(head(rid))).to_bytes(2, "big") + head(rid) + pack({})]


def header(blob: bytes | Callable[[bytes], bytes], *, hlen: int | None = None) -> Build:
    def build(rid: bytes) -> list[bytes]:
        h = blob(rid) if callable(blob) else blob
        return [frame(PING, h, pack({}), hlen=hlen)]

    return build


def body(tag: int, blob: bytes) -> Build:
    return lambda rid: [frame(tag, head(rid), blob)]


def lz4_msg(tag: int, payload: bytes, *, codec: int = 1, ulen: int | None = None) -> Build:
    """A message whose body is ``payload`` as given (already compressed or not) with a header that
    declares ``codec`` and ``ulen`` (default: the payload's own length)."""
    declared = len(payload) if ulen is None else ulen
    return lambda rid: [frame(tag, head(rid, codec=codec, ulen=declared), payload)]


def _query(**fields: object) -> bytes:
    return pack({"twin_id": "home1", "question": "How warm is the living room?", **fields})


_BODY = pack({"sent_ms": 12345})  # a sound PING body
_TEXT = pack({"twin_id": "home1", "question": "How warm is it? " * 64})  # a sound, compressible QUERY body
_TEXT_LZ4 = lz4_body(_TEXT)
_CHECKED = lz4.frame.compress(_TEXT, store_size=False, content_checksum=True)
_FLIPPED = _CHECKED[:40] + bytes([_CHECKED[40] ^ 0xFF]) + _CHECKED[41:]
_ZEROS_LZ4 = lz4_body(bytes(64 << 20))  # 64 MiB of zeros in ~250 kB
_TS = msgpack.Timestamp(0, 0)
_EXT = msgpack.ExtType(5, b"xyz")


def _frames() -> list[FrameCase]:
    g = "framing"
    return [
        FrameCase("frames_0_empty_message", g, lambda rid: [], drop("bad_signature")),
        FrameCase("frames_2", g, parts(2), drop("frame_count")),
        FrameCase("frames_3", g, parts(3), drop("frame_count")),
        FrameCase("frames_5", g, parts(5), drop("frame_count")),
        FrameCase("frames_10000", g, parts(10_000), drop("frame_count")),
        FrameCase("frames_1_then_9999_empty", g, lambda rid: [ping(rid)] + [b""] * 9_999, drop("frame_count")),
        FrameCase("frame_at_maxmsgsize", g, sized_chunk(MAX), error("too_large")),
        FrameCase("frame_maxmsgsize_plus_1", g, sized_chunk(MAX + 1), Expect("disconnect", "maxmsgsize")),
        FrameCase("frame_below_header_length", g, lambda rid: [b"LTW1\x09\x00"], drop("bad_header")),
    ]


def _signatures() -> list[FrameCase]:
    g = "signature"
    return [
        FrameCase("sig_wrong_magic", g, sig(b"XTW1\x09"), drop("bad_signature")),
        FrameCase("sig_lowercase", g, sig(b"ltw1\x09"), drop("bad_signature")),
        FrameCase("sig_truncated", g, lambda rid: [b"LTW"], drop("bad_signature")),
        FrameCase("sig_major_0", g, sig(b"LTW0\x09"), drop("unsupported_version")),
        FrameCase("sig_major_2", g, sig(b"LTW2\x09"), drop("unsupported_version")),
        FrameCase("sig_major_255", g, sig(b"LTW\xff\x09"), drop("unsupported_version")),
        FrameCase("sig_unknown_command", g, sig(b"LTW1\x7f"), drop("unknown_command")),
        FrameCase("sig_command_0", g, sig(b"LTW1\x00"), drop("unknown_command")),
        FrameCase("sig_reply_command_as_request", g, sig(b"LTW1\x84"), drop("unknown_command")),
        FrameCase("minor_version_ahead", g, raw(PING, {}, minor=99), Expect("served", "pong")),
    ]


def _headers() -> list[FrameCase]:
    g = "header"
    nested = b"\x81\xa1a" * 40 + b"\xc0"  # {"a": {"a": ... nil}} 40 deep
    return [
        FrameCase("header_not_msgpack", g, header(b"\xc1\xc1\xc1\xc1"), drop("bad_header")),
        FrameCase("header_empty", g, header(b""), drop("bad_header")),
        FrameCase("header_truncated", g, lambda rid: [frame(PING, head(rid)[:10], b"")], drop("bad_header")),
        FrameCase("header_length_beyond_frame", g, header(lambda rid: head(rid), hlen=200), drop("bad_header")),
        FrameCase("header_length_65535", g, header(lambda rid: head(rid), hlen=0xFFFF), drop("too_large")),
        FrameCase("header_trailing_data", g, header(lambda rid: head(rid) + b"\x00"), drop("bad_header")),
        FrameCase("header_deep_nesting", g, header(nested), drop("bad_header")),
        FrameCase("header_array_instead_of_map", g, header(lambda rid: pack([rid])), drop("bad_header")),
        FrameCase(
            "header_huge_str_length", g, header(b"\x81\xa3rid\xdb\xff\xff\xff\xff" + b"a" * 16), drop("bad_header")
        ),
        FrameCase("header_huge_map_length", g, header(b"\xdf\xff\xff\xff\xff\xa3rid"), drop("bad_header")),
        FrameCase("header_missing_rid", g, header(pack({"minor": 0})), drop("bad_header")),
        FrameCase("header_rid_15_bytes", g, header(lambda rid: head(rid[:15])), drop("bad_header")),
        FrameCase("header_rid_17_bytes", g, header(lambda rid: head(rid + b"x")), drop("bad_header")),
        FrameCase("header_rid_as_str", g, header(lambda rid: pack({"rid": rid.hex()[:16]})), drop("bad_header")),
        FrameCase("header_rid_nil", g, header(pack({"rid": None})), drop("bad_header")),
        FrameCase("header_unknown_key", g, header(lambda rid: head(rid, admin=True)), drop("bad_header")),
        FrameCase("header_int_key", g, header(lambda rid: pack({"rid": rid, 1: 2})), drop("bad_header")),
        FrameCase("header_nan", g, header(lambda rid: head(rid, deadline_ms=float("nan"))), drop("bad_header")),
        FrameCase("header_inf", g, header(lambda rid: head(rid, deadline_ms=float("inf"))), drop("bad_header")),
        FrameCase("header_huge_int", g, header(lambda rid: head(rid, seq=2**64 - 1)), drop("bad_header")),
        FrameCase("header_negative_int", g, header(lambda rid: head(rid, deadline_ms=-1)), drop("bad_header")),
        FrameCase("header_ulen_2_pow_63", g, header(lambda rid: head(rid, codec=1, ulen=2**63)), drop("bad_header")),
        FrameCase("header_ext_type", g, header(lambda rid: head(rid, seq=_EXT)), drop("bad_header")),
        FrameCase("header_timestamp", g, header(lambda rid: head(rid, seq=_TS)), drop("bad_header")),
    ]


def _bodies() -> list[FrameCase]:
    g = "body"
    return [
        FrameCase("body_not_msgpack", g, body(PING, b"\xc1"), error("bad_schema")),
        FrameCase("body_empty", g, body(PING, b""), error("bad_schema")),
        FrameCase("body_truncated_map", g, body(QUERY, _query()[:-5]), error("bad_schema")),
        FrameCase("body_trailing_data", g, body(PING, _BODY + b"\x00"), error("bad_schema")),
        FrameCase("body_deep_nesting_100k", g, body(PING, b"\x91" * 100_000 + b"\xc0"), error("bad_schema")),
        FrameCase(
            "body_huge_bin_length",
            g,
            body(PING, b"\x81\xa7sent_ms\xc6\xff\xff\xff\xff" + bytes(8)),
            error("bad_schema"),
        ),
        FrameCase("body_huge_array_length", g, body(PING, b"\xdd\xff\xff\xff\xff\x01"), error("bad_schema")),
        FrameCase("body_huge_map_length", g, body(PING, b"\xdf\xff\xff\xff\xff\xa1a\x01"), error("bad_schema")),
        FrameCase("body_array_instead_of_map", g, body(PING, pack([1])), error("bad_schema")),
        FrameCase("body_unknown_key", g, body(QUERY, _query(admin=True)), error("bad_schema")),
        FrameCase("body_missing_field", g, body(QUERY, pack({"twin_id": "home1"})), error("bad_schema")),
        FrameCase("body_wrong_type", g, body(QUERY, _query(max_new_tokens="8")), error("bad_schema")),
        FrameCase("body_nan", g, body(QUERY, _query(temperature=float("nan"))), error("bad_schema")),
        FrameCase("body_inf", g, body(QUERY, _query(temperature=float("inf"))), error("bad_schema")),
        FrameCase("body_huge_int", g, body(QUERY, _query(seed=2**64 - 1)), error("bad_schema")),
        FrameCase("body_negative_u63", g, body(QUERY, _query(seed=-(2**63))), error("bad_schema")),
        FrameCase("body_ext_type", g, body(QUERY, _query(seed=_EXT)), error("bad_schema")),
        FrameCase("body_timestamp", g, body(PING, pack({"sent_ms": _TS})), error("bad_schema")),
        FrameCase("body_array_over_limit", g, body(QUERY, _query(stop=["s"] * 2000)), error("bad_schema")),
        FrameCase("body_twin_path_traversal", g, body(QUERY, _query(twin_id="../home2")), error("bad_schema")),
        FrameCase("body_twin_slash", g, body(QUERY, _query(twin_id="home1/../../etc")), error("bad_schema")),
        FrameCase("body_twin_nul", g, body(QUERY, _query(twin_id="home1\x00")), error("bad_schema")),
        FrameCase("body_twin_uppercase", g, body(QUERY, _query(twin_id="HOME1")), error("bad_schema")),
        FrameCase("body_twin_sql", g, body(QUERY, _query(twin_id="home1' OR '1'='1")), error("bad_schema")),
        FrameCase(
            "body_bad_utf8", g, body(QUERY, b"\x82\xa7twin_id\xa5home1\xa8question\xa2\xff\xfe"), error("bad_schema")
        ),
    ]


def _compression() -> list[FrameCase]:
    g = "compression"
    n = len(_TEXT)
    return [
        FrameCase("lz4_sound_control", g, lz4_msg(PING, lz4_body(_BODY), ulen=len(_BODY)), Expect("served", "pong")),
        FrameCase("lz4_not_lz4", g, lz4_msg(QUERY, bytes(range(256)), ulen=n), error("decompress_failed")),
        FrameCase("lz4_corrupt_block", g, lz4_msg(QUERY, _FLIPPED, ulen=n), error("decompress_failed")),
        FrameCase("lz4_truncated", g, lz4_msg(QUERY, _TEXT_LZ4[:-9], ulen=n), error("decompress_failed")),
        FrameCase("lz4_concatenated_frames", g, lz4_msg(QUERY, _TEXT_LZ4 * 2, ulen=n), error("decompress_failed")),
        FrameCase("lz4_trailing_garbage", g, lz4_msg(QUERY, _TEXT_LZ4 + b"junk", ulen=n), error("decompress_failed")),
        FrameCase("lz4_ulen_short_by_1", g, lz4_msg(QUERY, _TEXT_LZ4, ulen=n - 1), error("ulen_mismatch")),
        FrameCase("lz4_ulen_long_by_1", g, lz4_msg(QUERY, _TEXT_LZ4, ulen=n + 1), error("ulen_mismatch")),
        FrameCase("lz4_ulen_zero", g, lz4_msg(QUERY, _TEXT_LZ4, ulen=0), error("ratio_exceeded")),
        FrameCase("bomb_64mib_understated", g, lz4_msg(PING, _ZEROS_LZ4, ulen=1 << 20), error("ulen_mismatch")),
        FrameCase("bomb_declared_above_ratio", g, lz4_msg(PING, _TEXT_LZ4[:64], ulen=1 << 20), error("ratio_exceeded")),
        FrameCase("bomb_declared_above_max_ulen", g, lz4_msg(PING, _ZEROS_LZ4, ulen=1 << 30), error("too_large")),
        FrameCase("codec_lie_raw_marked_lz4", g, lz4_msg(QUERY, _TEXT, ulen=n), error("decompress_failed")),
        FrameCase("codec_lie_lz4_marked_raw", g, lz4_msg(QUERY, _TEXT_LZ4, codec=0, ulen=0), error("bad_schema")),
        FrameCase("codec_raw_with_ulen", g, lz4_msg(QUERY, _TEXT, codec=0, ulen=n + 5), error("ulen_mismatch")),
        FrameCase("codec_unknown", g, lz4_msg(QUERY, _TEXT_LZ4, codec=7, ulen=n), error("unsupported_codec")),
    ]


def _semantics() -> list[FrameCase]:
    g = "semantics"
    state = {"twin_id": "home1", "seq": 1, "ts_ms": 1, "kind": "key"}
    begin = {"twin_id": "home1", "version": 1, "size": 2**40, "sha256": "0" * 64, "manifest": b"{}"}
    return [
        FrameCase("state_empty_prompt", g, body(STATE, pack(state | {"text": "   "})), error("bad_value")),
        FrameCase(
            "state_not_a_semantic_prompt",
            g,
            body(STATE, pack(state | {"text": "DROP TABLE prompts;"})),
            error("bad_value"),
        ),
        FrameCase(
            "state_prompt_over_cap", g, body(STATE, pack(state | {"text": "K " + "x" * 40_000})), error("too_large")
        ),
        FrameCase("query_empty_question", g, body(QUERY, _query(question=" \n\t ")), error("bad_value")),
        FrameCase("query_question_over_cap", g, body(QUERY, _query(question="why? " * 1000)), error("too_large")),
        FrameCase("query_max_tokens_0", g, body(QUERY, _query(max_new_tokens=0)), error("bad_value")),
        FrameCase("query_max_tokens_negative", g, body(QUERY, _query(max_new_tokens=-5)), error("bad_value")),
        FrameCase("query_max_tokens_over_cap", g, body(QUERY, _query(max_new_tokens=257)), error("bad_value")),
        FrameCase("query_max_tokens_2_pow_31", g, body(QUERY, _query(max_new_tokens=2**31)), error("bad_value")),
        FrameCase("query_too_many_stops", g, body(QUERY, _query(stop=["a", "b", "c", "d", "e"])), error("bad_value")),
        FrameCase("query_sampling_top_p_0", g, body(QUERY, _query(temperature=1.0, top_p=0.0)), error("bad_value")),
        FrameCase(
            "query_context_overflow",
            g,
            body(QUERY, _query(question="7" * 3990, max_new_tokens=256)),
            error("too_large"),
        ),
        FrameCase("query_other_tenants_twin", g, body(QUERY, _query(twin_id="home2")), error("forbidden")),
        FrameCase("query_prefix_twin", g, body(QUERY, _query(twin_id="home10")), error("forbidden")),
        FrameCase(
            "adapter_other_tenants_twin",
            g,
            body(BEGIN, pack(begin | {"twin_id": "home2", "size": 10})),
            error("forbidden"),
        ),
        FrameCase("adapter_size_over_cap", g, body(BEGIN, pack(begin)), error("too_large")),
        FrameCase(
            "adapter_chunk_unknown_upload",
            g,
            raw(CHUNK, {"upload_id": b"u" * 16, "offset": 0, "data": b"x"}),
            error("unknown_upload"),
        ),
        # FETCH is answered under the rid it asks about: the target is the case's rid
        FrameCase(
            "fetch_unknown_rid",
            g,
            lambda rid: [frame(FETCH, head(bytes(16)), pack({"target": rid}))],
            error("unknown_rid"),
        ),
    ]


def frame_cases() -> list[FrameCase]:
    return [*_frames(), *_signatures(), *_headers(), *_bodies(), *_compression(), *_semantics()]
