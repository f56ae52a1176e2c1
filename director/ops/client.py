"""The control socket's client side: one request, one answer, standard library only.

What ``lvsadm``, ``lvsd save`` and ``lvsd demo`` use to talk to a running director
(protocol in ``director.ops.control`` and docs/control.md). Kept apart from the server so
that a command-line client loads neither asyncio nor anything of the daemon.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

MAX_REQUEST = 64 * 1024
"""The longest request line a director reads, in bytes."""


class ControlError(RuntimeError):
    """A refused request: the server's error text and, for an IPVS refusal, its errno."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


def request(path: Path | str, cmd: str, timeout: float = 5.0, **args: object) -> object:
    """Send one request to a control socket and return its result; raises OSError or
    ControlError (a RuntimeError with the server's error text and errno)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    answer = json.loads(data)
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error")), int(answer.get("errno") or 0))
    return answer["result"]
