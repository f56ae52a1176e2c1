"""The lab's real-server HTTP daemon: names itself, streams deterministic bytes, counts requests.

``python -m lab.server --name real1 --port 80`` runs inside a real server's
namespace. Standard library only, HTTP/1.1 with keep-alive, one thread per connection.

- ``GET /`` answers ``real1\\n`` with the header ``X-Real: real1`` (every answer carries it).
- ``GET /bytes/N`` streams N bytes of :func:`pattern` (the stream is :data:`BLOCK` repeated
  and cut at N), so a client checks a download against :func:`expected_digest` without a
  second copy. Written in 1 MiB ``sendall`` calls of one precomputed buffer, no per-byte work.
- ``GET /stats`` answers JSON ``{"name", "requests", "paths", "bytes_sent"}``; ``requests``
  and ``paths`` count every request except those to ``/stats`` itself.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import sys
import threading
from collections import Counter
from collections.abc import Sequence

BLOCK_HASHES = 2048
BLOCK: bytes = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(BLOCK_HASHES))
"""The 64 KiB unit of ``/bytes/N``: sha256 of the 4-byte big-endian counters 0..2047, joined."""

CHUNK: bytes = BLOCK * 16
"""1 MiB of whole blocks, so every chunk of the stream starts at a block boundary."""

MAX_BYTES = 1 << 40
"""The largest N ``/bytes/N`` accepts (1 TiB); more is a 400."""


def pattern(offset: int, length: int) -> bytes:
    """Bytes ``offset .. offset+length-1`` of the endless stream ``BLOCK BLOCK BLOCK ...``."""
    start = offset % len(BLOCK)
    reps = (start + length) // len(BLOCK) + 1
    return (BLOCK * reps)[start : start + length]


def expected_digest(n: int) -> str:
    """The hex sha256 of the first ``n`` bytes of the stream, i.e. of ``GET /bytes/n``'s body."""
    if n < 0:
        raise ValueError(f"expected_digest: n must be >= 0, got {n}")
    h = hashlib.sha256()
    whole, rest = divmod(n, len(CHUNK))
    for _ in range(whole):
        h.update(CHUNK)
    h.update(CHUNK[:rest])
    return h.hexdigest()


class RequestCounts:
    """Thread-safe request and byte counters of one server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: Counter[str] = Counter()
        self._bytes_sent = 0

    def count(self, path: str, body_bytes: int) -> None:
        with self._lock:
            self._paths[path] += 1
            self._bytes_sent += body_bytes

    def snapshot(self, name: str) -> dict[str, object]:
        with self._lock:
            return {
                "name": name,
                "requests": sum(self._paths.values()),
                "paths": dict(self._paths),
                "bytes_sent": self._bytes_sent,
            }


class LabServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server that knows the real's name and keeps its counters."""

    daemon_threads = True
    request_queue_size = 1024  # the stdlib's 5 drops SYNs under the lab's concurrency tests

    def __init__(self, address: tuple[str, int], name: str, access_log: bool = False) -> None:
        super().__init__(address, LabHandler)
        self.real_name = name
        self.access_log = access_log
        self.counts = RequestCounts()


class LabHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``/``, ``/bytes/N`` and ``/stats``; anything else is a 404."""

    protocol_version = "HTTP/1.1"
    server_version = "lvsd-labserver"
    server: LabServer

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        name = self.server.real_name
        if path == "/stats":
            body = json.dumps(self.server.counts.snapshot(name), sort_keys=True).encode()
            self._send_small(200, "application/json", body, send_body)
            return
        if path == "/":
            body = f"{name}\n".encode()
            self.server.counts.count("/", len(body) if send_body else 0)
            self._send_small(200, "text/plain", body, send_body)
            return
        if path.startswith("/bytes/"):
            arg = path.removeprefix("/bytes/")
            if not arg.isdigit() or int(arg) > MAX_BYTES:
                self.server.counts.count("/bytes", 0)
                msg = f"/bytes/N: N must be an integer in 0..{MAX_BYTES}, got {arg!r}\n"
                self._send_small(400, "text/plain", msg.encode(), send_body)
                return
            n = int(arg)
            self.server.counts.count("/bytes", n if send_body else 0)
            self._send_headers(200, "application/octet-stream", n)
            if send_body:
                self._stream(n)
            return
        self.server.counts.count("other", 0)
        self._send_small(404, "text/plain", b"not found\n", send_body)

    def _send_headers(self, status: int, content_type: str, length: int) -> None:
        self.send_response(status)
        self.send_header("X-Real", self.server.real_name)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send_small(self, status: int, content_type: str, body: bytes, send_body: bool) -> None:
        self._send_headers(status, content_type, len(body))
        if send_body:
            self.wfile.write(body)

    def _stream(self, n: int) -> None:
        chunk = memoryview(CHUNK)
        whole, rest = divmod(n, len(CHUNK))
        for _ in range(whole):
            self.wfile.write(chunk)
        self.wfile.write(chunk[:rest])

    def log_message(self, format: str, *args: object) -> None:
        if self.server.access_log:
            super().log_message(format, *args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lab.server", description="the lvsd lab's real-server HTTP daemon"
    )
    p.add_argument("--name", required=True, help="the real server's name, e.g. real1")
    p.add_argument("--port", type=int, default=80, help="TCP port to listen on (default 80)")
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--access-log", action="store_true", help="log each request to stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    server = LabServer((args.bind, args.port), args.name, args.access_log)
    print(f"labserver {args.name}: listening on {args.bind}:{args.port}", file=sys.stderr)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
