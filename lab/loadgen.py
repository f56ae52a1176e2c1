"""A bounded HTTP load generator for the lab: who answered, how often, how many failed.

Runs in the lab's client node (``python -m lab.loadgen URL --count N``) and
prints one JSON object: ``{"ok": n, "failed": m, "by_real": {"real1": k, ...},
"errors": {...}}``. Each request is a fresh TCP connection (``Connection: close``),
so every request is a new connection for the director to schedule. The run is
bounded in count and in time (``--deadline`` seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(slots=True)
class LoadResult:
    ok: int = 0
    failed: int = 0
    by_real: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "failed": self.failed,
            "by_real": dict(sorted(self.by_real.items())),
            "errors": dict(self.errors),
        }


async def _one(host: str, port: int, path: str, per_request: float) -> str:
    async with asyncio.timeout(per_request):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            writer.write(request.encode())
            data = await reader.read()
        finally:
            writer.close()
    head, _, _ = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.") or lines[0].split()[1] != "200":
        raise ValueError(f"status {lines[0]!r}")
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "x-real":
            return value.strip()
    return "?"


async def run_load(
    url: str, count: int, *, concurrency: int = 8, per_request: float = 5.0, deadline: float = 120.0
) -> LoadResult:
    """Send ``count`` requests, ``concurrency`` at a time; stop at ``deadline`` seconds."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    result = LoadResult()
    todo = iter(range(count))
    stop_at = time.monotonic() + deadline

    async def worker() -> None:
        for _ in todo:
            if time.monotonic() > stop_at:
                result.failed += 1
                result.errors["deadline"] += 1
                continue
            try:
                real = await _one(host, port, path, per_request)
            except (OSError, TimeoutError, ValueError, IndexError) as e:
                result.failed += 1
                result.errors[type(e).__name__] += 1
            else:
                result.ok += 1
                result.by_real[real] += 1

    async with asyncio.TaskGroup() as tg:
        for _ in range(max(1, concurrency)):
            tg.create_task(worker())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.loadgen", description=__doc__)
    p.add_argument("url")
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    p.add_argument("--deadline", type=float, default=120.0, help="seconds for the whole run")
    args = p.parse_args(argv)
    result = asyncio.run(
        run_load(
            args.url,
            args.count,
            concurrency=args.concurrency,
            per_request=args.timeout,
            deadline=args.deadline,
        )
    )
    json.dump(result.as_dict(), sys.stdout)
    sys.stdout.write("\n")
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
