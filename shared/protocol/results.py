"""Per-command result structs carried inside a FINAL reply (``Final.result``).

A FINAL names the command it answers (``kind`` = the request's TAG); the result bytes are the
msgpack form of the struct registered for that command here and are decoded with the same strict
rules as every other body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from shared.protocol import messages as m
from shared.typed import Length, Range

U32 = m.U32
U63 = m.U63


@dataclass(frozen=True, slots=True)
class HelloResult:
    twin_id: m.TwinId
    tenant: Annotated[str, Length(1, 64)]
    base_fingerprint: Annotated[str, Length(0, 64)]
    adapter_version: U32 = 0  # 0: the gateway serves no adapter for this twin yet
    last_state_seq: Annotated[int, Range(-1, 2**63 - 1)] = -1
    server_ms: U63 = 0


@dataclass(frozen=True, slots=True)
class StateAck:
    """Kept small: one of these answers every state prompt (the rid names the request)."""

    seq: U63
    stored: bool = True  # False: this seq was already held (a duplicate)


@dataclass(frozen=True, slots=True)
class UploadStatus:
    upload_id: m.Rid
    received: Annotated[int, Range(0, 2**40)]  # contiguous bytes held: resume from here
    complete: bool = False
    version: U32 = 0  # the version now active once complete


@dataclass(frozen=True, slots=True)
class PromptRef:
    """One state prompt used as context for an answer."""

    twin_id: m.TwinId
    seq: U63
    ts_ms: U63


@dataclass(frozen=True, slots=True)
class Aggregate:
    """A deterministic value computed from shared prompts (e.g. average brightness)."""

    name: Annotated[str, Length(1, 128)]
    value: float
    unit: Annotated[str, Length(0, 16)] = ""
    n: U32 = 0


@dataclass(frozen=True, slots=True)
class QueryResult:
    answer: Annotated[str, Length(0, 65_536)]
    twin_id: m.TwinId
    adapter_version: U32 = 0
    used: Annotated[tuple[PromptRef, ...], Length(0, 1024)] = ()
    aggregates: Annotated[tuple[Aggregate, ...], Length(0, 64)] = ()
    finish: Annotated[str, Length(0, 16)] = "stop"
    # True: the base model alone answered a question about the state although ``adapter_version`` is in
    # service, because that adapter read the device's held-out state questions worse (gateway.handlers)
    base_only: bool = False


@dataclass(frozen=True, slots=True)
class TypeCounters:
    type: Annotated[str, Length(1, 32)]
    direction: Annotated[str, Length(1, 8)]
    messages: U63 = 0
    payload: U63 = 0
    compressed: U63 = 0
    frame: U63 = 0


@dataclass(frozen=True, slots=True)
class StatsResult:
    tenant: Annotated[str, Length(1, 64)]
    counters: Annotated[tuple[TypeCounters, ...], Length(0, 256)] = ()
    adapter_versions: Annotated[dict[str, U32], Length(0, 1024)] = field(default_factory=dict)


RESULT_FOR: dict[int, type] = {
    m.Hello.TAG: HelloResult,
    m.StateUpload.TAG: StateAck,
    m.AdapterBegin.TAG: UploadStatus,
    m.AdapterChunk.TAG: UploadStatus,
    m.AdapterCommit.TAG: UploadStatus,
    m.Query.TAG: QueryResult,
    m.InterQuery.TAG: QueryResult,
    m.Stats.TAG: StatsResult,
}
