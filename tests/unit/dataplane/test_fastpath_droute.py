"""Direct routing (IP_VS_CONN_F_DROUTE) in the connection table, on both fast paths.

A connection takes its dest's forwarding method when it is inserted. Its client packets go
out unchanged, framed to the dest's link address, as one datagram on the dest's packet
socket (here one end of a Unix datagram socketpair, which shows the frame as written):
virtio_net_hdr, Ethernet header, the IP packet. Its TCP state follows the input-only table,
as ip_vs_proto_tcp.c does for NOOUTPUT connections.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.vectors.nat_vectors import _icmp_error, _tcp, _udp, ip4, vnet_header

CLIENT, CPORT = "198.51.100.20", 41000
VIP, VPORT = "192.0.2.10", 80
RIP = "10.0.1.30"
SLOT = 1
MAC = 0x02AABBCCDDEE
SRC_MAC = 0x021122334455


@pytest.fixture
def link() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def _table(fp: ModuleType, fwd: int, link_fd: int = -1, proto: int = 6) -> tuple[Any, int]:
    t = fp.ConnTable(8, 4, 2)
    t.set_dest(SLOT, 1, ip4(RIP), VPORT, 0, 0)
    t.set_dest_fwd(SLOT, fwd)
    if link_fd >= 0:
        t.set_dest_link(SLOT, link_fd, MAC, SRC_MAC)
    h = t.insert(proto, ip4(CLIENT), CPORT, ip4(VIP), VPORT, ip4(RIP), VPORT, SLOT, 0)
    assert h >= 0
    return t, h


def _frame(pkt: bytes, vnet: bytes = bytes(10)) -> bytes:
    return vnet + MAC.to_bytes(6, "big") + SRC_MAC.to_bytes(6, "big") + b"\x08\x00" + pkt


def test_a_connection_takes_its_dests_method_and_nooutput(fastpath: ModuleType) -> None:
    fp = fastpath
    t, h = _table(fp, fp.CONN_F_DROUTE)
    flags = t.conn_info(h)[9]
    assert flags & fp.CONN_F_FWD_MASK == fp.CONN_F_DROUTE
    assert flags & fp.CONN_F_NOOUTPUT
    assert t.dest_buffer()[SLOT * fp.DEST_FIELDS + fp.DEST_FWD] == fp.CONN_F_DROUTE
    # An edit of the method changes new connections only (ip_vs_bind_dest copies it).
    t.set_dest_fwd(SLOT, fp.CONN_F_MASQ)
    assert t.conn_info(h)[9] & fp.CONN_F_FWD_MASK == fp.CONN_F_DROUTE
    h2 = t.insert(6, ip4(CLIENT), CPORT + 1, ip4(VIP), VPORT, ip4(RIP), VPORT, SLOT, 0)
    assert t.conn_info(h2)[9] & (fp.CONN_F_FWD_MASK | fp.CONN_F_NOOUTPUT) == 0
    with pytest.raises(ValueError, match="fwd"):
        t.set_dest_fwd(SLOT, 1)
    with pytest.raises(ValueError, match="mac"):
        t.set_dest_link(SLOT, 3, 1 << 48, 0)


def test_client_packets_go_out_unchanged_framed_to_the_real(
    fastpath: ModuleType, link: tuple[socket.socket, socket.socket]
) -> None:
    fp = fastpath
    tx, rx = link
    t, h = _table(fp, fp.CONN_F_DROUTE, tx.fileno())
    syn = _tcp(CLIENT, VIP, CPORT, VPORT, "S")
    buf = bytearray(syn)
    assert t.process(buf, 10) == fp.ROUTE
    assert bytes(buf) == syn
    assert rx.recv(2048) == _frame(syn)
    assert fp.STATE_NAMES[t.conn_info(h)[8]] == "SYN_RECV"
    b = SLOT * fp.DEST_FIELDS
    assert t.dest_buffer()[b + fp.DEST_INPKTS] == 1
    assert t.dest_buffer()[b + fp.DEST_INBYTES] == len(syn)


def test_vnet_offsets_move_past_the_ethernet_header(
    fastpath: ModuleType, link: tuple[socket.socket, socket.socket]
) -> None:
    fp = fastpath
    tx, rx = link
    t, _ = _table(fp, fp.CONN_F_DROUTE, tx.fileno())
    pkt = _tcp(CLIENT, VIP, CPORT, VPORT, "A", b"x" * 100)
    vnet = vnet_header(flags=fp.VNET_F_NEEDS_CSUM, hdr_len=40, csum_start=20, csum_offset=16)
    buf = bytearray(vnet + pkt)
    assert t.process_vnet(buf, 10) == fp.ROUTE
    moved = vnet_header(flags=fp.VNET_F_NEEDS_CSUM, hdr_len=54, csum_start=34, csum_offset=16)
    assert rx.recv(2048) == _frame(pkt, moved)


def test_input_only_states_of_a_dr_stream(
    fastpath: ModuleType, link: tuple[socket.socket, socket.socket]
) -> None:
    """SYN -> SYN_RECV, ACK -> ESTABLISHED, client FIN -> FIN_WAIT (not CLOSE_WAIT as with
    NAT), ACK keeps FIN_WAIT; a RST in SYNACK goes to CLOSE (input-only) where NAT keeps
    SYN_RECV."""
    fp = fastpath
    tx, _ = link
    t, h = _table(fp, fp.CONN_F_DROUTE, tx.fileno())
    seen = []
    for flags in ("S", "A", "FA", "A"):
        assert t.process(bytearray(_tcp(CLIENT, VIP, CPORT, VPORT, flags)), 10) == fp.ROUTE
        seen.append(fp.STATE_NAMES[t.conn_info(h)[8]])
    assert seen == ["SYN_RECV", "ESTABLISHED", "FIN_WAIT", "FIN_WAIT"]
    b = SLOT * fp.DEST_FIELDS
    assert (t.dest_buffer()[b + fp.DEST_ACTIVE], t.dest_buffer()[b + fp.DEST_INACTIVE]) == (0, 1)
    t.set_state(h, fp.SYNACK, 20)
    t.process(bytearray(_tcp(CLIENT, VIP, CPORT, VPORT, "R")), 30)
    assert fp.STATE_NAMES[t.conn_info(h)[8]] == "CLOSE"


def test_no_link_address_is_drop_no_neigh_and_a_failed_write_drop_tx(
    fastpath: ModuleType,
) -> None:
    fp = fastpath
    t, _ = _table(fp, fp.CONN_F_DROUTE)
    assert t.process(bytearray(_tcp(CLIENT, VIP, CPORT, VPORT, "S")), 10) == fp.DROP_NO_NEIGH
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.close()  # the peer is gone: the write fails
    try:
        t.set_dest_link(SLOT, a.fileno(), MAC, SRC_MAC)
        assert t.process(bytearray(_tcp(CLIENT, VIP, CPORT, VPORT, "A")), 10) == fp.DROP_TX
    finally:
        a.close()
    drops = t.drops()
    assert drops["DROP_NO_NEIGH"] == 1
    assert drops["DROP_TX"] == 1
    assert "ROUTE" not in drops


def test_server_side_packets_of_a_dr_connection_are_not_ours(
    fastpath: ModuleType, link: tuple[socket.socket, socket.socket]
) -> None:
    fp = fastpath
    tx, rx = link
    t, _ = _table(fp, fp.CONN_F_DROUTE, tx.fileno())
    reply = bytearray(_tcp(RIP, CLIENT, VPORT, CPORT, "SA"))
    assert t.process(reply, 10) == fp.DROP_NO_CONN
    with pytest.raises(BlockingIOError):
        rx.recv(2048)


def test_udp_and_an_icmp_error_go_to_the_real_unchanged(
    fastpath: ModuleType, link: tuple[socket.socket, socket.socket]
) -> None:
    fp = fastpath
    tx, rx = link
    t, _ = _table(fp, fp.CONN_F_DROUTE, tx.fileno(), proto=17)
    dgram = _udp(CLIENT, VIP, CPORT, VPORT, b"query")
    assert t.process(bytearray(dgram), 10) == fp.ROUTE
    assert rx.recv(2048) == _frame(dgram)
    # A router on the client's path says the real's reply (VIP -> client) was too big.
    quoted = _udp(VIP, CLIENT, VPORT, CPORT, b"a reply" * 10)
    err = _icmp_error("203.0.113.1", VIP, 3, 4, quoted, mtu=1400)
    assert t.process(bytearray(err), 20) == fp.ROUTE
    assert rx.recv(2048) == _frame(err)


def test_masq_is_unchanged_by_a_link(
    fastpath: ModuleType, link: tuple[socket.socket, socket.socket]
) -> None:
    fp = fastpath
    tx, rx = link
    t, _ = _table(fp, fp.CONN_F_MASQ, tx.fileno())
    buf = bytearray(_tcp(CLIENT, VIP, CPORT, VPORT, "S"))
    assert t.process(buf, 10) == fp.FORWARD
    assert struct.unpack_from("!I", buf, 16)[0] == ip4(RIP)
    with pytest.raises(BlockingIOError):
        rx.recv(2048)


def test_drain_sends_routed_packets_and_keeps_none(
    fastpath: ModuleType, link: tuple[socket.socket, socket.socket]
) -> None:
    fp = fastpath
    tx, rx = link
    t, _ = _table(fp, fp.CONN_F_DROUTE, tx.fileno())
    r, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    r.setblocking(False)
    try:
        pkts = [_tcp(CLIENT, VIP, CPORT, VPORT, "A", bytes([i]) * 10) for i in range(3)]
        for p in pkts:
            w.send(bytes(10) + p)
        out: list[tuple[int, bytearray]] = []
        assert t.drain(r.fileno(), 10, out, write_fd=w.fileno()) == 3
        assert out == []
        assert [rx.recv(2048) for _ in pkts] == [_frame(p) for p in pkts]
    finally:
        r.close()
        w.close()


def test_sync_records_carry_the_method(fastpath: ModuleType) -> None:
    fp = fastpath
    t = fp.ConnTable(8, 4, 2)
    t.set_dest(SLOT, 1, ip4(RIP), VPORT, 0, 0)
    t.set_dest_fwd(SLOT, fp.CONN_F_DROUTE)
    t.enable_sync_log(8)
    t.insert(6, ip4(CLIENT), CPORT, ip4(VIP), VPORT, ip4(RIP), VPORT, SLOT, 0)
    (rec,), lost = t.sync_changes(8)
    assert lost == 0
    assert rec[9] == fp.CONN_F_INACTIVE | fp.CONN_F_DROUTE | fp.CONN_F_NOOUTPUT


def test_a_dr_reals_reply_routed_through_the_director_is_forwarded_unchanged(
    fastpath: ModuleType, link: tuple[socket.socket, socket.socket]
) -> None:
    """The kernel selftest's DR topology: the real's default route is the director. Its
    reply (from the VIP) reaches the TUN; it is forwarded as it is, state untouched."""
    fp = fastpath
    tx, _ = link
    t, h = _table(fp, fp.CONN_F_DROUTE, tx.fileno())
    t.process(bytearray(_tcp(CLIENT, VIP, CPORT, VPORT, "S")), 10)
    for flags in ("SA", "A", "FA"):
        reply = _tcp(VIP, CLIENT, VPORT, CPORT, flags)
        buf = bytearray(reply)
        assert t.process(buf, 20) == fp.FORWARD
        assert bytes(buf) == reply
    assert fp.STATE_NAMES[t.conn_info(h)[8]] == "SYN_RECV"
    assert t.dest_buffer()[SLOT * fp.DEST_FIELDS + fp.DEST_OUTPKTS] == 0
    # A NAT connection's reply from the VIP is not one: no connection, so a SYN-ACK is NEW.
    m, _ = _table(fp, fp.CONN_F_MASQ)
    assert m.process(bytearray(_tcp(VIP, CLIENT, VPORT, CPORT, "SA")), 20) == fp.NEW


def test_tunnelled_connections_leave_the_packet_to_the_caller(fastpath: ModuleType) -> None:
    """IP_VS_CONN_F_TUNNEL: counted, input-only states, packet unchanged, verdict TUNNEL
    (the caller encapsulates it to the real's address); drain hands it over."""
    fp = fastpath
    t, h = _table(fp, fp.CONN_F_TUNNEL)
    assert t.conn_info(h)[9] & (fp.CONN_F_FWD_MASK | fp.CONN_F_NOOUTPUT) == (
        fp.CONN_F_TUNNEL | fp.CONN_F_NOOUTPUT
    )
    syn = _tcp(CLIENT, VIP, CPORT, VPORT, "S")
    buf = bytearray(syn)
    assert t.process(buf, 10) == fp.TUNNEL
    assert bytes(buf) == syn
    assert fp.STATE_NAMES[t.conn_info(h)[8]] == "SYN_RECV"
    assert t.dest_buffer()[SLOT * fp.DEST_FIELDS + fp.DEST_INPKTS] == 1
    quoted = _tcp(VIP, CLIENT, VPORT, CPORT, "A", b"x" * 40)
    err = bytearray(_icmp_error("203.0.113.1", VIP, 3, 4, quoted, mtu=1400))
    assert t.process(err, 20) == fp.TUNNEL
    r, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    r.setblocking(False)
    try:
        ack = _tcp(CLIENT, VIP, CPORT, VPORT, "A")
        w.send(bytes(10) + ack)
        out: list[tuple[int, bytearray]] = []
        assert t.drain(r.fileno(), 30, out, write_fd=w.fileno()) == 1
        assert out == [(fp.TUNNEL, bytearray(bytes(10) + ack))]
    finally:
        r.close()
        w.close()
    assert "TUNNEL" not in t.drops()


def test_dest_of_finds_the_connection_of_a_client_packet(fastpath: ModuleType) -> None:
    fp = fastpath
    t, _ = _table(fp, fp.CONN_F_TUNNEL)
    pkt = _tcp(CLIENT, VIP, CPORT, VPORT, "A")
    assert t.dest_of(bytearray(pkt), 0) == SLOT
    assert t.dest_of(bytearray(bytes(10) + pkt), fp.VNET_HDR_LEN) == SLOT
    assert t.dest_of(bytearray(_tcp(CLIENT, VIP, CPORT + 1, VPORT, "A")), 0) == -1
    assert t.dest_of(bytearray(b"\x45" + bytes(10)), 0) == -1
    with pytest.raises(ValueError, match="offset"):
        t.dest_of(bytearray(pkt), 11)
