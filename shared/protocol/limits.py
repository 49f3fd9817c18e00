"""Codec limits: every size the decoder enforces before it allocates anything that depends on input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from shared.typed import FieldError, Range

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard limits of the wire codec and semantic limits of the messages.

    ``max_frame_bytes`` should equal the socket's ZMQ_MAXMSGSIZE so that libzmq drops anything larger
    before it reaches Python; the codec checks again so a misconfigured socket is still safe.
    """

    max_frame_bytes: Annotated[int, Range(1 * KiB, 64 * MiB)] = 1 * MiB
    max_header_bytes: Annotated[int, Range(32, 4 * KiB)] = 256
    max_body_bytes: Annotated[int, Range(1 * KiB, 64 * MiB)] = 1 * MiB
    max_ulen: Annotated[int, Range(1 * KiB, 256 * MiB)] = 4 * MiB
    # lz4 tops out near 255:1 (an adapter's all-zero layers get there); the absolute caps (max_ulen,
    # output bounded to the declared size) are what stop a bomb, this only refuses absurd declarations
    max_ratio: Annotated[int, Range(1, 1024)] = 256
    max_array_len: Annotated[int, Range(1, 1_000_000)] = 1024
    max_map_len: Annotated[int, Range(1, 1_000_000)] = 64
    compress_min_bytes: Annotated[int, Range(0, 1 * MiB)] = 512
    # semantic
    max_prompt_chars: Annotated[int, Range(1, 262_144)] = 32_768
    max_question_chars: Annotated[int, Range(1, 65_536)] = 4_000
    max_new_tokens: Annotated[int, Range(1, 4096)] = 256
    max_stop: Annotated[int, Range(0, 8)] = 4
    max_chunk_bytes: Annotated[int, Range(1 * KiB, 4 * MiB)] = 256 * KiB
    max_adapter_bytes: Annotated[int, Range(1 * KiB, 1024 * MiB)] = 64 * MiB

    def validate(self) -> None:
        if self.max_body_bytes > self.max_frame_bytes:
            raise FieldError("max_body_bytes", self.max_body_bytes, "must not exceed max_frame_bytes")
        if self.max_header_bytes > self.max_frame_bytes:
            raise FieldError("max_header_bytes", self.max_header_bytes, "must not exceed max_frame_bytes")
        if self.max_chunk_bytes + 256 > self.max_body_bytes:
            raise FieldError("max_chunk_bytes", self.max_chunk_bytes, "must fit in max_body_bytes with room")


DEFAULT_LIMITS = Limits()
