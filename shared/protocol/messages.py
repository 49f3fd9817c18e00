"""Typed wire messages. Each class is one message body; ``TAG`` is its command byte.

Requests travel edge → gateway (DEALER → ROUTER), replies gateway → edge. Field limits here are
hard schema caps (checked while decoding, before the object exists); the configurable semantic
limits (a gateway may allow fewer tokens than the schema) are checked by ``check(limits)``.

Identity is never a field: the gateway takes the tenant from the CURVE key (ZAP User-Id). Messages
name a *twin* (one tenant may own several twins); the gateway checks that the tenant owns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from shared.errors import SemanticError, TooLarge
from shared.protocol.limits import Limits
from shared.typed import Length, Pattern, Range

# A twin id is used in file names and SQL: no path characters, no spaces.
TWIN_ID_RE = r"[a-z0-9][a-z0-9_.-]{0,63}"
TwinId = Annotated[str, Length(1, 64), Pattern(TWIN_ID_RE)]
Rid = Annotated[bytes, Length(16, 16)]
Sha256Hex = Annotated[str, Length(64, 64), Pattern(r"[0-9a-f]{64}")]
U32 = Annotated[int, Range(0, 2**32 - 1)]
U63 = Annotated[int, Range(0, 2**63 - 1)]
Share = Literal["private", "group", "region"]


class Message:
    """Base of every body struct. Subclasses are frozen dataclasses with a unique ``TAG``."""

    TAG: ClassVar[int]

    def check(self, limits: Limits) -> None:
        """Semantic limits beyond the schema. Raises SemanticError or TooLarge."""


# ------------------------------------------------------------------------------------------------
# requests (edge → gateway)


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """Registration: which twin this connection speaks for and what the device runs."""

    TAG: ClassVar[int] = 0x01
    twin_id: TwinId
    software: Annotated[str, Length(1, 64)]
    profile: Annotated[str, Length(0, 64)] = ""
    base_fingerprint: Annotated[str, Length(0, 64)] = ""
    entities: Annotated[int, Range(0, 1_000_000)] = 0


@dataclass(frozen=True, slots=True)
class StateUpload(Message):
    """One semantic state prompt: a keyframe (full state) or a delta since the previous prompt."""

    TAG: ClassVar[int] = 0x02
    twin_id: TwinId
    seq: U63
    ts_ms: U63
    kind: Literal["key", "delta"]
    text: Annotated[str, Length(0, 262_144)]
    share: Share = "private"

    def check(self, limits: Limits) -> None:
        if not self.text.strip():
            raise SemanticError("text: empty state prompt")
        if len(self.text) > limits.max_prompt_chars:
            raise TooLarge(f"text: {len(self.text)} chars > limit {limits.max_prompt_chars}")


@dataclass(frozen=True, slots=True)
class AdapterBegin(Message):
    """Start (or resume) a chunked adapter upload. ``manifest`` is the manifest JSON, as bytes."""

    TAG: ClassVar[int] = 0x03
    twin_id: TwinId
    version: Annotated[int, Range(1, 2**31 - 1)]
    size: Annotated[int, Range(1, 2**40)]
    sha256: Sha256Hex
    manifest: Annotated[bytes, Length(2, 65_536)]

    def check(self, limits: Limits) -> None:
        if self.size > limits.max_adapter_bytes:
            raise TooLarge(f"size: {self.size} B > limit {limits.max_adapter_bytes} B")


@dataclass(frozen=True, slots=True)
class AdapterChunk(Message):
    """Bytes of an upload at an absolute offset (resumable: resend from the acknowledged offset)."""

    TAG: ClassVar[int] = 0x04
    upload_id: Rid
    offset: Annotated[int, Range(0, 2**40)]
    data: Annotated[bytes, Length(1, 4 << 20)]

    def check(self, limits: Limits) -> None:
        if len(self.data) > limits.max_chunk_bytes:
            raise TooLarge(f"data: {len(self.data)} B > limit {limits.max_chunk_bytes} B")


@dataclass(frozen=True, slots=True)
class AdapterCommit(Message):
    """Finish an upload: the gateway verifies and activates the new version."""

    TAG: ClassVar[int] = 0x05
    upload_id: Rid


@dataclass(frozen=True, slots=True)
class Query(Message):
    """Ask a twin: its adapter + its latest state prompts as context + the question.

    ``context = "none"`` asks the adapter alone, in exactly the prompt its fine-tuning used
    (``shared.templates.query_messages``): questions about static facts, which live only in the adapter.
    """

    TAG: ClassVar[int] = 0x06
    twin_id: TwinId
    question: Annotated[str, Length(0, 65_536)]
    max_new_tokens: Annotated[int, Range(-(2**31), 2**31)] = 64
    temperature: Annotated[float, Range(0.0, 2.0)] = 0.0
    top_p: Annotated[float, Range(0.0, 1.0)] = 1.0
    seed: U63 = 0
    stop: Annotated[tuple[Annotated[str, Length(1, 64)], ...], Length(0, 8)] = ()
    context: Literal["state", "none"] = "state"

    def check(self, limits: Limits) -> None:
        _check_question(self.question, self.max_new_tokens, self.stop, limits)
        if self.temperature > 0.0 and self.top_p <= 0.0:
            raise SemanticError("top_p: must be > 0 when sampling")


@dataclass(frozen=True, slots=True)
class InterQuery(Message):
    """Ask a twin with other twins' shared prompts (same group or region) as quoted context."""

    TAG: ClassVar[int] = 0x07
    twin_id: TwinId
    question: Annotated[str, Length(0, 65_536)]
    scope: Literal["group", "region"] = "group"
    max_new_tokens: Annotated[int, Range(-(2**31), 2**31)] = 64
    temperature: Annotated[float, Range(0.0, 2.0)] = 0.0
    top_p: Annotated[float, Range(0.0, 1.0)] = 1.0
    seed: U63 = 0
    stop: Annotated[tuple[Annotated[str, Length(1, 64)], ...], Length(0, 8)] = ()

    def check(self, limits: Limits) -> None:
        _check_question(self.question, self.max_new_tokens, self.stop, limits)


