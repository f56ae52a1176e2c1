"""``lvsd agent``: the HAProxy agent-check server a real server runs for nanny.

Each TCP connection gets one line and is closed. The line is either the server's spare
capacity as a weight percentage, ``NN%`` with NN = 100 − 100 × (one-minute load
average / CPUs), kept between 1 and 100 (0% would drain), or the first output line of
``--command``, run every ``--interval`` seconds with a time bound (e.g. a script that
says ``drain`` during maintenance). The answer is computed on that interval, not per
connection, so a burst of checks costs nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
from typing import Any

from healthcheck.program import run_bounded

log = logging.getLogger(__name__)

DEFAULT_PORT = 5555


def capacity_line(load1: float, cpus: int) -> str:
    """``NN%``: the weight share a server with ``load1`` over ``cpus`` CPUs can take."""
    spare = 100 - round(100 * load1 / max(1, cpus))
    return f"{min(100, max(1, spare))}%"


class Agent:
    """Answers agent-checks on ``host:port`` with the line of the last refresh."""

    def __init__(self, host: str, port: int, interval: float, command: str | None) -> None:
        self.host = host
        self.port = port
        self.interval = interval
        self.command = command
        self.line = "up"

    async def refresh(self) -> None:
        if self.command is None:
            self.line = capacity_line(os.getloadavg()[0], os.cpu_count() or 1)
            return
        try:
            result = await run_bounded(shlex.split(self.command), self.interval)
        except OSError as e:
            log.warning("agent: cannot run %s: %s", self.command, e.strerror or e)
            return
        if result is None or result[0] != 0:
            log.warning("agent: %s failed; keeping %r", self.command, self.line)
            return
        text = result[1].decode("latin-1").strip().splitlines()
        self.line = text[0].strip() if text else self.line

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.line.encode("latin-1") + b"\n")
        try:
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def serve(self) -> None:
        await self.refresh()
        server = await asyncio.start_server(self._answer, self.host, self.port)
        log.info("agent: answering on %s:%d", self.host, self.port)
        async with server:
            while True:
                await asyncio.sleep(self.interval)
                await self.refresh()


def add_command(sub: Any) -> None:
    p = sub.add_parser("agent", help="answer HAProxy agent-checks with this server's load")
    p.add_argument("--listen", default="0.0.0.0", help="address to listen on (default all)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port ({DEFAULT_PORT})")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    p.add_argument("--command", help="answer with the first output line of this command")
    p.set_defaults(func=run_agent)


def run_agent(args: argparse.Namespace) -> int:
    agent = Agent(args.listen, args.port, args.interval, args.command)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(agent.serve())
    return 0
