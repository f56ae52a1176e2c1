"""Director's packet loop over a SOCK_SEQPACKET socketpair standing in for the TUN fd.

drain() hands over each packet it cannot forward with its verdict; the loop acts on that
verdict, except for a NEW packet queued behind one that created a connection, which is
classified again (a retransmitted SYN belongs to the connection its first copy made).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from director.config import parse_config
from director.daemon import takeover
from director.daemon.director import Director, build_ipvs
from tests.unit.dataplane.fastpath_ref import ip_header_ok, l4_ok, ones_sum, syn
from tests.vectors.nat_vectors import vnet_header

CF = """\
primary = 10.0.1.1
network = nat
nat_router = 192.168.1.254 eth1:1

virtual web {
    address = 10.0.1.100
    protocol = tcp
    port = 80
    scheduler = rr
    server real1 {
        address = 192.168.1.10
    }
    server real2 {
        address = 192.168.1.11
    }
}
"""
VIP = 0x0A000164  # 10.0.1.100
CLIENT = 0xC6336407  # 198.51.100.7
REALS = {0xC0A8010A, 0xC0A8010B}  # real1, real2


def loop_director(table: Any) -> Director:
    """A Director on CF using ``table`` (a ConnTable of either fast path), not run: it has
    no plumbing; set its ``_fd`` and call ``_on_readable``. benchmarks.bench_fastpath too."""
    d = Director(parse_config(CF))
    d.table = table
    d.ipvs = build_ipvs(d.cfg, d.table)
    return d


@pytest.fixture
def loop(fastpath: ModuleType) -> Iterator[tuple[Director, socket.socket]]:
    d = loop_director(fastpath.ConnTable(64))
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    peer.settimeout(5)
    d._fd = ours.fileno()
    try:
        yield d, peer
    finally:
        ours.close()
        peer.close()


def _dst(pkt: bytes) -> tuple[int, int]:
    daddr: int = struct.unpack_from("!I", pkt, 10 + 16)[0]
    dport: int = struct.unpack_from("!H", pkt, 10 + 22)[0]
    return daddr, dport


def test_syns_of_new_clients_each_get_a_connection(
    loop: tuple[Director, socket.socket],
) -> None:
    d, peer = loop
    for cport in (4000, 4001):
        peer.send(syn(CLIENT, cport, VIP, 80))
    d._on_readable(d._fd, 0)
    out = [peer.recv(2048) for _ in range(2)]
    assert {_dst(p) for p in out} == {(r, 80) for r in REALS}  # rr: one each
    assert all(ip_header_ok(p[10:]) and l4_ok(p[10:]) for p in out)
    assert len(d.table) == 2
    assert d.statistics().decided == 2


def test_a_retransmitted_syn_in_the_same_wake_up_follows_its_first_copy(
    loop: tuple[Director, socket.socket],
) -> None:
    d, peer = loop
    for _ in range(2):
        peer.send(syn(CLIENT, 4000, VIP, 80))
    d._on_readable(d._fd, 0)
    first, second = (peer.recv(2048) for _ in range(2))
    assert _dst(first) == _dst(second)
    assert _dst(first)[0] in REALS
    assert len(d.table) == 1
    assert d.statistics().decided == 1


def test_a_syn_to_no_service_is_answered_port_unreachable(
    loop: tuple[Director, socket.socket],
) -> None:
    d, peer = loop
    peer.send(syn(CLIENT, 4000, VIP, 81))
    d._on_readable(d._fd, 0)
    reply = peer.recv(2048)
    assert reply[10 + 9] == 1  # ICMP
    assert reply[10 + 20 : 10 + 22] == b"\x03\x03"  # destination unreachable, port
    assert len(d.table) == 0
    assert d.statistics().no_service == 1


def fragment(
    payload: bytes, offset: int, more: bool, proto: int, src: int, dst: int, ident: int = 77
) -> bytes:
    """A vnet-headed IPv4 fragment carrying ``payload`` at byte ``offset`` of its datagram."""
    frag = (0x2000 if more else 0) | (offset // 8)
    ip = bytearray(
        struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0, src, dst)
    )
    struct.pack_into("!H", ip, 10, ~ones_sum(bytes(ip)) & 0xFFFF)
    return vnet_header() + bytes(ip) + payload


def test_a_syn_in_fragments_with_a_hole_makes_no_connection_and_reaches_no_real(
    loop: tuple[Director, socket.socket],
) -> None:
    d, peer = loop
    segment = syn(CLIENT, 4000, VIP, 80)[10 + 20 :] + bytes(20)  # TCP header + 20 bytes
    # [0,8) more, [16,24) last, [32,40) more: bytes 8..16 never arrive.
    for start, more in ((0, True), (16, False), (32, True)):
        peer.send(fragment(segment[start : start + 8], start, more, 6, CLIENT, VIP))
    d._on_readable(d._fd, 0)
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(2048)
    assert len(d.table) == 0
    assert d.statistics().decided == 0
    assert d.statistics().drops["fragment_beyond_end"] == 1


def test_a_fragmented_echo_request_to_the_vip_is_answered(
    loop: tuple[Director, socket.socket],
) -> None:
    d, peer = loop
    data = bytes(range(256)) * 12  # 3,072 bytes of echo data
    icmp = bytearray(struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + data)
    struct.pack_into("!H", icmp, 2, ~ones_sum(bytes(icmp)) & 0xFFFF)
    for start in range(0, len(icmp), 1480):
        piece = bytes(icmp[start : start + 1480])
        peer.send(fragment(piece, start, start + 1480 < len(icmp), 1, CLIENT, VIP))
    d._on_readable(d._fd, 0)
    reply = peer.recv(8192)[10:]
    assert ip_header_ok(reply)
    assert struct.unpack_from("!II", reply, 12) == (VIP, CLIENT)
    assert reply[9] == 1
    assert reply[20] == 0
    assert reply[24:28] == struct.pack("!HH", 0x1234, 1)
    assert reply[28:] == data
    assert ones_sum(reply[20:]) == 0xFFFF
    assert d.statistics().echo_replies == 1


def test_a_full_table_drops_a_new_syn_silently_and_counts_it_once(fastpath: ModuleType) -> None:
    d = loop_director(fastpath.ConnTable(2))
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    peer.setblocking(False)
    d._fd = ours.fileno()
    try:
        for cport in (4000, 4001):
            peer.send(syn(CLIENT, cport, VIP, 80))
        d._on_readable(d._fd, 0)
        for _ in range(2):
            peer.recv(2048)
        # Both past their handshake: nothing to evict.
        for h in range(2):
            d.table.set_state(h, 1, 0)
        peer.send(syn(CLIENT, 4002, VIP, 80))
        d._on_readable(d._fd, 0)
        with pytest.raises(BlockingIOError):
            peer.recv(2048)  # no ICMP error, nothing forwarded
        stats = d.statistics()
        assert (stats.table_full, stats.no_dest, stats.no_service) == (1, 0, 0)
        assert stats.drops["DROP_TABLE_FULL"] == 1
    finally:
        ours.close()
        peer.close()


def test_a_syn_flood_in_a_full_table_evicts_half_open_entries_not_established_ones(
    fastpath: ModuleType,
) -> None:
    d = loop_director(fastpath.ConnTable(8))
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    peer.settimeout(5)
    d._fd = ours.fileno()
    try:
        peer.send(syn(CLIENT, 5000, VIP, 80))
        d._on_readable(d._fd, 0)
        peer.recv(2048)
        d.table.set_state(0, 1, 0)  # the legitimate client completed its handshake
        for i in range(100):  # spoofed SYNs, each from a new source
            peer.send(syn(0xCB007100 + i, 1024 + i, VIP, 80))
            d._on_readable(d._fd, 1 + i)
            peer.recv(2048)
        assert d.table.conn_info(0)[2] == 5000
        assert d.table.evictions() == 100 - 7
        assert d.statistics().table_full == 0
    finally:
        ours.close()
        peer.close()


def test_a_takeover_continues_the_round_robin_where_it_was(fastpath: ModuleType) -> None:
    old, new = loop_director(fastpath.ConnTable(64)), loop_director(fastpath.ConnTable(64))
    (svc,) = old.ipvs.services.values()
    first = svc.schedule(6, CLIENT, 1000, VIP, 80, 0)
    positions = takeover.scheduler_positions(old.ipvs)
    assert takeover.adopt_positions(new.ipvs, positions) == 1
    (succ,) = new.ipvs.services.values()
    picks = [succ.schedule(6, CLIENT, 1001 + i, VIP, 80, 0) for i in range(2)]
    assert first is not None
    assert [d.addr for d in picks if d] == [
        d.addr for d in (svc.schedule(6, CLIENT, 2000 + i, VIP, 80, 0) for i in range(2)) if d
    ]
    # A service whose destinations differ here keeps its own rotation.
    other = [[*positions[0][:5], [[1, 80]], positions[0][6]]]
    assert takeover.adopt_positions(new.ipvs, other) == 0
