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


def test_model_matches_the_kernels_byte_count_on_a_real_curve_connection() -> None:
    """The framing model is exact: a ROUTER's TCP_INFO bytes_received equals handshake + messages."""
    import os
    import socket
    import struct

    import zmq
    from zmq.utils.monitor import recv_monitor_message

    ctx = zmq.Context()
    server_pub, server_sec = zmq.curve_keypair()
    client_pub, client_sec = zmq.curve_keypair()
    router = ctx.socket(zmq.ROUTER)
    dealer = ctx.socket(zmq.DEALER)
    try:
        router.curve_server = True
        router.curve_secretkey = server_sec
        router.curve_publickey = server_pub
        port = router.bind_to_random_port("tcp://127.0.0.1")
        monitor = router.get_monitor_socket(zmq.EVENT_ACCEPTED)
        dealer.curve_serverkey = server_pub
        dealer.curve_publickey = client_pub
        dealer.curve_secretkey = client_sec
        dealer.connect(f"tcp://127.0.0.1:{port}")
        fd = recv_monitor_message(monitor)["value"]
        tcp = socket.socket(fileno=os.dup(fd))
        sizes = [[5, 22, 300], [5, 22, 10], [5, 40, 1000], [5, 22, 60_000]]
        for frames in sizes:
            dealer.send_multipart([b"x" * n for n in frames])
            router.recv_multipart()  # the bytes are in the kernel's count once the message is read
        raw = tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        received = struct.unpack_from("Q", raw, 128)[0]  # tcpi_bytes_received
        tcp.close()
        monitor.close(linger=0)
    finally:
        dealer.close(linger=0)
        router.close(linger=0)
        ctx.term()
    up, _ = handshake_bytes()
    assert received == up + sum(message_wire_bytes(f) for f in sizes)
