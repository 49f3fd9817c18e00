"""Issue 5's bandwidth target on real wire bytes: the codec's frames, CURVE framing and the acks.

The default 24 h trace (3 homes, seed 7) replayed through the compressor at the default 10 s tick;
every prompt is encoded as the uplink sends it and answered as the gateway answers it, and both are
charged what ZMTP + CURVE put on the TCP stream. The baseline is the full JSON state of every entity
every tick (JSON bytes alone, not even framed).
"""

from __future__ import annotations

import os

import pytest

from edge.compressor import CompressorSettings
from edge.fidelity import replay
from shared.metering import message_wire_bytes
from shared.protocol import encode, encode_result
from shared.protocol import messages as m
from shared.protocol.results import StateAck
from shared.scenario import generate


def wire_bytes(twin: str, prompts: list[tuple[str, str]]) -> int:
    total = 0
    for seq, (kind, text) in enumerate(prompts, start=1):
        up = m.StateUpload(twin, seq, 1_780_000_000_000 + 10_000 * seq, kind, text, "group")  # type: ignore[arg-type]
        ack = m.Final(up.TAG, encode_result(StateAck(seq)))
        for message in (up, ack):
            total += message_wire_bytes(encode(message, rid=os.urandom(16)).sizes.frames)
    return total


@pytest.fixture(scope="module")
def day() -> list[tuple[str, int, int, float]]:
    scenario = generate(7, 3, 86400.0)
    rows = []
    for home in range(3):
        result = replay(scenario, home, CompressorSettings(), 10.0, sample_every=20)
        prompts = [(p.kind, p.text) for p in result.prompts]
        rows.append((result.twin_id, wire_bytes(result.twin_id, prompts), result.baseline_bytes,
                     result.fidelity_stale.fraction))
    return rows


def test_default_trace_is_200x_smaller_on_the_wire(day: list[tuple[str, int, int, float]]) -> None:
    wire = sum(w for _, w, _, _ in day)
    baseline = sum(b for _, _, b, _ in day)
    assert baseline / wire >= 200, f"{baseline / wire:.0f}x"
    for twin, w, b, _ in day:
        assert b / w >= 150, f"{twin}: {b / w:.0f}x"  # the busiest home (solar, EV) still well above 100x


def test_fidelity_holds_at_that_rate(day: list[tuple[str, int, int, float]]) -> None:
    for twin, _, _, fidelity in day:
        assert fidelity >= 0.99, twin  # sampled just before each tick: the worst moment
