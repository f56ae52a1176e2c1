"""TCP connect: the default probe (a real server is healthy when it accepts)."""

from __future__ import annotations

import asyncio

from healthcheck.outcome import Outcome, failure
from healthcheck.specs import ProbeSpec


async def probe(spec: ProbeSpec) -> Outcome:
    """Connect to ``spec.host:spec.port`` within ``spec.timeout`` seconds, then close."""
    try:
        async with asyncio.timeout(spec.timeout):
            _, writer = await asyncio.open_connection(spec.host, spec.port)
    except (OSError, TimeoutError) as e:
        return failure(e)
    writer.transport.abort()  # as the other probes: no TIME_WAIT left on the director
    return Outcome(True, "connected")
