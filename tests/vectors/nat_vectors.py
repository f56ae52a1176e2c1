"""Golden VS-NAT packets: numbered (description, packet before, packet after, verdict) cases.

How they were made: every packet is built with scapy from addresses and ports, never by the
code under test. For a FORWARD vector the "after" packet is built again with the rewritten
addresses and ports and scapy computes every checksum from scratch (IP, TCP/UDP, ICMP and the
quoted header inside an ICMP error), so comparing bytes checks the incremental updates
against a full recomputation. Partial (VIRTIO_NET_HDR_F_NEEDS_CSUM) checksums are computed by
`pseudo_partial` below, which sums the pseudo-header from scratch. Vectors that are not
FORWARD must leave the buffer unchanged.

Every vector runs against a fresh table holding `DESTS` and `CONNECTIONS`
(tests/unit/dataplane/test_fastpath_vectors.py).
Addresses: the thesis's Table 1 example (client 202.100.1.2:3456, VIP 202.103.106.5:80,
real server 172.16.0.3:8000) and RFC 5737 / RFC 1918 addresses for the rest.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.packet import Packet, Raw


def ip4(text: str) -> int:
    """A dotted quad as a host-order int, as the fast path API takes addresses."""
    return int(ipaddress.IPv4Address(text))


# Table 1 of the thesis: VS-NAT with port mapping VIP:80 -> RIP:8000.
T1_CLIENT, T1_CPORT = "202.100.1.2", 3456
T1_VIP, T1_VPORT = "202.103.106.5", 80
T1_RIP, T1_RPORT = "172.16.0.3", 8000

U_CLIENT, U_CPORT = "198.51.100.7", 5353
U_VIP, U_VPORT = "192.0.2.10", 53
U_RIP, U_RPORT = "10.0.1.21", 53

Z_CLIENT, Z_CPORT = "198.51.100.8", 4000
Z_RIP = "10.0.1.22"

G_CLIENT, G_CPORT = "198.51.100.9", 40000
G_RIP, G_RPORT = "10.0.1.23", 8080

# A connection whose dest was deleted (ipvsadm -d): the slot is not AVAILABLE.
X_CLIENT, X_CPORT = "198.51.100.11", 40001
X_RIP, X_RPORT = "10.0.1.24", 8080

# An FTP control connection bound to the application helper.
F_CLIENT, F_CPORT = "198.51.100.12", 40002
F_RIP, F_PORT = "10.0.1.25", 21


@dataclass(frozen=True)
class Dest:
    """A dest slot to set before the vectors run; `available` False once it is deleted."""

    slot: int
    svc: int
    addr: str
    port: int
    available: bool = True


@dataclass(frozen=True)
class Conn:
    """A connection inserted before the vectors run (caddr:cport -> vaddr:vport -> daddr:dport)."""

    proto: int
    caddr: str
    cport: int
    vaddr: str
    vport: int
    daddr: str
    dport: int
    dest: int
    app: bool = False


DESTS = (
    Dest(0, 0, T1_RIP, T1_RPORT),
    Dest(1, 1, U_RIP, U_RPORT),
    Dest(2, 1, Z_RIP, U_RPORT),
    Dest(3, 0, G_RIP, G_RPORT),
    Dest(4, 2, X_RIP, X_RPORT, available=False),
    Dest(5, 3, F_RIP, F_PORT),
)

CONNECTIONS = (
    Conn(6, T1_CLIENT, T1_CPORT, T1_VIP, T1_VPORT, T1_RIP, T1_RPORT, 0),
    Conn(17, U_CLIENT, U_CPORT, U_VIP, U_VPORT, U_RIP, U_RPORT, 1),
    Conn(17, Z_CLIENT, Z_CPORT, U_VIP, U_VPORT, Z_RIP, U_RPORT, 2),
    Conn(6, G_CLIENT, G_CPORT, T1_VIP, T1_VPORT, G_RIP, G_RPORT, 3),
    Conn(6, X_CLIENT, X_CPORT, T1_VIP, T1_VPORT, X_RIP, X_RPORT, 4),
    Conn(6, F_CLIENT, F_CPORT, T1_VIP, F_PORT, F_RIP, F_PORT, 5, app=True),
)


@dataclass(frozen=True)
class Vector:
    """One golden packet: `before` goes through the fast path, which must give `after`."""

    number: int
    description: str
    before: bytes
    after: bytes
    verdict: str
    vnet: bool = False


def pseudo_partial(src: str, dst: str, proto: int, l4len: int) -> int:
    """The non-inverted pseudo-header sum a NEEDS_CSUM packet carries in its checksum field."""
    words = struct.unpack(
        "!4H", ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
    )
    s: int = sum(words) + proto + l4len
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def vnet_header(
    flags: int = 0,
    gso_type: int = 0,
    hdr_len: int = 0,
    gso_size: int = 0,
    csum_start: int = 0,
    csum_offset: int = 0,
) -> bytes:
    """A struct virtio_net_hdr (little-endian fields, as a TUN on x86 gives it)."""
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def _b(p: Packet) -> bytes:
    return bytes(p)


def _tcp(src: str, dst: str, sport: int, dport: int, flags: str, payload: bytes = b"") -> bytes:
    pkt = IP(src=src, dst=dst, id=7) / TCP(sport=sport, dport=dport, flags=flags, seq=1000, ack=1)
    return _b(pkt / Raw(payload)) if payload else _b(pkt)


def _udp(src: str, dst: str, sport: int, dport: int, payload: bytes, zero: bool = False) -> bytes:
    u = UDP(sport=sport, dport=dport, chksum=0) if zero else UDP(sport=sport, dport=dport)
    return _b(IP(src=src, dst=dst, id=9) / u / Raw(payload))


def _icmp_error(src: str, dst: str, typ: int, code: int, quoted: bytes, mtu: int = 0) -> bytes:
    icmp = ICMP(type=typ, code=code, nexthopmtu=mtu) if typ == 3 else ICMP(type=typ, code=code)
    return _b(IP(src=src, dst=dst, id=11) / icmp / Raw(quoted))


def _partial_tcp(src: str, dst: str, sport: int, dport: int, flags: str, payload: bytes) -> bytes:
    raw = bytearray(_tcp(src, dst, sport, dport, flags, payload))
    struct.pack_into("!H", raw, 36, pseudo_partial(src, dst, 6, len(raw) - 20))
    return bytes(raw)


def _build() -> tuple[Vector, ...]:
    v: list[Vector] = []

    def add(
        desc: str, before: bytes, after: bytes | None, verdict: str, vnet: bool = False
    ) -> None:
        v.append(
            Vector(len(v) + 1, desc, before, before if after is None else after, verdict, vnet)
        )

    add(
        "thesis Table 1, client SYN to VIP:80 goes to RIP:8000",
        _tcp(T1_CLIENT, T1_VIP, T1_CPORT, T1_VPORT, "S"),
        _tcp(T1_CLIENT, T1_RIP, T1_CPORT, T1_RPORT, "S"),
        "FORWARD",
    )
    add(
        "thesis Table 1, real server SYN+ACK from RIP:8000 leaves from VIP:80",
        _tcp(T1_RIP, T1_CLIENT, T1_RPORT, T1_CPORT, "SA"),
        _tcp(T1_VIP, T1_CLIENT, T1_VPORT, T1_CPORT, "SA"),
        "FORWARD",
    )
    body = b"GET / HTTP/1.0\r\nHost: lvs\r\n\r\n"
    add(
        "TCP data client to VIP (odd payload length)",
        _tcp(T1_CLIENT, T1_VIP, T1_CPORT, T1_VPORT, "PA", body + b"!"),
        _tcp(T1_CLIENT, T1_RIP, T1_CPORT, T1_RPORT, "PA", body + b"!"),
        "FORWARD",
    )
    add(
        "TCP data real server to client",
        _tcp(T1_RIP, T1_CLIENT, T1_RPORT, T1_CPORT, "PA", b"HTTP/1.0 200 OK\r\n\r\n" * 20),
        _tcp(T1_VIP, T1_CLIENT, T1_VPORT, T1_CPORT, "PA", b"HTTP/1.0 200 OK\r\n\r\n" * 20),
        "FORWARD",
    )
    add(
        "UDP query client to VIP:53",
        _udp(U_CLIENT, U_VIP, U_CPORT, U_VPORT, b"\x12\x34query"),
        _udp(U_CLIENT, U_RIP, U_CPORT, U_RPORT, b"\x12\x34query"),
        "FORWARD",
    )
    add(
        "UDP answer real server to client",
        _udp(U_RIP, U_CLIENT, U_RPORT, U_CPORT, b"\x12\x34answer"),
        _udp(U_VIP, U_CLIENT, U_VPORT, U_CPORT, b"\x12\x34answer"),
        "FORWARD",
    )
    add(
        "UDP with checksum 0 keeps checksum 0",
        _udp(Z_CLIENT, U_VIP, Z_CPORT, U_VPORT, b"no checksum", zero=True),
        _udp(Z_CLIENT, Z_RIP, Z_CPORT, U_RPORT, b"no checksum", zero=True),
        "FORWARD",
    )
    add(
        "ICMP frag-needed from the real server about client->RIP is translated to come from VIP",
        _icmp_error(
            T1_RIP, T1_CLIENT, 3, 4, _tcp(T1_CLIENT, T1_RIP, T1_CPORT, T1_RPORT, "A"), 1400
        ),
        _icmp_error(
            T1_VIP, T1_CLIENT, 3, 4, _tcp(T1_CLIENT, T1_VIP, T1_CPORT, T1_VPORT, "A"), 1400
        ),
        "FORWARD",
    )
    add(
        "ICMP port unreachable from the client about VIP->client UDP goes to the real server",
        _icmp_error(U_CLIENT, U_VIP, 3, 3, _udp(U_VIP, U_CLIENT, U_VPORT, U_CPORT, b"abc")),
        _icmp_error(U_CLIENT, U_RIP, 3, 3, _udp(U_RIP, U_CLIENT, U_RPORT, U_CPORT, b"abc")),
        "FORWARD",
    )
    add(
        "ICMP time exceeded from a router on the client side, quoting 8 bytes of TCP",
        _icmp_error(
            "203.0.113.1", T1_VIP, 11, 0, _tcp(T1_VIP, T1_CLIENT, T1_VPORT, T1_CPORT, "A")[:28]
        ),
        _icmp_error(
            "203.0.113.1", T1_RIP, 11, 0, _tcp(T1_RIP, T1_CLIENT, T1_RPORT, T1_CPORT, "A")[:28]
        ),
        "FORWARD",
    )
    add(
        "ICMP echo request to the VIP is LOCAL",
        _b(IP(src=T1_CLIENT, dst=T1_VIP) / ICMP(type=8, id=1, seq=1) / Raw(b"ping")),
        None,
        "LOCAL",
    )
    add(
        "first fragment (MF) is FRAGMENT",
        _b(IP(src=U_CLIENT, dst=U_VIP, flags="MF") / UDP(sport=U_CPORT, dport=53) / Raw(b"x" * 8)),
        None,
        "FRAGMENT",
    )
    add(
        "later fragment (offset) is FRAGMENT",
        _b(IP(src=U_CLIENT, dst=U_VIP, frag=185, proto=17) / Raw(b"y" * 16)),
        None,
        "FRAGMENT",
    )
    add(
        "19 bytes is DROP_TRUNCATED",
        _tcp(T1_CLIENT, T1_VIP, 1, 2, "S")[:19],
        None,
        "DROP_TRUNCATED",
    )
    short_tcp = bytearray(_tcp(T1_CLIENT, T1_VIP, T1_CPORT, T1_VPORT, "A")[:36])
    struct.pack_into("!H", short_tcp, 2, 36)
    add("TCP header cut at 16 bytes is DROP_TRUNCATED", bytes(short_tcp), None, "DROP_TRUNCATED")
    v6 = bytearray(_tcp(T1_CLIENT, T1_VIP, T1_CPORT, T1_VPORT, "S"))
    v6[0] = 0x65
    add("version 6 is DROP_BAD_HEADER", bytes(v6), None, "DROP_BAD_HEADER")
    ihl4 = bytearray(_tcp(T1_CLIENT, T1_VIP, T1_CPORT, T1_VPORT, "S"))
    ihl4[0] = 0x44
    add("IHL 4 is DROP_BAD_HEADER", bytes(ihl4), None, "DROP_BAD_HEADER")
    longer = bytearray(_tcp(T1_CLIENT, T1_VIP, T1_CPORT, T1_VPORT, "S"))
    struct.pack_into("!H", longer, 2, 60)
    add("total length beyond the buffer is DROP_BAD_HEADER", bytes(longer), None, "DROP_BAD_HEADER")
    add(
        "IP options (IHL 6) are DROP_IP_OPTIONS",
        _b(IP(src=T1_CLIENT, dst=T1_VIP, options=b"\x01\x01\x01\x00") / TCP(sport=1, dport=80)),
        None,
        "DROP_IP_OPTIONS",
    )
    add(
        "GRE is DROP_UNKNOWN_PROTO",
        _b(IP(src=T1_CLIENT, dst=T1_VIP, proto=47) / Raw(b"\0" * 8)),
        None,
        "DROP_UNKNOWN_PROTO",
    )
    add(
        "TCP ACK with no connection is DROP_NO_CONN",
        _tcp("198.51.100.99", T1_VIP, 1234, 80, "A"),
        None,
        "DROP_NO_CONN",
    )
    add(
        "TCP SYN+RST with no connection is DROP_NO_CONN",
        _tcp("198.51.100.99", T1_VIP, 1234, 80, "SR"),
        None,
        "DROP_NO_CONN",
    )
    add(
        "ICMP error about an unknown flow is DROP_NO_CONN",
        _icmp_error(T1_RIP, "198.51.100.99", 3, 1, _tcp("198.51.100.99", T1_RIP, 9, 8000, "S")),
        None,
        "DROP_NO_CONN",
    )
    add(
        "ICMP error quoting only 20 bytes is DROP_BAD_ICMP",
        _icmp_error(T1_RIP, T1_CLIENT, 3, 4, _tcp(T1_CLIENT, T1_RIP, T1_CPORT, T1_RPORT, "A")[:20]),
        None,
        "DROP_BAD_ICMP",
    )
    bad = bytearray(
        _icmp_error(T1_RIP, T1_CLIENT, 3, 4, _tcp(T1_CLIENT, T1_RIP, T1_CPORT, T1_RPORT, "A"))
    )
    bad[22] ^= 0xFF
    add("ICMP error with a bad checksum is DROP_BAD_ICMP", bytes(bad), None, "DROP_BAD_ICMP")
    add(
        "ICMP error quoting ICMP (our own echo reply) is LOCAL",
        _icmp_error(
            "203.0.113.1",
            T1_VIP,
            11,
            0,
            _b(IP(src=T1_VIP, dst=T1_CLIENT) / ICMP(type=0, id=1, seq=1)),
        ),
        None,
        "LOCAL",
    )
    add("new client SYN is NEW", _tcp("198.51.100.50", T1_VIP, 5555, 80, "S"), None, "NEW")
    add("new UDP datagram is NEW", _udp("198.51.100.50", U_VIP, 5555, 53, b"q"), None, "NEW")
    add(
        "vnet header, no offload flags, UDP in",
        vnet_header() + _udp(U_CLIENT, U_VIP, U_CPORT, U_VPORT, b"vnet"),
        vnet_header() + _udp(U_CLIENT, U_RIP, U_CPORT, U_RPORT, b"vnet"),
        "FORWARD",
        vnet=True,
    )
    hdr = vnet_header(flags=1, csum_start=20, csum_offset=16)
    add(
        "NEEDS_CSUM TCP in: the partial pseudo-header sum follows the address, not the port",
        hdr + _partial_tcp(T1_CLIENT, T1_VIP, T1_CPORT, T1_VPORT, "PA", b"partial"),
        hdr + _partial_tcp(T1_CLIENT, T1_RIP, T1_CPORT, T1_RPORT, "PA", b"partial"),
        "FORWARD",
        vnet=True,
    )
    gso = vnet_header(1, 1, 40, 1448, 20, 16)
    big = bytes(range(256)) * 117
    add(
        "GSO TCPv4 30 KB from the real server keeps its vnet header, partial sum updated",
        gso + _partial_tcp(G_RIP, G_CLIENT, G_RPORT, G_CPORT, "A", big),
        gso + _partial_tcp(T1_VIP, G_CLIENT, T1_VPORT, G_CPORT, "A", big),
        "FORWARD",
        vnet=True,
    )
    udp_hdr = vnet_header(flags=1, csum_start=20, csum_offset=6)
    raw = bytearray(_udp(U_RIP, U_CLIENT, U_RPORT, U_CPORT, b"partial udp"))
    struct.pack_into("!H", raw, 26, pseudo_partial(U_RIP, U_CLIENT, 17, len(raw) - 20))
    out = bytearray(_udp(U_VIP, U_CLIENT, U_VPORT, U_CPORT, b"partial udp"))
    struct.pack_into("!H", out, 26, pseudo_partial(U_VIP, U_CLIENT, 17, len(out) - 20))
    add(
        "NEEDS_CSUM UDP out",
        udp_hdr + bytes(raw),
        udp_hdr + bytes(out),
        "FORWARD",
        vnet=True,
    )
    wrong = vnet_header(flags=1, csum_start=34, csum_offset=16)
    add(
        "NEEDS_CSUM pointing elsewhere than the TCP checksum is DROP_BAD_HEADER",
        wrong + _partial_tcp(T1_CLIENT, T1_VIP, T1_CPORT, T1_VPORT, "A", b""),
        None,
        "DROP_BAD_HEADER",
        vnet=True,
    )
    add("a 6-byte vnet read is DROP_TRUNCATED", b"\0" * 6, None, "DROP_TRUNCATED", vnet=True)
    add(
        "client data for a connection whose dest was deleted is DROP_DEST_UNAVAILABLE",
        _tcp(X_CLIENT, T1_VIP, X_CPORT, T1_VPORT, "PA", body),
        None,
        "DROP_DEST_UNAVAILABLE",
    )
    add(
        "the deleted dest's reply still leaves from VIP:80 (replies are not checked)",
        _tcp(X_RIP, X_CLIENT, X_RPORT, X_CPORT, "PA", b"HTTP/1.0 200 OK\r\n\r\n"),
        _tcp(T1_VIP, X_CLIENT, T1_VPORT, X_CPORT, "PA", b"HTTP/1.0 200 OK\r\n\r\n"),
        "FORWARD",
    )
    add(
        "client-side ICMP error about a deleted dest's connection is still translated "
        "(ip_vs_in_icmp does not check AVAILABLE)",
        _icmp_error(X_CLIENT, T1_VIP, 3, 3, _tcp(T1_VIP, X_CLIENT, T1_VPORT, X_CPORT, "A")),
        _icmp_error(X_CLIENT, X_RIP, 3, 3, _tcp(X_RIP, X_CLIENT, X_RPORT, X_CPORT, "A")),
        "FORWARD",
    )
    add(
        "NEEDS_CSUM client data for a deleted dest is DROP_DEST_UNAVAILABLE, header untouched",
        hdr + _partial_tcp(X_CLIENT, T1_VIP, X_CPORT, T1_VPORT, "PA", b"partial"),
        None,
        "DROP_DEST_UNAVAILABLE",
        vnet=True,
    )
    add(
        "an FTP control command goes to the real with verdict APP (the helper reads it)",
        _tcp(F_CLIENT, T1_VIP, F_CPORT, F_PORT, "PA", b"PASV\r\n"),
        _tcp(F_CLIENT, F_RIP, F_CPORT, F_PORT, "PA", b"PASV\r\n"),
        "APP",
    )
    reply = b"227 Entering Passive Mode (10,0,1,25,117,48).\r\n"
    add(
        "an FTP control reply leaves from VIP:21 with verdict APP, its payload untouched",
        _tcp(F_RIP, F_CLIENT, F_PORT, F_CPORT, "PA", reply),
        _tcp(T1_VIP, F_CLIENT, F_PORT, F_CPORT, "PA", reply),
        "APP",
    )
    add(
        "a pure ACK of an FTP control connection stays on the fast path (FORWARD)",
        _tcp(F_CLIENT, T1_VIP, F_CPORT, F_PORT, "A"),
        _tcp(F_CLIENT, F_RIP, F_CPORT, F_PORT, "A"),
        "FORWARD",
    )
    return tuple(v)


VECTORS = _build()
