"""Kernel truth per TCP connection: Linux ``TCP_INFO`` read from a socket ZeroMQ owns.

``struct tcp_info`` (include/uapi/linux/tcp.h, 64-bit Linux) at the offsets this module reads::

    offset  field                 since
       0    tcpi_state (u8)
     120    tcpi_bytes_acked      4.1   RFC 4898 tcpEStatsAppHCThruOctetsAcked
     128    tcpi_bytes_received   4.1   RFC 4898 tcpEStatsAppHCThruOctetsReceived
     136    tcpi_segs_out (u32)   4.2
     140    tcpi_segs_in (u32)    4.2
     200    tcpi_bytes_sent       4.19  RFC 4898 tcpEStatsPerfHCDataOctetsOut (retransmissions included)
     208    tcpi_bytes_retrans    4.19  RFC 4898 tcpEStatsPerfOctetsRetrans

The kernel copies ``min(optlen, sizeof(struct tcp_info))`` bytes, so a field the running kernel does
not have lies beyond the returned length and is reported as None, never as 0.

The counters run in TCP *sequence space*, which holds two octets that are not stream bytes: the
SYN (the connecting side's ``bytes_acked`` counts it once the SYN-ACK arrives; the accepting side's
child socket starts past it) and the FIN (``bytes_received`` counts the peer's FIN, ``bytes_acked``
our own once it is acknowledged). :func:`control_octets` says how many of them a sample holds, from
the connection's state, so the stream bytes can be compared with a byte model exactly.

ZeroMQ owns its TCP file descriptors and closes them on its I/O thread whenever it likes, and then
reuses the numbers. :class:`TcpHandle` therefore never reads through ZeroMQ's descriptor: it
``os.dup``s it once (the duplicate refers to the same open socket for as long as we keep it) and
reads ``TCP_INFO`` through the duplicate. Keeping the duplicate keeps the socket open after ZeroMQ
closes its descriptor, so the last sample of a connection is exact (nothing can have been missed
after it); the holder must release it as soon as ZeroMQ has let go (:meth:`TcpHandle.owned_by`
compares the socket's inode with whatever ZeroMQ's descriptor number refers to now), because until
then the kernel does not send our FIN.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from dataclasses import dataclass

TCP_INFO_LEN = 256  # more than any kernel's struct tcp_info needs for the fields below

_U64 = struct.Struct("=Q")
_U32 = struct.Struct("=I")
OFF_BYTES_ACKED = 120
OFF_BYTES_RECEIVED = 128
OFF_SEGS_OUT = 136
OFF_SEGS_IN = 140
OFF_BYTES_SENT = 200
OFF_BYTES_RETRANS = 208

# include/net/tcp_states.h
TCP_STATES = {
    1: "established",
    2: "syn_sent",
    3: "syn_recv",
    4: "fin_wait1",
    5: "fin_wait2",
    6: "time_wait",
    7: "close",
    8: "close_wait",
    9: "last_ack",
    10: "listen",
    11: "closing",
}
STATE_CODES = {name: code for code, name in TCP_STATES.items()}
_PEER_FIN_SEEN = frozenset({"close_wait", "last_ack", "closing", "time_wait"})
_OWN_FIN_ACKED = frozenset({"fin_wait2", "time_wait"})
_SYN_ACKED = frozenset({"established", "fin_wait1", "fin_wait2", "time_wait", "close_wait", "last_ack", "closing"})


@dataclass(frozen=True, slots=True)
class TcpCounters:
    """One ``TCP_INFO`` reading; None where the running kernel does not fill the field."""

    state: str
    bytes_acked: int | None
    bytes_received: int | None
    segs_out: int | None
    segs_in: int | None
    bytes_sent: int | None
    bytes_retrans: int | None

    @property
    def unacked(self) -> int | None:
        """Stream bytes handed to the network but not acknowledged yet (needs kernel >= 4.19)."""
        if self.bytes_sent is None or self.bytes_retrans is None or self.bytes_acked is None:
            return None
        return max(0, self.bytes_sent - self.bytes_retrans - self.bytes_acked)


def parse_tcp_info(raw: bytes) -> TcpCounters:
    """The fields this project uses from a ``struct tcp_info`` buffer as the kernel returned it."""
    if not raw:
        raise ValueError("empty tcp_info")

    def u64(offset: int) -> int | None:
        return _U64.unpack_from(raw, offset)[0] if len(raw) >= offset + 8 else None

    def u32(offset: int) -> int | None:
        return _U32.unpack_from(raw, offset)[0] if len(raw) >= offset + 4 else None

    return TcpCounters(
        state=TCP_STATES.get(raw[0], f"unknown_{raw[0]}"),
        bytes_acked=u64(OFF_BYTES_ACKED),
        bytes_received=u64(OFF_BYTES_RECEIVED),
        segs_out=u32(OFF_SEGS_OUT),
        segs_in=u32(OFF_SEGS_IN),
        bytes_sent=u64(OFF_BYTES_SENT),
        bytes_retrans=u64(OFF_BYTES_RETRANS),
    )


def read_tcp_info(sock: socket.socket) -> TcpCounters:
    """``TCP_INFO`` of a TCP socket. OSError if it is not one (or the platform has no TCP_INFO)."""
    return parse_tcp_info(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_LEN))


def tcp_info_of_fd(fd: int) -> TcpCounters | None:
    """One reading through a duplicate of ``fd`` (never closes ``fd`` itself); None if it is no TCP socket."""
    handle = TcpHandle.adopt(fd)
    if handle is None:
        return None
    try:
        return handle.sample()
    except OSError:
        return None
    finally:
        handle.close()


def control_octets(state: str, *, connecting: bool) -> tuple[int, int]:
    """(received, acked): how many SYN/FIN octets a sample in ``state`` counts, for the side that
    connected (``connecting``) or accepted. Subtract them to get stream bytes."""
    received = 1 if state in _PEER_FIN_SEEN else 0
    acked = (1 if connecting and state in _SYN_ACKED else 0) + (1 if state in _OWN_FIN_ACKED else 0)
    return received, acked


def format_address(addr: object) -> str:
    """``ip:port`` (``[ip]:port`` for IPv6) from a getsockname/getpeername result."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = str(addr[0]), int(addr[1])
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(addr)


