"""sd_notify datagrams on a real unix socket (path and abstract namespace)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from shared.systemd import Notifier


def receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_datagrams_on_a_path_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with receiver(path) as sock:
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000"})
        assert n.enabled and n.watchdog_s == 20.0
        assert n.ready("3 sources up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=3 sources up"
        assert n.watchdog() and sock.recv(4096) == b"WATCHDOG=1"
        assert n.stopping() and sock.recv(4096) == b"STOPPING=1"
        assert n.sent == 3


def test_abstract_namespace_socket() -> None:
    name = f"@llmtwin-test-{os.getpid()}"
    with receiver("\0" + name[1:]) as sock:
        assert Notifier({"NOTIFY_SOCKET": name}).status("syncing")
        assert sock.recv(4096) == b"STATUS=syncing"


def test_outside_systemd_is_a_no_op(tmp_path: Path) -> None:
    n = Notifier({})
    assert not n.enabled and n.watchdog_s is None and not n.ready()
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "missing")})
    assert not gone.watchdog()  # a vanished socket never raises into the daemon