def _check_question(question: str, max_new_tokens: int, stop: tuple[str, ...], limits: Limits) -> None:
    if not question.strip():
        raise SemanticError("question: empty")
    if len(question) > limits.max_question_chars:
        raise TooLarge(f"question: {len(question)} chars > limit {limits.max_question_chars}")
    if not 1 <= max_new_tokens <= limits.max_new_tokens:
        raise SemanticError(f"max_new_tokens: must be in [1, {limits.max_new_tokens}]")
    if len(stop) > limits.max_stop:
        raise SemanticError(f"stop: at most {limits.max_stop} stop strings")


@dataclass(frozen=True, slots=True)
class Fetch(Message):
    """Ask again for the reply of an earlier request (after a reconnect)."""

    TAG: ClassVar[int] = 0x08
    target: Rid


@dataclass(frozen=True, slots=True)
class Ping(Message):
    TAG: ClassVar[int] = 0x09
    sent_ms: U63 = 0


@dataclass(frozen=True, slots=True)
class Stats(Message):
    """The caller's own counters (bytes, requests, adapter versions) as the gateway sees them."""

    TAG: ClassVar[int] = 0x0A
    twin_id: Annotated[str, Length(0, 64)] = ""


# ------------------------------------------------------------------------------------------------
# replies (gateway → edge)


@dataclass(frozen=True, slots=True)
class Accounting:
    """What a request cost, as the gateway billed it (executed and billed once per rid)."""

    bytes_in: U63 = 0
    bytes_out: U63 = 0
    tokens_in: U32 = 0
    tokens_out: U32 = 0


@dataclass(frozen=True, slots=True)
class Accepted(Message):
    """The request is queued; a FINAL (or ERROR) follows with the same rid."""

    TAG: ClassVar[int] = 0x81
    replayed: bool = False
    queue_depth: U32 = 0


@dataclass(frozen=True, slots=True)
class Partial(Message):
    """A streamed piece of an answer."""

    TAG: ClassVar[int] = 0x82
    index: U32
    text: Annotated[str, Length(0, 65_536)]


@dataclass(frozen=True, slots=True)
class Final(Message):
    """The outcome of a request. ``result`` is the per-command result struct, msgpack-encoded."""

    TAG: ClassVar[int] = 0x83
    kind: Annotated[int, Range(0, 255)]
    result: Annotated[bytes, Length(0, 4 << 20)] = b""
    replayed: bool = False
    acct: Accounting = Accounting()


@dataclass(frozen=True, slots=True)
class Error(Message):
    """A failed request. ``code`` is stable (see shared.errors); ``detail`` never echoes input."""

    TAG: ClassVar[int] = 0x84
    status: Annotated[int, Range(400, 599)]
    code: Annotated[str, Length(1, 48), Pattern(r"[a-z][a-z0-9_]*")]
    detail: Annotated[str, Length(0, 256)] = ""
    retry_after_ms: U32 = 0
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Pong(Message):
    TAG: ClassVar[int] = 0x85
    sent_ms: U63 = 0
    server_ms: U63 = 0


REQUESTS: tuple[type[Message], ...] = (
    Hello,
    StateUpload,
    AdapterBegin,
    AdapterChunk,
    AdapterCommit,
    Query,
    InterQuery,
    Fetch,
    Ping,
    Stats,
)
REPLIES: tuple[type[Message], ...] = (Accepted, Partial, Final, Error, Pong)
BY_TAG: dict[int, type[Message]] = {cls.TAG: cls for cls in REQUESTS + REPLIES}
# Message type names used in metering, logs and metrics labels.
TYPE_NAMES: dict[type[Message], str] = {
    Hello: "hello", StateUpload: "state", AdapterBegin: "adapter_begin", AdapterChunk: "adapter_chunk",
    AdapterCommit: "adapter_commit", Query: "query", InterQuery: "inter_query", Fetch: "fetch",
    Ping: "ping", Stats: "stats", Accepted: "accepted", Partial: "partial", Final: "final",
    Error: "error", Pong: "pong",
}


def type_name(message: Message | type[Message]) -> str:
    cls = message if isinstance(message, type) else type(message)
    return TYPE_NAMES[cls]
