"""TCP_INFO read through a duplicate descriptor, on real loopback TCP sockets (no ZeroMQ)."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from shared.kernel_accounting import KernelAccounting
from shared.metrics import Registry
from shared.tcpinfo import (
    OFF_BYTES_RECEIVED,
    OFF_BYTES_SENT,
    TcpCounters,
    TcpHandle,
    control_octets,
    parse_tcp_info,
    read_tcp_info,
    tcp_info_of_fd,
)

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="Linux TCP_INFO")


def wait_for(condition: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Wait for kernel state that raises no event (an ACK arriving, libzmq closing its descriptor):
    a condition wait with a timeout, re-checking the condition every millisecond up to a deadline."""
    tick = threading.Event()  # never set: its wait is the timed condition wait
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        tick.wait(0.001)


def wait_readable(sock: socket.socket, limit_s: float = 10.0) -> None:
    """Block until ``sock`` is readable (data or the peer's FIN has arrived)."""
    ready, _, _ = select.select([sock], [], [], limit_s)
    if not ready:
        raise TimeoutError("socket never became readable")


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "peer closed early"
        data += chunk
    return data


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client, server) of one loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def test_counters_match_the_bytes_sent_both_ways(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    up, down = 70_001, 1_234
    client.sendall(b"u" * up)
    recv_exactly(server, up)
    server.sendall(b"d" * down)
    recv_exactly(client, down)
    wait_for(lambda: read_tcp_info(server).bytes_acked == down)  # the client's (delayed) ACK
    # the client's data was acknowledged by the segment that carried ``down``, already received
    c, s = read_tcp_info(client), read_tcp_info(server)
    assert s.bytes_received == up and c.bytes_received == down
    assert c.state == s.state == "established"
    # the connecting side's bytes_acked counts its SYN; bytes_sent counts data only
    assert c.bytes_acked == up + control_octets(c.state, connecting=True)[1]
    assert s.bytes_acked == down + control_octets(s.state, connecting=False)[1]
    assert c.bytes_sent == up and s.bytes_sent == down
    assert c.bytes_retrans == s.bytes_retrans == 0
    assert c.unacked == 0
    assert c.segs_out is not None and c.segs_out >= 3 and s.segs_in is not None and s.segs_in >= 3


def test_the_peers_fin_is_counted_and_told_apart(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    client.sendall(b"x" * 10)
    recv_exactly(server, 10)
    client.shutdown(socket.SHUT_WR)
    wait_readable(server)  # the FIN arrived: the server is in CLOSE_WAIT
    s = read_tcp_info(server)
    assert s.bytes_received == 11  # 10 bytes + the FIN's sequence octet
    assert control_octets(s.state, connecting=False) == (1, 0)
    wait_for(lambda: read_tcp_info(client).state == "fin_wait2")
    c = read_tcp_info(client)
    assert c.bytes_acked == 10 + 2  # SYN and FIN
    assert control_octets(c.state, connecting=True) == (0, 2)


def test_short_buffers_leave_later_fields_none() -> None:
    raw = bytearray(256)
    raw[0] = 1
    raw[OFF_BYTES_RECEIVED : OFF_BYTES_RECEIVED + 8] = (42).to_bytes(8, "little")
    full = parse_tcp_info(bytes(raw))
    assert full.bytes_received == 42 and full.bytes_sent == 0
    old_kernel = parse_tcp_info(bytes(raw[:OFF_BYTES_SENT]))  # a pre-4.19 struct
    assert old_kernel == TcpCounters("established", 0, 42, 0, 0, None, None)
    assert old_kernel.unacked is None
    assert parse_tcp_info(bytes(raw[:104])).bytes_acked is None
    with pytest.raises(ValueError):
        parse_tcp_info(b"")


def test_the_handle_never_closes_the_owners_descriptor(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    handle = TcpHandle.adopt(client.fileno())
    assert handle is not None
    assert handle.owned_by() and handle.local == "{}:{}".format(*client.getsockname())
    handle.close()
    handle.close()  # idempotent
    client.sendall(b"still open")
    assert recv_exactly(server, 10) == b"still open"
    counters = tcp_info_of_fd(client.fileno())
    assert counters is not None and counters.bytes_sent == 10
    client.sendall(b"!")
    assert recv_exactly(server, 1) == b"!"


def test_non_tcp_descriptors_are_refused() -> None:
    r, w = os.pipe()
    try:
        assert tcp_info_of_fd(r) is None and TcpHandle.adopt(w) is None
        os.write(w, b"ok")  # both ends still open
        assert os.read(r, 2) == b"ok"
    finally:
        os.close(r)
        os.close(w)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert TcpHandle.adopt(udp.fileno()) is None
    with socket.socket() as unconnected:
        assert TcpHandle.adopt(unconnected.fileno()) is None
    assert TcpHandle.adopt(r) is None  # closed by now


def test_a_held_connection_gives_an_exact_final_sample(pair: tuple[socket.socket, socket.socket]) -> None:
    """The owner closes its descriptor: the registry notices (descriptor gone), reads the socket
    through its duplicate one last time and only then lets the kernel close it."""
    client, server = pair
    kernel = KernelAccounting("t", "gateway", None, Registry(), tenant="home1")
    conn = kernel.open(server.fileno())
    assert conn is not None and kernel.open(server.fileno()) is conn  # idempotent
    kernel.count_message(conn.id, "home1", "in", 500)
    client.sendall(b"q" * 500)
    recv_exactly(server, 500)
    client.shutdown(socket.SHUT_WR)
    wait_readable(server)  # the FIN arrived: CLOSE_WAIT
    assert conn.handle.sample().state == "close_wait"
    fd = server.fileno()
    server.close()  # the owner lets go; our duplicate keeps the socket open
    with pytest.raises(BlockingIOError):
        client.recv(1, socket.MSG_DONTWAIT)  # so no FIN has reached the client yet
    kernel.lost(fd)
    assert conn.closed and conn.final == "exact" and kernel.live() == []
    assert conn.last is not None and conn.last.bytes_received == 501
    rec = kernel.reconcile_connection(conn)
    assert rec.inbound.control == 1
    assert rec.inbound.kernel == 501 and rec.inbound.model == kernel.handshake_in + 500
    assert rec.inbound.absolute == -kernel.handshake_in  # a plain socket has no ZMTP handshake
    client.settimeout(10)
    assert client.recv(1) == b""  # released: now the kernel sent our FIN


def test_a_message_adopts_its_connection_and_a_missed_disconnect_is_reaped() -> None:
    """No monitor at all: the first message's SRCFD adopts the connection (and attributes it), the
    reply goes back on it, and when ZeroMQ lets go the periodic reap still writes the close."""
    import zmq

    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    kernel = KernelAccounting("t", "gateway", None, Registry())
    try:
        port = router.bind_to_random_port("tcp://127.0.0.1")
        kernel.server_port = port
        dealer.connect(f"tcp://127.0.0.1:{port}")
        dealer.send(b"x" * 100)
        route, body = router.recv_multipart(copy=False)
        fd = body.get(zmq.SRCFD)
        conn = kernel.route_in(route.bytes, fd, "home1")
        assert conn is not None and conn.tenant == "home1" and kernel.inbound_conn == conn.id
        assert kernel.route_in(route.bytes, None, "home2") is conn and conn.tenant == "home1"  # first wins
        kernel.count_message(conn.id, "home1", "in", 100)
        router.send_multipart([route.bytes, b"y" * 10])
        kernel.route_out(route.bytes)
        assert kernel.outbound_conn == conn.id
        assert dealer.recv() == b"y" * 10
        dealer.close(linger=0)
        wait_for(lambda: not conn.handle.owned_by())  # libzmq closed its descriptor
        kernel.reap()
        assert conn.closed and conn.final == "exact" and conn.last is not None
        assert conn.last.state == "close_wait" and kernel.live() == []
        kernel.route_out(route.bytes)
        assert kernel.outbound_conn is None  # the routing id died with its connection
    finally:
        kernel.close_all()
        dealer.close(linger=0)
        router.close(linger=0)
        ctx.term()
