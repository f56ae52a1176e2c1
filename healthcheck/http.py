"""HTTP and HTTPS GET: the status must be accepted, the body may have to match ``expect``.

One HTTP/1.0 request (``Connection: close``) to ``spec.http_path`` with ``Host:
spec.http_host`` (default the real server's address). ``expect``, if set, must be
contained in the body (or, with ``use_regex``, found in it). HTTPS does not verify the
certificate (nanny's SSL_VERIFY_NONE): the probe asks whether the service answers, the
clients' TLS is the server's business. At most ``BODY_LIMIT`` bytes of body are read;
everything is bounded by ``spec.timeout``.
"""

from __future__ import annotations

import asyncio
import re
import ssl

from healthcheck.outcome import Outcome, expect_matches, failure, printable
from healthcheck.specs import ProbeKind, ProbeSpec

BODY_LIMIT = 65536
HEAD_LIMIT = 16384
_STATUS_RE = re.compile(rb"HTTP/\d\.\d (\d{3})(?: [^\r\n]*)?\r?\n")


def client_context() -> ssl.SSLContext:
    """A TLS client context that accepts any certificate and name."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def accepted(status: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(lo <= status <= hi for lo, hi in ranges)


def body_matches(expect: str, body: bytes, use_regex: bool) -> bool:
    """A body matches when it contains ``expect`` (plain text) or the regex is found."""
    if use_regex or expect == "*":
        return expect_matches(expect, body, use_regex)
    return expect.encode("latin-1") in body


async def probe(spec: ProbeSpec) -> Outcome:
    """GET ``spec.http_path`` from ``spec.host:spec.port`` (TLS when kind is https)."""
    tls = client_context() if spec.kind is ProbeKind.HTTPS else None
    host = spec.http_host or spec.host
    request = (
        f"GET {spec.http_path} HTTP/1.0\r\nHost: {host}\r\n"
        "User-Agent: lvsd-nanny\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(spec.timeout):
            reader, writer = await asyncio.open_connection(spec.host, spec.port, ssl=tls)
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > HEAD_LIMIT:
                return Outcome(False, "header too long")
            body = b""
            if spec.expect is not None:
                while len(body) < BODY_LIMIT:
                    chunk = await reader.read(BODY_LIMIT - len(body))
                    if not chunk:
                        break
                    body += chunk
    except asyncio.IncompleteReadError as e:
        return Outcome(False, f"no HTTP answer: {printable(e.partial) if e.partial else 'closed'}")
    except asyncio.LimitOverrunError:
        return Outcome(False, "no HTTP answer: header too long")
    except ssl.SSLError as e:
        return Outcome(False, f"TLS: {e.reason or e}")
    except (OSError, TimeoutError) as e:
        return failure(e)
    finally:
        if writer is not None:
            # Abort, not close: a probe has nothing more to say, and a reset leaves no
            # TIME_WAIT on the director nor a TLS close handshake to wait for.
            writer.transport.abort()
    m = _STATUS_RE.match(head)
    if m is None:
        return Outcome(False, f"no HTTP answer: {printable(head)}")
    status = int(m.group(1))
    if not accepted(status, spec.http_status):
        return Outcome(False, f"HTTP {status}")
    if spec.expect is not None and not body_matches(spec.expect, body, spec.use_regex):
        return Outcome(False, f"HTTP {status}, body does not match {spec.expect!r}")
    return Outcome(True, f"HTTP {status}")
