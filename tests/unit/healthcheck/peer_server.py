"""A loopback server with one behaviour, run as its own process for the probe tests.

It binds port 0 on 127.0.0.1, prints the port as the first line on stdout (readiness:
the socket already listens), then serves until it is killed or its stdin closes (so a
test run that dies leaves no server behind). Every request it reads is printed on stdout
as one hex line before it answers, so a test can check what the probe sent. Standard
library only. Behaviours::

    tcp answer HEX [--no-read]     read one chunk (unless --no-read), write HEX, close
    tcp silent                     accept, read until the client leaves, never answer
    tcp close                      accept and close at once
    tcp trickle HEX --every-ms N   read one chunk, then write HEX one byte every N ms
    http STATUS BODY [--tls CERT KEY]
                                   read a request head, answer ``HTTP/1.0 STATUS`` with
                                   BODY (over TLS with the certificate and key files)
    http --raw HEX [--tls CERT KEY]
                                   read a request head, answer HEX (no HTTP at all)
    udp answer HEX [--echo]        answer each datagram with HEX (followed by the datagram)
    udp silent                     read datagrams, never answer
    dns a ADDR [ADDR ...]          answer A queries with these records (NOERROR)
    dns rcode N                    answer with rcode N and no record (3 NXDOMAIN)
    dns wrong-id ADDR              a good answer under an id that is not the query's
    dns short                      the query's id and eight bytes of a header
    dns truncated                  the query's id, a header that promises five answers, no more
    dns garbage                    bytes that are no DNS message

Run it as ``python peer_server.py tcp answer 3232300d0a`` (or with ``-m`` from the
repository root).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import ssl
import struct
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

HOST = "127.0.0.1"
DNS_GARBAGE = b"\x12\x34garbage"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Answer = Callable[[bytes], bytes | None]


def record(request: bytes) -> None:
    """Tell the test what was received: one hex line on stdout."""
    sys.stdout.write(request.hex() + "\n")
    sys.stdout.flush()


def ready(port: int) -> None:
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()


# --- TCP ---------------------------------------------------------------------------


def tcp_handler(args: argparse.Namespace) -> Handler:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not args.no_read:
            record(await reader.read(4096))
        writer.write(bytes.fromhex(args.hex))
        await writer.drain()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        return

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record(await reader.read(4096))
        for b in bytes.fromhex(args.hex):
            writer.write(bytes([b]))
            await writer.drain()
            await asyncio.sleep(args.every_ms / 1000)

    handlers: dict[str, Handler] = {
        "answer": answer,
        "silent": silent,
        "close": close,
        "trickle": trickle,
    }
    return handlers[args.mode]


def http_handler(args: argparse.Namespace) -> Handler:
    if args.raw is not None:
        answer = bytes.fromhex(args.raw)
    else:
        body = args.body.encode()
        answer = f"HTTP/1.0 {args.status}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record(await reader.readuntil(b"\r\n\r\n"))
        writer.write(answer)
        await writer.drain()

    return handler


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.tls[0], args.tls[1])
    return ctx


async def serve_tcp(handler: Handler, tls: ssl.SSLContext | None) -> None:
    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client left or sent no HTTP: that is the client's business
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, HOST, 0, ssl=tls)
    async with server:
        ready(int(server.sockets[0].getsockname()[1]))
        await until_stdin_closes()


# --- UDP and DNS -------------------------------------------------------------------


def udp_answer(args: argparse.Namespace) -> Answer:
    if args.mode == "silent":
        return lambda request: None
    data = bytes.fromhex(args.hex)
    return lambda request: data + request if args.echo else data


def dns_reply(query: bytes, *, rcode: int = 0, addrs: tuple[str, ...] = ()) -> bytes:
    """An authoritative answer to ``query`` with ``addrs`` as A records."""
    flags = 0x8400 | rcode
    head = query[:2] + struct.pack("!HHHHH", flags, 1, len(addrs), 0, 0)
    answers = b"".join(
        b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(a) for a in addrs
    )
    return head + query[12:] + answers


def dns_answer(args: argparse.Namespace) -> Answer:
    def wrong_id(query: bytes) -> bytes:
        other = struct.pack("!H", struct.unpack_from("!H", query)[0] ^ 0x8000)
        return other + dns_reply(query, addrs=(args.addr,))[2:]

    answers: dict[str, Answer] = {
        "a": lambda q: dns_reply(q, addrs=tuple(args.addrs)),
        "rcode": lambda q: dns_reply(q, rcode=args.rcode),
        "wrong-id": wrong_id,
        "short": lambda q: q[:2] + b"\x84\x00\x00\x01\x00\x05",
        "truncated": lambda q: q[:2] + struct.pack("!HHHHH", 0x8400, 0, 5, 0, 0),
        "garbage": lambda q: DNS_GARBAGE,
    }
    return answers[args.mode]


class Responder(asyncio.DatagramProtocol):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        record(data)
        out = self.answer(data)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


async def serve_udp(answer: Answer) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: Responder(answer), local_addr=(HOST, 0)
    )
    try:
        ready(int(transport.get_extra_info("sockname")[1]))
        await until_stdin_closes()
    finally:
        transport.close()


# --- process -----------------------------------------------------------------------


async def until_stdin_closes() -> None:
    """Serve until stdin reaches end of file (the test's end of the pipe is gone).

    A stdin that cannot be watched (a regular file such as /dev/null) means serve until
    killed.
    """
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not os.read(0, 4096) and not closed.done():
            closed.set_result(None)

    try:
        loop.add_reader(0, readable)
    except PermissionError:
        await closed  # never set: serve until killed
    try:
        await closed
    finally:
        loop.remove_reader(0)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    proto = p.add_subparsers(dest="proto", required=True)

    tcp = proto.add_parser("tcp").add_subparsers(dest="mode", required=True)
    answer = tcp.add_parser("answer")
    answer.add_argument("hex")
    answer.add_argument("--no-read", action="store_true")
    tcp.add_parser("silent")
    tcp.add_parser("close")
    trickle = tcp.add_parser("trickle")
    trickle.add_argument("hex")
    trickle.add_argument("--every-ms", type=int, default=50)

    http = proto.add_parser("http")
    http.add_argument("status", nargs="?", default="200 OK")
    http.add_argument("body", nargs="?", default="")
    http.add_argument("--raw", metavar="HEX")
    http.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))

    udp = proto.add_parser("udp").add_subparsers(dest="mode", required=True)
    uanswer = udp.add_parser("answer")
    uanswer.add_argument("hex")
    uanswer.add_argument("--echo", action="store_true")
    udp.add_parser("silent")

    dns = proto.add_parser("dns").add_subparsers(dest="mode", required=True)
    dns.add_parser("a").add_argument("addrs", nargs="+")
    dns.add_parser("rcode").add_argument("rcode", type=int)
    dns.add_parser("wrong-id").add_argument("addr")
    dns.add_parser("short")
    dns.add_parser("truncated")
    dns.add_parser("garbage")
    return p


async def serve(args: argparse.Namespace) -> None:
    # Clients that reset or fail the TLS handshake are expected here; keep stderr quiet.
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
    match args.proto:
        case "tcp":
            await serve_tcp(tcp_handler(args), None)
        case "http":
            await serve_tcp(http_handler(args), tls_context(args))
        case "udp":
            await serve_udp(udp_answer(args))
        case "dns":
            await serve_udp(dns_answer(args))


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