def _identity(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class TcpHandle:
    """A duplicate of a TCP socket's descriptor, for reading ``TCP_INFO`` without touching the owner's.

    Keep it while the owner (ZeroMQ) uses the connection, :meth:`close` it as soon as the owner has
    let go (:meth:`owned_by` turns False): until then the socket stays open in the kernel.
    """

    def __init__(self, sock: socket.socket, fd: int, identity: tuple[int, int], local: str, peer: str) -> None:
        self._sock: socket.socket | None = sock
        self.fd = fd  # the owner's descriptor number (may be closed and reused later)
        self.identity = identity  # (st_dev, st_ino) of the socket
        self.local = local
        self.peer = peer

    @classmethod
    def adopt(cls, fd: int) -> TcpHandle | None:
        """Duplicate ``fd`` if it is a connected TCP socket now; None otherwise (closed, not TCP, not
        connected). ``fd`` itself is never closed."""
        try:
            dup = os.dup(fd)
        except OSError:
            return None
        try:
            sock = socket.socket(fileno=dup)  # owns the duplicate from here on
        except OSError:
            os.close(dup)
            return None
        try:
            if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
                raise OSError("not a TCP socket")
            identity = _identity(sock.fileno())
            if identity is None:
                raise OSError("fstat failed")
            local, peer = format_address(sock.getsockname()), format_address(sock.getpeername())
        except OSError:
            sock.close()
            return None
        return cls(sock, fd, identity, local, peer)

    @property
    def closed(self) -> bool:
        return self._sock is None

    def owned_by(self, fd: int | None = None) -> bool:
        """Whether descriptor ``fd`` (default: the one adopted) still refers to this very socket."""
        return _identity(self.fd if fd is None else fd) == self.identity

    def sample(self) -> TcpCounters:
        if self._sock is None:
            raise OSError("handle closed")
        return read_tcp_info(self._sock)

    def close(self) -> None:
        """Close the duplicate (never the owner's descriptor)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
