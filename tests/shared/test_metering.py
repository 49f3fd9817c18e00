"""Byte metering: the ZMTP 3 / CURVE framing model against hand-computed cases."""

from __future__ import annotations

import pytest

from shared.metering import (
    ByteMeter,
    Sample,
    handshake_bytes,
    message_wire_bytes,
    part_wire_bytes,
    zmtp_frame_bytes,
)


@pytest.mark.parametrize(("n", "wire"), [(0, 2), (1, 3), (255, 257), (256, 265), (10_000, 10_009)])
def test_zmtp_short_and_long_frames(n: int, wire: int) -> None:
    assert zmtp_frame_bytes(n) == wire


@pytest.mark.parametrize(
    ("n", "wire"),
    [
        (0, 35),  # 33 B of CURVE MESSAGE overhead + 2 B short frame header
        (222, 257),  # 222 + 33 = 255: still a short frame
        (223, 265),  # 256: long frame header (9 B)
        (5, 40),  # the signature frame
        (1000, 1042),
    ],
)
def test_curve_parts(n: int, wire: int) -> None:
    assert part_wire_bytes(n, "curve") == wire


def test_null_parts_have_no_crypto_overhead() -> None:
    assert part_wire_bytes(5, "null") == 7


def test_a_three_frame_message() -> None:
    # signature 5 B, header 22 B, body 300 B under CURVE: 40 + 57 + 342
    assert message_wire_bytes([5, 22, 300]) == 40 + 57 + 342
    assert message_wire_bytes([5, 22, 300], "null") == 7 + 24 + 309


def test_handshake_model() -> None:
    up, down = handshake_bytes()
    # client: greeting 64 + HELLO (200 + 2) + INITIATE (9+96+8+16+32+16+80 + 35 metadata = 292, + 9)
    assert up == 64 + 202 + 301
    # server: greeting 64 + WELCOME (168 + 2) + READY (6+8+16 + 35 = 65, + 2)
    assert down == 64 + 170 + 67
    assert handshake_bytes(mechanism="null") == (64 + 2 + 6 + 35, 64 + 2 + 6 + 35)


def test_meter_accumulates_per_tenant_direction_and_type() -> None:
    meter = ByteMeter()
    meter.record("t1", "in", "state", Sample.of(100, [5, 22, 60]))
    meter.record("t1", "in", "state", Sample.of(100, [5, 22, 60]))
    meter.record("t1", "out", "final", Sample.of(50, [5, 22, 20]))
    meter.record("t2", "in", "query", Sample.of(70, [5, 22, 40]))
    rows = dict((k.tenant + "/" + k.direction + "/" + k.type, c) for k, c in meter.rows())
    assert rows["t1/in/state"].messages == 2
    assert rows["t1/in/state"].payload == 200
    assert rows["t1/in/state"].compressed == 2 * 87
    assert rows["t1/in/state"].frame == 2 * message_wire_bytes([5, 22, 60])
    assert meter.total(tenant="t1").messages == 3
    assert meter.total(direction="in").payload == 270
    assert list(rows) == sorted(rows)


def test_negative_sizes_are_rejected() -> None:
    with pytest.raises(ValueError):
        zmtp_frame_bytes(-1)
