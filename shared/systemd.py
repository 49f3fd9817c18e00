"""systemd's notify protocol: one datagram per message to ``$NOTIFY_SOCKET`` (no libsystemd needed).

``READY=1`` once serving, ``WATCHDOG=1`` at half of ``$WATCHDOG_USEC`` from a task that checks real
progress, ``STATUS=...`` with live counters, ``STOPPING=1`` when shutting down, ``RELOADING=1`` on
SIGHUP. Outside systemd (no ``NOTIFY_SOCKET``) every call is a cheap no-op.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping


class Notifier:
    def __init__(self, env: Mapping[str, str]) -> None:
        path = env.get("NOTIFY_SOCKET", "")
        # A leading "@" names a socket in the abstract namespace (a leading NUL byte).
        self._address = "\0" + path[1:] if path.startswith("@") else path
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 else None
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines as one datagram. False if not under systemd or the send failed."""
        if not self._address:
            return False
        payload = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall(payload)
        except OSError:
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")
