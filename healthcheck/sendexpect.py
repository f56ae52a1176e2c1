"""Piranha's send/expect over TCP: write ``send``, read the answer, match ``expect``.

The whole exchange is bounded by ``spec.timeout`` (a server that trickles bytes fails
when it runs out). Without ``expect`` a successful connect and write is enough.
"""

from __future__ import annotations

import asyncio

from healthcheck.outcome import Outcome, enough, expect_matches, failure, printable
from healthcheck.specs import ProbeSpec

READ_CHUNK = 4096


async def probe(spec: ProbeSpec) -> Outcome:
    """Run one exchange with ``spec.host:spec.port``; see the module docstring."""
    writer: asyncio.StreamWriter | None = None
    answer = b""
    try:
        async with asyncio.timeout(spec.timeout):
            reader, writer = await asyncio.open_connection(spec.host, spec.port)
            if spec.send:
                writer.write(spec.send.encode("latin-1"))
                await writer.drain()
            if spec.expect is None:
                return Outcome(True, "sent" if spec.send else "connected")
            while not enough(spec.expect, answer, spec.use_regex):
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    break
                answer += chunk
    except (OSError, TimeoutError) as e:
        failed = failure(e)
        if answer:
            return Outcome(False, f"{failed.reason} after {printable(answer)}")
        return failed
    finally:
        if writer is not None:
            # Abort, not close: a probe has nothing more to say, and a reset leaves no
            # TIME_WAIT on the director nor a TLS close handshake to wait for.
            writer.transport.abort()
    if not answer:
        return Outcome(False, "closed without an answer")
    if expect_matches(spec.expect, answer, spec.use_regex):
        return Outcome(True, f"answered {printable(answer, 20)}")
    return Outcome(False, f"unexpected answer {printable(answer)}")
