"""Every probe kind against real servers on loopback sockets: pass, refusal, timeout,
wrong answer and garbage. Servers are asyncio servers in the test's loop (HTTPS with a
certificate made by the openssl CLI); the external program is a real shell script."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import pytest

from healthcheck import dns, http, program, sendexpect, tcp, udp
from healthcheck.specs import ProbeKind, ProbeSpec
from tests.unit.healthcheck.loopback import HOST, Handler, serving

T = 1.0  # the probes' timeout in these tests, seconds


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def reply(data: bytes, *, read_first: bool = True) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if read_first:
            await reader.read(4096)
        writer.write(data)
        await writer.drain()
        writer.close()

    return handler


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # never answers; the client gives up
    writer.close()


async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(4096)
    try:
        for b in b"HTTP/1.0 200 OK\r\nX-Slow: " + b"a" * 10_000:
            writer.write(bytes([b]))
            await writer.drain()
            await asyncio.sleep(0.05)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def spec(kind: ProbeKind, port: int, **kw: object) -> ProbeSpec:
    return ProbeSpec(kind=kind, host=HOST, port=port, timeout=T, **kw)  # type: ignore[arg-type]


# --- TCP connect ---------------------------------------------------------------------


async def test_tcp_connect_passes_and_refusal_fails() -> None:
    async with serving(await reply(b"", read_first=False)) as port:
        assert (await tcp.probe(spec(ProbeKind.TCP, port))).ok
    out = await tcp.probe(spec(ProbeKind.TCP, free_port()))
    assert (out.ok, out.reason) == (False, "connection refused")


# --- send/expect ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expect", "use_regex", "ok"),
    [
        (b"220 mail ESMTP\r\n", "220", False, True),
        (b"500 no\r\n", "220", False, False),  # wrong answer
        (b"\x00\xff\xfe garbage", "220", False, False),
        (b"anything", "*", False, True),
        (b"HTTP/1.1 200 OK\r\n", r"HTTP/1\.[01] 2\d\d", True, True),
        (b"HTTP/1.1 503 Busy\r\n", r"HTTP/1\.[01] 2\d\d", True, False),
        (b"", "220", False, False),  # closed without an answer
    ],
)
async def test_send_expect(answer: bytes, expect: str, use_regex: bool, ok: bool) -> None:
    async with serving(await reply(answer)) as port:
        out = await sendexpect.probe(
            spec(ProbeKind.SEND_EXPECT, port, send="HELO x\r\n", expect=expect,
                 use_regex=use_regex)
        )  # fmt: skip
    assert out.ok is ok, out


async def test_send_expect_refused_and_timeout() -> None:
    out = await sendexpect.probe(spec(ProbeKind.SEND_EXPECT, free_port(), send="x", expect="y"))
    assert out.reason == "connection refused"
    async with serving(silent) as port:
        out = await sendexpect.probe(spec(ProbeKind.SEND_EXPECT, port, send="x", expect="y"))
    assert (out.ok, out.reason) == (False, "timed out")


# --- HTTP and HTTPS --------------------------------------------------------------------


def http_answer(status: str, body: bytes = b"hello real2\n") -> bytes:
    return f"HTTP/1.0 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.mark.parametrize(
    ("answer", "expect", "ok", "reason"),
    [
        (http_answer("200 OK"), None, True, "HTTP 200"),
        (http_answer("301 Moved"), None, True, "HTTP 301"),
        (http_answer("503 Service Unavailable"), None, False, "HTTP 503"),
        (http_answer("200 OK"), "real2", True, "HTTP 200"),
        (http_answer("200 OK", b"maintenance page"), "real2", False, "body does not match"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", None, False, "no HTTP answer"),
        (b"\xde\xad\xbe\xef", None, False, "no HTTP answer"),
    ],
)
async def test_http(answer: bytes, expect: str | None, ok: bool, reason: str) -> None:
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with serving(handler) as port:
        out = await http.probe(
            spec(ProbeKind.HTTP, port, expect=expect, http_path="/health",
                 http_host="www.example.com")
        )  # fmt: skip
    assert out.ok is ok, out
    assert reason in out.reason
    assert requests[0].startswith(b"GET /health HTTP/1.0\r\nHost: www.example.com\r\n")


async def test_http_status_ranges_refusal_and_trickle() -> None:
    async with serving(await reply(http_answer("404 Not Found"))) as port:
        out = await http.probe(spec(ProbeKind.HTTP, port, http_status=((404, 404),)))
    assert out.ok
    out = await http.probe(spec(ProbeKind.HTTP, free_port()))
    assert out.reason == "connection refused"
    async with serving(trickle) as port:
        out = await http.probe(spec(ProbeKind.HTTP, port))
    assert (out.ok, out.reason) == (False, "timed out")


@pytest.fixture(scope="module")
def tls_server_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed (apt-get install openssl)")
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=real2.lab"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


async def test_https_with_a_self_signed_certificate(tls_server_context: ssl.SSLContext) -> None:
    async with serving(await reply(http_answer("200 OK")), tls=tls_server_context) as port:
        out = await http.probe(spec(ProbeKind.HTTPS, port, expect="real2"))
    assert out.ok, out
    # Plain HTTP on the TLS port: the handshake fails, the probe fails.
    async with serving(await reply(http_answer("200 OK"))) as port:
        out = await http.probe(spec(ProbeKind.HTTPS, port))
    assert not out.ok
    assert out.reason.startswith(("TLS", "connection", "no HTTP"))


# --- UDP -----------------------------------------------------------------------------


class UdpResponder(asyncio.DatagramProtocol):
    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's datagram transport is not registered as a DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        out = self.answer(data)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


async def udp_server(answer: Callable[[bytes], bytes | None]) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: UdpResponder(answer), local_addr=(HOST, 0)
    )
    try:
        yield int(transport.get_extra_info("sockname")[1])
    finally:
        transport.close()


@pytest.mark.parametrize(
    ("answer", "expect", "ok"),
    [
        (lambda d: b"PONG " + d, "PONG", True),
        (lambda d: b"ERR", "PONG", False),  # wrong answer
        (lambda d: b"\x00\x01\x02", "PONG", False),  # garbage
        (lambda d: b"x", None, True),  # any reply without expect
        (lambda d: None, "PONG", False),  # silence: timeout
    ],
)
async def test_udp(answer: Callable[[bytes], bytes | None], expect: str | None, ok: bool) -> None:
    async for port in udp_server(answer):
        out = await udp.probe(spec(ProbeKind.UDP, port, send="PING", expect=expect))
        assert out.ok is ok, out


async def test_udp_refused_by_icmp_port_unreachable() -> None:
    out = await udp.probe(spec(ProbeKind.UDP, free_port(socket.SOCK_DGRAM), send="PING"))
    assert (out.ok, out.reason) == (False, "connection refused")


# --- DNS -----------------------------------------------------------------------------


def dns_answer(query: bytes, *, rcode: int = 0, addrs: tuple[str, ...] = ("192.0.2.53",)) -> bytes:
    """A tiny authoritative responder: answers the question with ``addrs`` as A records."""
    ident = query[:2]
    question = query[12:]
    flags = 0x8400 | rcode
    head = ident + struct.pack("!HHHHH", flags, 1, len(addrs), 0, 0)
    answers = b"".join(
        b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(a) for a in addrs
    )
    return head + question + answers


@pytest.mark.parametrize(
    ("answer", "expect", "ok", "reason"),
    [
        (lambda q: dns_answer(q), "192.0.2.53", True, "192.0.2.53"),
        (lambda q: dns_answer(q), None, True, "192.0.2.53"),
        (lambda q: dns_answer(q, addrs=("192.0.2.99",)), "192.0.2.53", False, "expected"),
        (lambda q: dns_answer(q, rcode=3, addrs=()), None, False, "NXDOMAIN"),
        (lambda q: dns_answer(q, rcode=2, addrs=()), None, False, "SERVFAIL"),
        (lambda q: b"\x12\x34garbage", None, False, "malformed"),
        (lambda q: q[:2] + b"\x84\x00\x00\x01\x00\x05", None, False, "malformed"),
        (lambda q: b"\x00\x00" + dns_answer(q)[2:], None, False, "malformed"),  # wrong id
        (lambda q: None, None, False, "timed out"),
    ],
)
async def test_dns(
    answer: Callable[[bytes], bytes | None], expect: str | None, ok: bool, reason: str
) -> None:
    async for port in udp_server(answer):
        out = await dns.probe(spec(ProbeKind.DNS, port, dns_query="www.lab.test", expect=expect))
        assert out.ok is ok, out
        assert reason in out.reason


def test_dns_query_encoding() -> None:
    q = dns.build_query(0x1234, "www.lab.test")
    assert q == (
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        b"\x03www\x03lab\x04test\x00\x00\x01\x00\x01"
    )


# --- external program ------------------------------------------------------------------


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "check.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize(
    ("body", "expect", "ok", "reason"),
    [
        ('echo "OK $1:$2"\n', "OK 127.0.0.1:8080", True, "answered"),
        ('echo "FAIL"\n', "OK 127.0.0.1:8080", False, "expected"),  # wrong answer
        ("printf '\\001\\377junk'\n", "OK", False, "expected"),  # garbage
        ("exit 3\n", None, False, "status 3"),  # refusal: the check says no
        ("exit 0\n", None, True, "exited 0"),
        ("echo whatever\n", "*", True, "answered"),
    ],
)
async def test_program(
    tmp_path: Path, body: str, expect: str | None, ok: bool, reason: str
) -> None:
    cmd = script(tmp_path, body) + " %h %p"
    out = await program.probe(spec(ProbeKind.PROGRAM, 8080, program=cmd, expect=expect))
    assert out.ok is ok, out
    assert reason in out.reason


async def test_program_missing_binary() -> None:
    out = await program.probe(spec(ProbeKind.PROGRAM, 1, program="/nonexistent/check %h"))
    assert not out.ok
    assert "cannot run" in out.reason


async def test_hanging_program_is_killed_with_its_children_and_reaped(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    cmd = script(tmp_path, f"sleep 60 &\necho $! > {pids}\necho $$ >> {pids}\nwait\n")
    out = await program.probe(spec(ProbeKind.PROGRAM, 1, program=cmd))
    assert not out.ok
    assert "timed out" in out.reason
    for pid in map(int, pids.read_text().split()):
        assert not alive(pid), f"pid {pid} outlived the probe"


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left for init to reap does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
