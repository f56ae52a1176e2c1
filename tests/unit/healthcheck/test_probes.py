"""Every probe kind against a real server in another process on loopback: pass, refusal,
timeout, wrong answer and garbage.

The servers are ``peer_server.py`` processes (one behaviour each, started by the
``peer_server`` fixture; HTTPS with a self-signed certificate made by the openssl CLI);
each records what it read, so the tests also check what the probe sent. Refusal is a
port nobody listens on; the external program is a real shell script.
"""

from __future__ import annotations

import os
import select
import socket
from pathlib import Path

import pytest

from healthcheck import dns, http, program, sendexpect, tcp, udp
from healthcheck.specs import ProbeKind, ProbeSpec
from tests.unit.healthcheck.conftest import StartPeer

HOST = "127.0.0.1"
pytestmark = pytest.mark.usefixtures("connections_closed")

T = 1.0  # the probes' timeout in these tests, seconds
SHORT = 0.2  # the timeout where the probe is meant to time out


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def spec(kind: ProbeKind, port: int, timeout: float = T, **kw: object) -> ProbeSpec:
    return ProbeSpec(kind=kind, host=HOST, port=port, timeout=timeout, **kw)  # type: ignore[arg-type]


# --- TCP connect ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["close", "silent"])
async def test_tcp_connect_passes_and_refusal_fails(peer_server: StartPeer, mode: str) -> None:
    server = peer_server("tcp", mode)
    assert (await tcp.probe(spec(ProbeKind.TCP, server.port))).ok
    out = await tcp.probe(spec(ProbeKind.TCP, free_port()))
    assert (out.ok, out.reason) == (False, "connection refused")


# --- send/expect ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expect", "use_regex", "ok", "reason"),
    [
        (b"220 mail ESMTP\r\n", "220", False, True, "answered"),
        (b"500 no\r\n", "220", False, False, "unexpected answer"),  # wrong answer
        (b"\x00\xff\xfe garbage", "220", False, False, "unexpected answer"),
        (b"anything", "*", False, True, "answered"),
        (b"HTTP/1.1 200 OK\r\n", r"HTTP/1\.[01] 2\d\d", True, True, "answered"),
        (b"HTTP/1.1 503 Busy\r\n", r"HTTP/1\.[01] 2\d\d", True, False, "unexpected answer"),
        (b"", "220", False, False, "closed without an answer"),
    ],
)
async def test_send_expect(
    peer_server: StartPeer, answer: bytes, expect: str, use_regex: bool, ok: bool, reason: str
) -> None:
    server = peer_server("tcp", "answer", answer.hex())
    out = await sendexpect.probe(
        spec(ProbeKind.SEND_EXPECT, server.port, send="HELO x\r\n", expect=expect,
             use_regex=use_regex)
    )  # fmt: skip
    assert out.ok is ok, out
    assert out.reason.startswith(reason), out
    assert server.received() == b"HELO x\r\n"


async def test_send_expect_refused_and_timeout(peer_server: StartPeer) -> None:
    out = await sendexpect.probe(spec(ProbeKind.SEND_EXPECT, free_port(), send="x", expect="y"))
    assert out.reason == "connection refused"
    server = peer_server("tcp", "silent")
    out = await sendexpect.probe(
        spec(ProbeKind.SEND_EXPECT, server.port, SHORT, send="x", expect="y")
    )
    assert (out.ok, out.reason) == (False, "timed out")


async def test_send_expect_trickle_times_out(peer_server: StartPeer) -> None:
    # The right answer, one byte every 100 ms: it cannot be complete before the timeout.
    server = peer_server("tcp", "trickle", b"220 ready\r\n".hex(), "--every-ms", "100")
    out = await sendexpect.probe(
        spec(ProbeKind.SEND_EXPECT, server.port, SHORT, send="HELO x\r\n", expect="220 ready")
    )
    assert not out.ok
    assert out.reason.startswith("timed out"), out
    assert server.received() == b"HELO x\r\n"


