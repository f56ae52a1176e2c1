"""The metrics listener: ``GET /metrics`` (and the console's pages) on ``metrics_address``.

Each scrape is gathered on the event loop in slices (``director.ops.scrape``) and its text
rendered in a forked child (``render_apart``), which alone imports prometheus_client
(``director.ops.metrics``): the daemon itself never loads it. Idle or slow scrapers are
capped and hung up on, so they cannot hold the descriptors the probes need.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from director.config import HostPort
from director.errors import DirectorError
from director.ops.scrape import Observed, Scrape, take_sliced

log = logging.getLogger(__name__)

MAX_REQUEST_HEAD = 16 * 1024


def _render(scrape: Scrape, pid: int) -> bytes:
    """The content type prometheus_client renders, a newline, then the text."""
    from director.ops import metrics  # noqa: PLC0415 - only where the text is made

    return metrics.CONTENT_TYPE.encode() + b"\n" + metrics.render(scrape, pid)


async def render_apart(scrape: Scrape) -> tuple[bytes, bytes]:
    """The content type and text of ``scrape``, rendered in a forked child, which has its
    own interpreter lock: seconds of formatting then take nothing from the event loop (a
    worker thread would share the lock, and under CPU contention hold the loop up while
    descheduled with it), and prometheus_client is loaded there, never in the daemon.
    The child sees the scrape copy-on-write, writes to a pipe and exits; it touches no
    descriptor it inherited. Falls back to a worker thread if the fork fails."""
    ctype, _, text = (await _render_in_child(scrape)).partition(b"\n")
    return ctype, text


async def _render_in_child(scrape: Scrape) -> bytes:
    parent = os.getpid()
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return await asyncio.to_thread(_render, scrape, parent)
    if pid == 0:  # the child: render, write, exit; never return into the event loop
        status = 1
        try:
            os.close(read_fd)
            with os.fdopen(write_fd, "wb") as out:
                out.write(_render(scrape, parent))
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    try:
        pipe = os.fdopen(read_fd, "rb")
        reader = asyncio.StreamReader(limit=1 << 20)
        try:
            transport, _ = await asyncio.get_running_loop().connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), pipe
            )
        except BaseException:
            pipe.close()
            raise
        try:
            body = await reader.read()
        finally:
            transport.close()  # and with it the pipe
    finally:
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
    if status != 0:
        raise RuntimeError(f"metrics: the rendering child failed (wait status {status})")
    return body


Route = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]
"""The console's hook: sees each request's head first and answers it when it returns True."""

READ_TIMEOUT_S = 5.0
MAX_CLIENTS = 64


class MetricsServer:
    """Answers ``GET /metrics`` on ``address``. Event-loop thread only.

    At most ``max_clients`` scrapers at once (one more is hung up on at once), each
    hung up on if its request head takes longer than ``read_timeout`` seconds: idle
    clients must not hold the descriptors the probes need.
    """

    def __init__(
        self,
        director: Observed,
        address: HostPort,
        *,
        max_clients: int = MAX_CLIENTS,
        read_timeout: float = READ_TIMEOUT_S,
        route: Route | None = None,
    ) -> None:
        self.address = address
        self._route = route
        self.max_clients = max_clients
        self.read_timeout = read_timeout
        self.refused = 0
        self._director = director
        self._clients = 0
        # One scrape rendered at a time: back-to-back scrapers queue, not pile up.
        self._rendering = asyncio.Lock()
        self._server: asyncio.Server | None = None

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen; DirectorError naming ``metrics_address`` if that is not possible.
        With ``sock``, serve that listening socket (handed over by a takeover)."""
        try:
            if sock is not None:
                self._server = await asyncio.start_server(
                    self._handle, sock=sock, limit=MAX_REQUEST_HEAD
                )
            else:
                self._server = await asyncio.start_server(
                    self._handle,
                    str(self.address.host),
                    self.address.port,
                    limit=MAX_REQUEST_HEAD,
                )
        except OSError as e:
            # asyncio rewords bind errors; the errno's own text is the one-line reason.
            reason = os.strerror(e.errno) if e.errno else str(e)
            raise DirectorError(
                f"metrics_address {self.address}: cannot listen: {reason}"
            ) from None
        log.info("metrics on http://%s/metrics", self.address)

    async def serve(self) -> None:
        """Serve until cancelled (a task of the TaskGroup)."""
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    def listener_fd(self) -> int:
        """The listening socket's descriptor (to hand over); -1 when not listening."""
        if self._server is None or not self._server.sockets:
            return -1
        return int(self._server.sockets[0].fileno())

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= self.max_clients:
            self.refused += 1
            writer.transport.abort()
            return
        self._clients += 1
        try:
            async with asyncio.timeout(self.read_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
            if self._route is not None and await self._route(head, reader, writer):
                return
            parts = head.split(b"\r\n", 1)[0].split()
            path = parts[1].split(b"?", 1)[0] if len(parts) >= 2 else b""
            if len(parts) < 2 or parts[0] not in (b"GET", b"HEAD"):
                status, ctype, body = b"405 Method Not Allowed", b"text/plain", b"GET only\n"
            elif path in (b"/metrics", b"/"):
                async with self._rendering:
                    scrape = await take_sliced(self._director)
                    ctype, body = await render_apart(scrape)
                status = b"200 OK"
            else:
                status, ctype, body = b"404 Not Found", b"text/plain", b"see /metrics\n"
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: "
                + ctype
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
            )
            if parts[:1] != [b"HEAD"]:
                writer.write(body)  # apart: no copy of a 10 MB body on the loop
            await writer.drain()
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            TimeoutError,
        ):
            pass  # a client that hangs up, stays silent or sends an oversized head
        finally:
            self._clients -= 1
            writer.close()


async def serve(director: Observed, address: HostPort, route: Route | None = None) -> None:
    """Answer ``GET /metrics`` on ``address`` until cancelled (a task of the TaskGroup);
    ``route`` (the console) sees each request's head first."""
    server = MetricsServer(director, address, route=route)
    await server.start()
    await server.serve()
