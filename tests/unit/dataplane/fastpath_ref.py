"""Independent checksum and table helpers for the fast path tests (no code under test)."""

from __future__ import annotations

import struct
from typing import Any

from tests.vectors.nat_vectors import CONNECTIONS, DESTS, ip4, vnet_header


def ones_sum(data: bytes) -> int:
    """The folded one's-complement sum of `data` (RFC 1071), padded to even length."""
    if len(data) & 1:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ip_header_ok(pkt: bytes) -> bool:
    ihl = (pkt[0] & 15) * 4
    return ones_sum(pkt[:ihl]) == 0xFFFF


def l4_ok(pkt: bytes) -> bool:
    """A full TCP/UDP checksum check over pseudo-header and segment; UDP 0 means none."""
    proto = pkt[9]
    seg = pkt[20:]
    if proto == 17 and seg[6:8] == b"\0\0":
        return True
    pseudo = pkt[12:20] + struct.pack("!BBH", 0, proto, len(seg))
    return ones_sum(pseudo + seg) == 0xFFFF


def icmp_ok(pkt: bytes) -> bool:
    return ones_sum(pkt[20:]) == 0xFFFF


def standard_table(fp: Any, now: int = 0, max_conns: int = 64) -> Any:
    """A table with the vectors' dests and connections."""
    t = fp.ConnTable(max_conns, 16, 4)
    for d in DESTS:
        t.set_dest(d.slot, d.svc, ip4(d.addr), d.port, 0, 0)
        if not d.available:
            t.set_dest_available(d.slot, False)
    for c in CONNECTIONS:
        h = t.insert(
            c.proto,
            ip4(c.caddr),
            c.cport,
            ip4(c.vaddr),
            c.vport,
            ip4(c.daddr),
            c.dport,
            c.dest,
            now,
        )
        assert h >= 0
        if c.app:
            t.bind_app(h)
    return t


def table_state(fp: Any, t: Any) -> tuple[Any, ...]:
    """Everything observable about a table, for comparing two implementations."""
    return (
        len(t),
        t.entries(1 << 30),
        t.dest_buffer().tolist(),
        t.svc_buffer().tolist(),
        t.drops(),
    )


def syn(caddr: int, cport: int, vaddr: int, vport: int) -> bytes:
    """A vnet-headed TCP SYN caddr:cport -> vaddr:vport with correct checksums."""
    tcp = bytearray(struct.pack("!HHIIBBHHH", cport, vport, 1, 0, 5 << 4, 0x02, 64240, 0, 0))
    pseudo = struct.pack("!IIBBH", caddr, vaddr, 0, 6, len(tcp))
    struct.pack_into("!H", tcp, 16, ~ones_sum(pseudo + tcp) & 0xFFFF)
    ip = bytearray(struct.pack("!BBHHHBBHII", 0x45, 0, 40, 1, 0x4000, 64, 6, 0, caddr, vaddr))
    struct.pack_into("!H", ip, 10, ~ones_sum(bytes(ip)) & 0xFFFF)
    return vnet_header() + bytes(ip) + bytes(tcp)
