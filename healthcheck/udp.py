"""UDP: send ``send`` (or an empty datagram) and wait for a reply that matches ``expect``.

An ICMP port unreachable answer is a refusal; no reply within ``spec.timeout`` fails.
Without ``expect`` any reply passes (nanny read one byte).
"""

from __future__ import annotations

import asyncio

from healthcheck.outcome import Outcome, expect_matches, failure, printable
from healthcheck.specs import ProbeSpec


class _Exchange(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def exchange(host: str, port: int, payload: bytes, limit_s: float) -> bytes:
    """Send ``payload`` to ``host:port`` from a connected socket; the first reply.

    Raises TimeoutError, ConnectionRefusedError (ICMP unreachable) or another OSError.
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(limit_s):
        transport, proto = await loop.create_datagram_endpoint(_Exchange, remote_addr=(host, port))
        try:
            transport.sendto(payload)
            return await proto.reply
        finally:
            transport.close()


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
