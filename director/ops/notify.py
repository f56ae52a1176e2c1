"""systemd's sd_notify protocol: tell the service manager when lvsd is ready, reloading, stopping.

The socket path comes from ``NOTIFY_SOCKET`` read once at start-up; without it
every call is a no-op. An address starting with ``@`` is in the abstract namespace.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends ``KEY=VALUE`` lines to the service manager. Never raises on send failure."""

    def __init__(self, path: str | None) -> None:
        self._addr: str | bytes | None = None
        if path:
            self._addr = b"\0" + path[1:].encode() if path.startswith("@") else path

    @classmethod
    def from_environment(cls) -> Notifier:
        return cls(os.environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self._addr is not None

    def send(self, *lines: str) -> bool:
        """Send one datagram of newline-separated assignments; False if nobody listened."""
        if self._addr is None:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            try:
                s.sendto("\n".join(lines).encode(), self._addr)
            except OSError:
                return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        return self.send("RELOADING=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")
