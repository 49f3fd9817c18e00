"""The LLM-Twin wire protocol: typed messages, strict codec, limits. See codec.py for the format."""

from shared.protocol.codec import (
    CODEC_LZ4,
    CODEC_RAW,
    Encoded,
    Envelope,
    FrameSizes,
    Header,
    decode,
    decode_result,
    encode,
    encode_result,
    pack_body,
    peek_rid,
    unpack_body,
)
from shared.protocol.limits import DEFAULT_LIMITS, Limits
from shared.protocol.messages import BY_TAG, REPLIES, REQUESTS, Message, type_name

__all__ = [
    "BY_TAG",
    "CODEC_LZ4",
    "CODEC_RAW",
    "DEFAULT_LIMITS",
    "REPLIES",
    "REQUESTS",
    "Encoded",
    "Envelope",
    "FrameSizes",
    "Header",
    "Limits",
    "Message",
    "decode",
    "decode_result",
    "encode",
    "encode_result",
    "pack_body",
    "peek_rid",
    "type_name",
    "unpack_body",
]
