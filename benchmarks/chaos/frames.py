"""One hostile message and what the gateway must do with it; builders for hand-made frames.

Outcomes (``Expect.kind``):

- ``error``       an ERROR reply for the message's rid with this stable ``code`` (the header was sound);
- ``drop``        no reply (no trustworthy rid) and ``llmtwin_gateway_dropped_total{tenant,code}`` + 1;
- ``disconnect``  libzmq refuses the message (a frame above ZMQ_MAXMSGSIZE) and closes the connection:
                  nothing reaches Python, the client reconnects and is served;
- ``served``      a sound message in an odd shape: answered normally (``code``: the reply type name).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import lz4.frame
import msgpack
import zmq

from shared.protocol import messages as m
from shared.protocol.messages import type_name

if TYPE_CHECKING:
    from benchmarks.chaos.arena import Arena, Kind

SIG = b"LTW1"


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def head(rid: bytes, **fields: Any) -> bytes:
    return pack({"rid": rid, **fields})


def frame(tag: int, header: bytes, body: bytes, *, sig: bytes = SIG, hlen: int | None = None) -> bytes:
    """A frame as the codec lays it out; ``hlen`` may lie about the header's length."""
    size = len(header) if hlen is None else hlen
    return sig + bytes([tag]) + size.to_bytes(2, "big") + header + body


def raw(tag: int, body_obj: Any, **fields: Any) -> Callable[[bytes], list[bytes]]:
    """A builder: a raw-codec message with this body object and extra header fields."""
    return lambda rid: [frame(tag, head(rid, **fields), pack(body_obj))]


def lz4_body(data: bytes) -> bytes:
    return lz4.frame.compress(data, store_size=False)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Expect:
    kind: Kind
    code: str  # the ERROR code, the drop counter's code, or the reply type name when served


@dataclass(frozen=True, slots=True)
class FrameCase:
    name: str
    group: str
    build: Callable[[bytes], list[bytes]]  # rid → the message's parts
    expect: Expect

    @property
    def expected(self) -> str:
        return f"{self.expect.kind} {self.expect.code}"

    async def run(self, arena: Arena) -> str | None:
        rid = os.urandom(16)
        kind, code = self.expect.kind, self.expect.code
        probe = arena.attacker
        assert probe is not None
        before = await arena.rig.dropped("home1", code) if kind == "drop" else 0.0
        disconnects = probe.events[zmq.EVENT_DISCONNECTED]
        await probe.send(self.build(rid))
        if kind == "disconnect":
            await probe.wait_event(zmq.EVENT_DISCONNECTED, disconnects + 1)
            await probe.barrier()  # the DEALER reconnected on its own and is served again
            return None if not probe.replies.get(rid) else "the oversized message was answered"
        if kind == "drop":
            await probe.barrier()
            if probe.replies.get(rid):
                return f"answered {type_name(probe.replies[rid][0])} instead of dropping"
            after = await arena.rig.dropped("home1", code)
            return None if after == before + 1 else f"dropped_total{{code={code}}} went {before:g} → {after:g}"
        reply = await probe.wait(rid)
        if kind == "served":
            return None if type_name(reply) == code else f"got {_show(reply)}"
        if isinstance(reply, m.Error) and reply.code == code:
            return None
        return f"got {_show(reply)}"


def _show(reply: m.Message) -> str:
    if isinstance(reply, m.Error):
        return f"error {reply.status} {reply.code}"
    return type_name(reply)