# --- HTTP and HTTPS --------------------------------------------------------------------


def http_answer(status: str, body: bytes = b"hello real2\n") -> bytes:
    return f"HTTP/1.0 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


REQUEST_HEAD = b"GET /health HTTP/1.0\r\nHost: www.example.com\r\n"


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
async def test_http(
    peer_server: StartPeer, answer: bytes, expect: str | None, ok: bool, reason: str
) -> None:
    server = peer_server("http", "--raw", answer.hex())
    out = await http.probe(
        spec(ProbeKind.HTTP, server.port, expect=expect, http_path="/health",
             http_host="www.example.com")
    )  # fmt: skip
    assert out.ok is ok, out
    assert reason in out.reason
    assert server.received().startswith(REQUEST_HEAD)


async def test_http_status_ranges_refusal_and_trickle(peer_server: StartPeer) -> None:
    server = peer_server("http", "404 Not Found", "gone")
    out = await http.probe(spec(ProbeKind.HTTP, server.port, http_status=((404, 404),)))
    assert out.ok
    out = await http.probe(spec(ProbeKind.HTTP, free_port()))
    assert out.reason == "connection refused"
    slow = b"HTTP/1.0 200 OK\r\nX-Slow: " + b"a" * 1000
    server = peer_server("tcp", "trickle", slow.hex(), "--every-ms", "50")
    out = await http.probe(spec(ProbeKind.HTTP, server.port, SHORT))
    assert (out.ok, out.reason) == (False, "timed out")


async def test_https_with_a_self_signed_certificate(
    peer_server: StartPeer, tls_files: tuple[Path, Path]
) -> None:
    tls = ("--tls", *map(str, tls_files))
    server = peer_server("http", "200 OK", "hello real2\n", *tls)
    out = await http.probe(
        spec(ProbeKind.HTTPS, server.port, expect="real2", http_path="/health",
             http_host="www.example.com")
    )  # fmt: skip
    assert out.ok, out
    assert server.received().startswith(REQUEST_HEAD)
    # Plain HTTP on the TLS port: the handshake fails, the probe fails.
    server = peer_server("tcp", "answer", http_answer("200 OK").hex())
    out = await http.probe(spec(ProbeKind.HTTPS, server.port))
    assert not out.ok
    assert out.reason.startswith(("TLS", "connection", "no HTTP"))


@pytest.mark.parametrize(
    ("argv", "expect", "reason"),
    [
        (("http", "503 Service Unavailable", "busy"), None, "HTTP 503"),  # wrong answer
        (("http", "200 OK", "maintenance page"), "real2", "body does not match"),
        (("http", "--raw", b"\xde\xad\xbe\xef".hex()), None, "no HTTP answer"),  # garbage
    ],
)
async def test_https_wrong_answers_over_tls(
    peer_server: StartPeer,
    tls_files: tuple[Path, Path],
    argv: tuple[str, ...],
    expect: str | None,
    reason: str,
) -> None:
    server = peer_server(*argv, "--tls", *map(str, tls_files))
    out = await http.probe(spec(ProbeKind.HTTPS, server.port, expect=expect))
    assert not out.ok
    assert reason in out.reason, out
    assert server.received().startswith(b"GET / HTTP/1.0\r\n")


async def test_https_refusal_and_a_server_that_never_shakes_hands(peer_server: StartPeer) -> None:
    out = await http.probe(spec(ProbeKind.HTTPS, free_port()))
    assert (out.ok, out.reason) == (False, "connection refused")
    server = peer_server("tcp", "silent")
    out = await http.probe(spec(ProbeKind.HTTPS, server.port, SHORT))
    assert (out.ok, out.reason) == (False, "timed out")


