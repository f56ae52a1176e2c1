"""DNS: ask ``dns_query`` (type A, class IN) over UDP and check the answer.

Passes when the reply has our id, is a response with rcode NOERROR and at least one
answer record; with ``expect`` (an IPv4 address) that address must be among the A
records. A reply that does not parse is garbage and fails.
"""

from __future__ import annotations

import os
import struct
from ipaddress import IPv4Address

from healthcheck.outcome import Outcome, failure
from healthcheck.specs import ProbeSpec
from healthcheck.udp import exchange

TYPE_A = 1
CLASS_IN = 1
RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


class MalformedAnswer(ValueError):
    """A DNS message that does not parse."""


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna")
        if not 0 < len(raw) < 64:
            raise ValueError(f"dns_query: bad label {label!r} in {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def build_query(ident: int, name: str) -> bytes:
    """A recursive query for ``name`` A IN with id ``ident``."""
    return (
        struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
        + encode_name(name)
        + struct.pack("!HH", TYPE_A, CLASS_IN)
    )


def _skip_name(msg: bytes, at: int) -> int:
    for _ in range(128):
        if at >= len(msg):
            raise MalformedAnswer("name runs past the end")
        n = msg[at]
        if n == 0:
            return at + 1
        if n & 0xC0 == 0xC0:
            return at + 2
        if n & 0xC0:
            raise MalformedAnswer(f"bad label length byte {n:#x}")
        at += 1 + n
    raise MalformedAnswer("name too long")


def parse_answer(msg: bytes, ident: int) -> tuple[int, int, list[IPv4Address]]:
    """(rcode, answer count, A addresses) of a response to query ``ident``."""
    if len(msg) < 12:
        raise MalformedAnswer(f"{len(msg)} bytes, need at least 12")
    rid, flags, qd, an, _, _ = struct.unpack_from("!HHHHHH", msg)
    if rid != ident:
        raise MalformedAnswer(f"id {rid}, asked {ident}")
    if not flags & 0x8000:
        raise MalformedAnswer("not a response")
    at = 12
    for _ in range(qd):
        at = _skip_name(msg, at) + 4
    addrs: list[IPv4Address] = []
    for _ in range(an):
        at = _skip_name(msg, at)
        if at + 10 > len(msg):
            raise MalformedAnswer("record header runs past the end")
        rtype, rclass, _ttl, rdlen = struct.unpack_from("!HHIH", msg, at)
        at += 10
        if at + rdlen > len(msg):
            raise MalformedAnswer("record data runs past the end")
        if rtype == TYPE_A and rclass == CLASS_IN and rdlen == 4:
            addrs.append(IPv4Address(msg[at : at + 4]))
        at += rdlen
    return flags & 0xF, an, addrs


async def probe(spec: ProbeSpec) -> Outcome:
    """One query to ``spec.host:spec.port``."""
    ident = int.from_bytes(os.urandom(2), "big")
    try:
        reply = await exchange(
            spec.host, spec.port, build_query(ident, spec.dns_query), spec.timeout
        )
    except (OSError, TimeoutError) as e:
        return failure(e)
    try:
        rcode, count, addrs = parse_answer(reply, ident)
    except MalformedAnswer as e:
        return Outcome(False, f"malformed DNS answer: {e}")
    if rcode:
        return Outcome(False, f"DNS {RCODES.get(rcode, rcode)} for {spec.dns_query}")
    if count == 0:
        return Outcome(False, f"DNS: no answer for {spec.dns_query}")
    if spec.expect is not None and spec.expect not in {str(a) for a in addrs}:
        got = ", ".join(map(str, addrs)) or "no A record"
        return Outcome(False, f"DNS {spec.dns_query}: {got}, expected {spec.expect}")
    return Outcome(True, f"DNS {spec.dns_query}: {', '.join(map(str, addrs)) or count}")
