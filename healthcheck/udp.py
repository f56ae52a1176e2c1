"""UDP: send ``send`` (or an empty datagram) and wait for a reply that matches ``expect``.

An ICMP port unreachable answer is a refusal; no reply within ``spec.timeout`` fails.
Without ``expect`` any reply passes (nanny read one byte).
"""

from __future__ import annotations

import asyncio
import socket

from healthcheck.outcome import Outcome, expect_matches, failure, printable
from healthcheck.specs import ProbeSpec


async def exchange(host: str, port: int, payload: bytes, limit_s: float) -> bytes:
    """Send ``payload`` to ``host:port`` from a connected socket; the first reply.

    Raises TimeoutError, ConnectionRefusedError (ICMP unreachable) or another OSError. The
    datagram goes out with ``socket.send``, not an asyncio transport: a transport silently
    drops an empty datagram, and an empty datagram is what nanny sends without ``send``.
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(limit_s):
        family, kind, proto, _, addr = (await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM))[
            0
        ]
        with socket.socket(family, kind, proto) as sock:
            sock.setblocking(False)
            sock.connect(addr)  # no I/O for UDP; an ICMP unreachable then fails the recv
            sock.send(payload)
            return await loop.sock_recv(sock, 65535)


async def probe(spec: ProbeSpec) -> Outcome:
    """One request/reply with ``spec.host:spec.port``."""
    payload = spec.send.encode("latin-1") if spec.send else b""
    try:
        reply = await exchange(spec.host, spec.port, payload, spec.timeout)
    except (OSError, TimeoutError) as e:
        return failure(e)
    if spec.expect is None or expect_matches(spec.expect, reply, spec.use_regex):
        return Outcome(True, f"replied {printable(reply, 20)}")
    return Outcome(False, f"unexpected reply {printable(reply)}")