# --- UDP -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expect", "ok", "reason"),
    [
        (("answer", b"PONG ".hex(), "--echo"), "PONG", True, "replied 'PONG PING'"),
        (("answer", b"ERR".hex()), "PONG", False, "unexpected reply"),  # wrong answer
        (("answer", b"\x00\x01\x02".hex()), "PONG", False, "unexpected reply"),  # garbage
        (("answer", b"x".hex()), None, True, "replied"),  # any reply without expect
        (("silent",), "PONG", False, "timed out"),
    ],
)
async def test_udp(
    peer_server: StartPeer, argv: tuple[str, ...], expect: str | None, ok: bool, reason: str
) -> None:
    server = peer_server("udp", *argv)
    timeout = SHORT if reason == "timed out" else T
    out = await udp.probe(spec(ProbeKind.UDP, server.port, timeout, send="PING", expect=expect))
    assert out.ok is ok, out
    assert out.reason.startswith(reason), out
    assert server.received() == b"PING"


async def test_udp_without_send_sends_an_empty_datagram_and_passes_on_any_reply(
    peer_server: StartPeer,
) -> None:
    server = peer_server("udp", "answer", b"x".hex())
    out = await udp.probe(spec(ProbeKind.UDP, server.port, T))
    assert (out.ok, out.reason) == (True, "replied 'x'"), out


async def test_udp_refused_by_icmp_port_unreachable() -> None:
    out = await udp.probe(spec(ProbeKind.UDP, free_port(socket.SOCK_DGRAM), send="PING"))
    assert (out.ok, out.reason) == (False, "connection refused")


# --- DNS -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expect", "ok", "reason"),
    [
        (("dns", "a", "192.0.2.53"), "192.0.2.53", True, "192.0.2.53"),
        (("dns", "a", "192.0.2.53"), None, True, "192.0.2.53"),
        (("dns", "a", "192.0.2.7", "192.0.2.53"), "192.0.2.53", True, "192.0.2.7, 192.0.2.53"),
        (("dns", "a", "192.0.2.99"), "192.0.2.53", False, "expected"),  # wrong answer
        (("dns", "rcode", "3"), None, False, "NXDOMAIN"),
        (("dns", "rcode", "2"), None, False, "SERVFAIL"),
        (("dns", "garbage"), None, False, "malformed"),
        (("dns", "short"), None, False, "malformed"),
        (("dns", "truncated"), None, False, "malformed"),
        (("dns", "wrong-id", "192.0.2.53"), None, False, "malformed"),
        (("udp", "silent"), None, False, "timed out"),
    ],
)
async def test_dns(
    peer_server: StartPeer, argv: tuple[str, ...], expect: str | None, ok: bool, reason: str
) -> None:
    server = peer_server(*argv)
    timeout = SHORT if reason == "timed out" else T
    out = await dns.probe(
        spec(ProbeKind.DNS, server.port, timeout, dns_query="www.lab.test", expect=expect)
    )
    assert out.ok is ok, out
    assert reason in out.reason
    query = server.received()
    assert query == dns.build_query(int.from_bytes(query[:2], "big"), "www.lab.test")


async def test_dns_refused_by_icmp_port_unreachable() -> None:
    out = await dns.probe(
        spec(ProbeKind.DNS, free_port(socket.SOCK_DGRAM), dns_query="www.lab.test")
    )
    assert (out.ok, out.reason) == (False, "connection refused")


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
    # One child holds the output pipe, one does not: killing only the leader would
    # leave the second running (and keep the first until it ends on its own).
    body = f"sleep 60 &\necho $! > {pids}\nsleep 120 >/dev/null &\necho $! >> {pids}\n"
    cmd = script(tmp_path, body + f"echo $$ >> {pids}\nwait\n")
    out = await program.probe(spec(ProbeKind.PROGRAM, 1, program=cmd))
    assert not out.ok
    assert "timed out" in out.reason
    started = [int(pid) for pid in pids.read_text().split()]
    assert len(started) == 3
    for pid in started:
        assert exits_within(pid, 5.0), f"pid {pid} outlived the probe"


def exits_within(pid: int, limit_s: float) -> bool:
    """Whether ``pid`` has exited or exits within ``limit_s`` (a zombie left for init
    to reap has exited): a pidfd turns readable at exit."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], limit_s)[0])
    finally:
        os.close(fd)
