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
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from director.errors import DirectorError
from director.ops.client import MAX_REQUEST

log = logging.getLogger(__name__)

# A client that sends no complete line for this long is hung up on: an idle client
# holds a descriptor the probes may need.
IDLE_TIMEOUT_S = 10.0
MAX_CLIENTS = 64


# A big answer (a listing of 4,000 destinations, a million connections) is built and
# encoded this many seconds at a time, the event loop running in between.
SLICE_S = 0.005
# Between slices: a real (if short) sleep, so that the loop polls its descriptors and
# runs its timers. Under uvloop a zero sleep can leave both waiting for many slices.
PAUSE_S = 0.0005


class Sliced:
    """A result too big to build in one go: JSON ``prefix``, then ``items`` encoded as
    a comma-separated sequence, then ``suffix``. The server iterates ``items`` in slices
    of ``SLICE_S`` seconds, letting the event loop run between them."""

    __slots__ = ("items", "prefix", "suffix")

    def __init__(self, prefix: str, items: Iterator[object], suffix: str) -> None:
        self.prefix = prefix
        self.items = items
        self.suffix = suffix

    async def encode(self) -> str:
        """The result as JSON text, built in slices."""
        parts: list[bytes] = []
        await self.write(parts.append)
        return b"".join(parts).decode()

    async def write(self, out: Callable[[bytes], object]) -> None:
        """Hand the result's JSON text to ``out`` chunk by chunk (a transport's write):
        never joined into one string, which for a million connections would be a copy of
        hundreds of megabytes on the event loop."""
        out(self.prefix.encode())
        batch: list[object] = []
        first = True
        deadline = time.perf_counter() + SLICE_S
        for item in self.items:
            batch.append(item)
            late = time.perf_counter() >= deadline
            if len(batch) >= 256 or late:
                out((b"" if first else b",") + json.dumps(batch)[1:-1].encode())
                first = False
                batch.clear()
            if late:
                await asyncio.sleep(PAUSE_S)
                deadline = time.perf_counter() + SLICE_S
        if batch:
            out((b"" if first else b",") + json.dumps(batch)[1:-1].encode())
        out(self.suffix.encode())


class Controlled(Protocol):
    def snapshot(self) -> dict[str, object]: ...


Handler = Callable[[Mapping[str, Any]], object]


class ControlServer:
    """Serves the control protocol for one director. Event-loop thread only.

    At most ``max_clients`` clients at once (one more is told so and hung up on), each
    hung up on after ``idle_timeout`` seconds without a complete request. Every request
    gets an answer: a malformed one (not JSON, nested too deep, longer than
    ``MAX_REQUEST``) an error, after which the connection goes on.
    """

    def __init__(
        self,
        path: Path,
        target: Controlled,
        commands: Mapping[str, Handler] | None = None,
        *,
        max_clients: int = MAX_CLIENTS,
        idle_timeout: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.path = path
        self._target = target
        self._commands: dict[str, Handler] = {"status": lambda req: target.snapshot()}
        self._commands.update(commands or {})
        self._server: asyncio.Server | None = None
        self.max_clients = max_clients
        self.idle_timeout = idle_timeout
        self._clients = 0
        self.refused = 0
        # ``{"cmd": "takeover"}`` (docs/control.md): given the connection's reader and
        # writer and the request, it owns the connection until it returns.
        self.takeover: Callable[[asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]],
                                Awaitable[None]] | None = None  # fmt: skip

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on ``path``; DirectorError naming ``control_socket`` if that is not
        possible, or if another live process serves it (a stale socket is replaced).
        With ``sock``, serve that listening socket instead (handed over by a takeover)."""
        where = f"control_socket {self.path}"
        if sock is not None:
            self._server = await asyncio.start_unix_server(
                self._client, sock=sock, limit=MAX_REQUEST
            )
            return
        if _served(self.path):
            raise DirectorError(f"{where}: another lvsd is serving it; refusing to start")
        try:
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
        except OSError as e:
            reason = os.strerror(e.errno) if e.errno else str(e)
            raise DirectorError(f"{where}: cannot listen: {reason}") from None

    async def serve(self) -> None:
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            self.close()

    def listener_fd(self) -> int:
        """The listening socket's descriptor (to hand over); -1 when not listening."""
        if self._server is None or not self._server.sockets:
            return -1
        return int(self._server.sockets[0].fileno())

    def close(self, *, unlink: bool = True) -> None:
        """Stop listening; ``unlink=False`` leaves the path to the process it was handed to."""
        if self._server is not None:
            self._server.close()
            self._server = None
            if unlink:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= self.max_clients:
            self.refused += 1
            writer.write(_encode({"ok": False, "error": "too many control clients; try again"}))
            writer.close()
            return
        self._clients += 1
        try:
            while True:
                async with asyncio.timeout(self.idle_timeout):
                    line = await _read_line(reader)
                if line is None:
                    break
                if self.takeover is not None and (req := _takeover_request(line)) is not None:
                    await self.takeover(reader, writer, req)
                    break
                answer = self._answer(line) if line else _TOO_LONG
                if isinstance(answer, Sliced):
                    writer.write(b'{"ok": true, "result": ')
                    await answer.write(writer.write)
                    writer.write(b"}\n")
                else:
                    writer.write(_encode(answer))
                await writer.drain()
        except (ConnectionError, TimeoutError):
            pass  # a client that hangs up, or stays silent
        finally:
            self._clients -= 1
            writer.close()

    def _answer(self, line: bytes) -> dict[str, object] | Sliced:
        try:
            req = json.loads(line)
        except (ValueError, RecursionError) as e:
            # RecursionError: nesting deeper than the parser's stack.
            reason = "nested too deep" if isinstance(e, RecursionError) else str(e)
            return {"ok": False, "error": f"bad request: {reason}"}
        cmd = req.get("cmd") if isinstance(req, dict) else None
        handler = self._commands.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            names = ", ".join(sorted(self._commands))
            return {"ok": False, "error": f"unknown command {cmd!r}; expected one of: {names}"}
        try:
            result = handler(req)
            return result if isinstance(result, Sliced) else {"ok": True, "result": result}
        except DirectorError as e:
            # IPVSError and ConfigError: refusals the client reports; anything else
            # is a bug and reaches the TaskGroup.
            return {"ok": False, "error": str(e), "errno": getattr(e, "errno", 0)}


_TOO_LONG: dict[str, object] = {
    "ok": False,
    "error": f"bad request: longer than {MAX_REQUEST} bytes",
}


def _takeover_request(line: bytes) -> dict[str, Any] | None:
    if b"takeover" not in line:
        return None
    try:
        req = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return req if isinstance(req, dict) and req.get("cmd") == "takeover" else None


def _encode(answer: dict[str, object]) -> bytes:
    return json.dumps(answer).encode() + b"\n"


async def _read_line(reader: asyncio.StreamReader) -> bytes | None:
    """The next request line; b"" for one over ``MAX_REQUEST`` (read to its end and
    dropped), None at end of stream."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as e:
        return e.partial or None  # the last line, without its newline
    except asyncio.LimitOverrunError as e:
        consumed = e.consumed
    # readuntil left the data buffered: drop it a limit's worth at a time up to the
    # line's end.
    while True:
        try:
            await reader.readexactly(consumed)
            await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return b""
        except asyncio.LimitOverrunError as e:
            consumed = e.consumed
            continue
        return b""


def _served(path: Path) -> bool:
    """Whether a live process accepts connections on the Unix socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except OSError:
            return False  # absent, not a socket, or stale (ECONNREFUSED)
    return True
