"""The control socket: a Unix stream socket, root only, one JSON request per line.

Protocol (documented for clients such as ``lvsadm`` and ``lvsd demo``): the client
sends one line ``{"cmd": NAME, ...}`` and reads one line back, ``{"ok": true,
"result": ...}`` or ``{"ok": false, "error": "..."}``; it may send more requests on
the same connection. ``status`` (services, destinations, counters) is always
there; the director adds the operator's commands (``director.ops.admin``). A refused
operation answers ``{"ok": false, "error": "...", "errno": N}`` with the errno the
kernel's ip_vs_ctl.c would have returned, so that clients word it as ipvsadm does.
The full protocol is in docs/control.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from director.errors import DirectorError
from director.ops.client import MAX_REQUEST

log = logging.getLogger(__name__)


class Controlled(Protocol):
    def snapshot(self) -> dict[str, object]: ...


Handler = Callable[[Mapping[str, Any]], object]


class ControlServer:
    """Serves the control protocol for one director. Event-loop thread only."""

    def __init__(
        self, path: Path, target: Controlled, commands: Mapping[str, Handler] | None = None
    ) -> None:
        self.path = path
        self._target = target
        self._commands: dict[str, Handler] = {"status": lambda req: target.snapshot()}
        self._commands.update(commands or {})
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o077)  # root only: the socket is created 0600
        try:
            self._server = await asyncio.start_unix_server(
                self._client, path=str(self.path), limit=MAX_REQUEST
            )
        finally:
            os.umask(old)

    async def serve(self) -> None:
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            self.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(json.dumps(self._answer(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError):
            pass  # a client that hangs up or overruns the line limit
        finally:
            writer.close()

    def _answer(self, line: bytes) -> dict[str, object]:
        try:
            req = json.loads(line)
        except ValueError as e:
            return {"ok": False, "error": f"bad request: {e}"}
        cmd = req.get("cmd") if isinstance(req, dict) else None
        handler = self._commands.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            names = ", ".join(sorted(self._commands))
            return {"ok": False, "error": f"unknown command {cmd!r}; expected one of: {names}"}
        try:
            return {"ok": True, "result": handler(req)}
        except DirectorError as e:
            # IPVSError and ConfigError: refusals the client reports; anything else
            # is a bug and reaches the TaskGroup.
            return {"ok": False, "error": str(e), "errno": getattr(e, "errno", 0)}
