"""The FTP helper (ip_vs_ftp) on both fast paths: rewrite, expected entries, seq/ack offsets.

Topology of every test: client 203.0.113.7 -> VIP 10.0.1.5:21 -> real 192.168.1.10:21 (the
lab's addresses, where the 227 reply's address is 4 characters longer than the VIP's).
Packets are built here with independently computed checksums and go through
``process_vnet`` and, on verdict APP, through ``FtpHelper.handle``, as the daemon does.
"""

from __future__ import annotations

import socket
import struct
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from director.dataplane import _fastpath_py
from director.dataplane.ftp import FtpHelper
from tests.unit.dataplane.fastpath_ref import ones_sum
from tests.vectors.nat_vectors import ip4

CLIENT, CPORT = ip4("203.0.113.7"), 40000
VIP, REAL, FTP = ip4("10.0.1.5"), ip4("192.168.1.10"), 21
C_ISN, S_ISN = 1000, 5000
NOW = 1000


def tcp(
    src: int,
    dst: int,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int = 0x18,
    payload: bytes = b"",
    partial: bool = False,
) -> bytearray:
    """A vnet-headed IPv4/TCP packet with correct checksums (or the NEEDS_CSUM partial sum)."""
    seg = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0))
    seg += payload
    pseudo = struct.pack("!IIBBH", src, dst, 0, 6, len(seg))
    if partial:
        struct.pack_into("!H", seg, 16, ones_sum(pseudo))
        vnet = struct.pack("<BBHHHH", 1, 0, 0, 0, 20, 16)
    else:
        struct.pack_into("!H", seg, 16, ~ones_sum(pseudo + seg) & 0xFFFF)
        vnet = bytes(10)
    ip = bytearray(
        struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(seg), 1, 0x4000, 64, 6, 0, src, dst)
    )
    struct.pack_into("!H", ip, 10, ~ones_sum(bytes(ip)) & 0xFFFF)
    return bytearray(vnet) + ip + seg


def fields(buf: bytearray) -> tuple[int, int, int, int, int, int, bytes]:
    """(saddr, daddr, sport, dport, seq, ack, payload) of a vnet-headed packet."""
    saddr, daddr = struct.unpack_from("!II", buf, 22)
    sport, dport, seq, ack = struct.unpack_from("!HHII", buf, 30)
    doff = (buf[42] >> 4) * 4
    return saddr, daddr, sport, dport, seq, ack, bytes(buf[30 + doff :])


def checksums_ok(buf: bytearray) -> bool:
    pkt = bytes(buf[10:])
    if ones_sum(pkt[:20]) != 0xFFFF or (pkt[2] << 8 | pkt[3]) != len(pkt):
        return False
    pseudo = pkt[12:20] + struct.pack("!BBH", 0, 6, len(pkt) - 20)
    if buf[0] & 1:
        return int.from_bytes(pkt[36:38], "big") == ones_sum(pseudo)
    return ones_sum(pseudo + pkt[20:]) == 0xFFFF


class Session:
    """One FTP control connection through a table, driven packet by packet."""

    def __init__(self, fp: ModuleType) -> None:
        self.fp = fp
        self.t = fp.ConnTable(64, 16, 4)
        self.t.set_dest(0, 0, REAL, FTP, 0, 0)
        self.ftp = FtpHelper(self.t)
        self.now = NOW
        assert self.send(tcp(CLIENT, VIP, CPORT, FTP, C_ISN, 0, 0x02))[0] == fp.NEW
        self.h = self.t.insert(6, CLIENT, CPORT, VIP, FTP, REAL, FTP, 0, NOW)
        self.t.bind_app(self.h)
        assert self.send(tcp(CLIENT, VIP, CPORT, FTP, C_ISN, 0, 0x02))[0] == fp.FORWARD
        assert self.send(tcp(REAL, CLIENT, FTP, CPORT, S_ISN, C_ISN + 1, 0x12))[0] == fp.FORWARD
        assert self.send(tcp(CLIENT, VIP, CPORT, FTP, C_ISN + 1, S_ISN + 1, 0x10))[0] == fp.FORWARD
        assert self.t.conn_info(self.h)[8] == fp.ESTABLISHED

    def send(self, buf: bytearray) -> tuple[int, bytearray]:
        v = self.t.process_vnet(buf, self.now)
        if v == self.fp.APP:
            buf = self.ftp.handle(buf, self.now)
        return v, buf

    def reply(self, seq: int, payload: bytes, ack: int = C_ISN + 1) -> bytearray:
        """A server payload packet at S_ISN + 1 + seq; what the client receives."""
        v, out = self.send(tcp(REAL, CLIENT, FTP, CPORT, S_ISN + 1 + seq, ack, 0x18, payload))
        assert v == self.fp.APP
        assert checksums_ok(out)
        return out

    def command(self, seq: int, payload: bytes, ack: int) -> bytearray:
        v, out = self.send(tcp(CLIENT, VIP, CPORT, FTP, C_ISN + 1 + seq, ack, 0x18, payload))
        assert v == self.fp.APP
        assert checksums_ok(out)
        return out


PASV_REAL = b"227 Entering Passive Mode (192,168,1,10,117,48).\r\n"
PASV_VIP = b"227 Entering Passive Mode (10,0,1,5,117,48).\r\n"
DIFF = len(PASV_VIP) - len(PASV_REAL)


def test_227_is_rewritten_to_the_vip_and_expects_the_data_connection(fastpath: ModuleType) -> None:
    s = Session(fastpath)
    out = s.reply(0, PASV_REAL)
    saddr, daddr, sport, dport, seq, _, payload = fields(out)
    assert (saddr, sport, daddr, dport) == (VIP, FTP, CLIENT, CPORT)
    assert payload == PASV_VIP
    assert seq == S_ISN + 1
    data = s.t.lookup(6, CLIENT, 0, VIP, 30000)
    info = s.t.conn_info(data)
    assert info[5:9] == (REAL, 30000, 0, fastpath.LISTEN)
    assert info[12] == s.h
    assert info[9] & fastpath.CONN_F_NO_CPORT
    # The client's data SYN fills in its port and reaches the real's data port.
    v, syn = s.send(tcp(CLIENT, VIP, 50000, 30000, 9000, 0, 0x02))
    assert v == fastpath.FORWARD
    assert fields(syn)[:4] == (CLIENT, REAL, 50000, 30000)
    info = s.t.conn_info(data)
    assert info[2] == 50000
    assert not info[9] & fastpath.CONN_F_NO_CPORT
    assert s.t.lookup(6, CLIENT, 0, VIP, 30000) == -1
    # Its reply leaves from VIP:30000; it counts on the real like any connection.
    v, synack = s.send(tcp(REAL, CLIENT, 30000, 50000, 7000, 9001, 0x12))
    assert v == fastpath.FORWARD
    assert fields(synack)[:4] == (VIP, CLIENT, 30000, 50000)
    assert s.t.dest_buffer()[fastpath.DEST_CONNS] == 2
    assert s.ftp.statistics().rewritten == 1
    assert s.ftp.statistics().expected == 1


def test_seq_and_ack_follow_the_length_change_both_ways(fastpath: ModuleType) -> None:
    s = Session(fastpath)
    s.reply(0, PASV_REAL)
    n = len(PASV_REAL)
    # The client acknowledges the rewritten reply: the real sees its own numbering.
    v, ack = s.send(tcp(CLIENT, VIP, CPORT, FTP, C_ISN + 1, S_ISN + 1 + n + DIFF, 0x10))
    assert v == fastpath.FORWARD
    assert checksums_ok(ack)
    assert fields(ack)[5] == S_ISN + 1 + n
    # The real's next reply, and its pure ACK, are shifted by the difference.
    out = s.reply(n, b"150 Here comes the directory listing.\r\n")
    assert fields(out)[4] == S_ISN + 1 + n + DIFF
    v, pure = s.send(tcp(REAL, CLIENT, FTP, CPORT, S_ISN + 1 + n + 39, C_ISN + 7, 0x10))
    assert v == fastpath.FORWARD
    assert checksums_ok(pure)
    assert fields(pure)[4] == S_ISN + 1 + n + 39 + DIFF
    assert s.t.seq_state(s.h)[3:] == (S_ISN + 1, DIFF, 0)


def test_a_retransmitted_227_is_rewritten_the_same_way(fastpath: ModuleType) -> None:
    s = Session(fastpath)
    first = s.reply(0, PASV_REAL)
    state = s.t.seq_state(s.h)
    again = s.reply(0, PASV_REAL)
    assert bytes(again[10:]) == bytes(first[10:])
    assert s.t.seq_state(s.h) == state
    assert s.ftp.statistics().expected == 1


def test_reordered_segments_use_the_previous_offset(fastpath: ModuleType) -> None:
    """Two rewrites: data sent between them keeps the first offset when it comes late (the
    kernel keeps two offsets only, so data from before the first is then shifted too)."""
    s = Session(fastpath)
    n = len(PASV_REAL)
    mid = b"150 Opening BINARY mode data connection.\r\n"
    s.reply(0, PASV_REAL)
    # A late copy of data from before the 227 moves by nothing (previous_delta is 0).
    early = s.reply(-10, b"200 OK....\r\n")
    assert fields(early)[4] == S_ISN + 1 - 10
    s.reply(n, mid)
    second = b"227 Entering Passive Mode (192,168,1,10,117,49).\r\n"
    at = n + len(mid)
    out = s.reply(at, second)
    assert fields(out)[4] == S_ISN + 1 + at + DIFF
    assert s.t.seq_state(s.h)[3:] == (S_ISN + 1 + at, 2 * DIFF, DIFF)
    # A late copy of the middle segment (before the second 227) still moves by DIFF only.
    late = s.reply(n, mid)
    assert fields(late)[4] == S_ISN + 1 + n + DIFF
    # A late client ACK of the middle segment maps back with the previous offset.
    _v, ack = s.send(tcp(CLIENT, VIP, CPORT, FTP, C_ISN + 1, S_ISN + 1 + at + DIFF, 0x10))
    assert fields(ack)[5] == S_ISN + 1 + at
    _v, ack = s.send(
        tcp(CLIENT, VIP, CPORT, FTP, C_ISN + 1, S_ISN + 1 + at + len(second) + 2 * DIFF, 0x10)
    )
    assert fields(ack)[5] == S_ISN + 1 + at + len(second)


def test_a_reply_split_across_segments_passes_unchanged_and_is_counted(
    fastpath: ModuleType,
) -> None:
    s = Session(fastpath)
    head, tail = PASV_REAL[:20], PASV_REAL[20:]
    assert fields(s.reply(0, head))[6] == head
    assert fields(s.reply(len(head), tail))[6] == tail
    assert s.ftp.statistics().split == 1
    assert s.t.lookup(6, CLIENT, 0, VIP, 30000) == -1
    assert s.t.seq_state(s.h) == (0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    "payload",
    [
        b"227 Entering Passive Mode (192,168,1,300,117,48).\r\n",
        b"227 Entering Passive Mode.\r\n",
        b"227 Entering Passive Mode (192,168,1,10,0,0).\r\n",
        b"229 Entering Extended Passive Mode (|||99999|).\r\n",
        b"229 Entering Extended Passive Mode (|1|2|).\r\n",
    ],
)
def test_malformed_replies_pass_unchanged_and_are_counted(
    fastpath: ModuleType, payload: bytes
) -> None:
    s = Session(fastpath)
    assert fields(s.reply(0, payload))[6] == payload
    assert s.ftp.statistics().malformed == 1
    assert len(s.t) == 1


@pytest.mark.parametrize(
    "payload",
    [
        b"PORT 203,0,113,7,999,1\r\n",
        b"PORT x\r\n",
        b"EPRT |2|::1|5000|\r\n",
        b"EPRT |1|1.2.3|5|\r\n",
    ],
)
def test_malformed_commands_pass_unchanged_and_are_counted(
    fastpath: ModuleType, payload: bytes
) -> None:
    s = Session(fastpath)
    assert fields(s.command(0, payload, S_ISN + 1))[6] == payload
    assert s.ftp.statistics().malformed == 1
    assert len(s.t) == 1


def test_229_expects_the_data_connection_without_a_rewrite(fastpath: ModuleType) -> None:
    s = Session(fastpath)
    reply = b"229 Entering Extended Passive Mode (|||30001|).\r\n"
    assert fields(s.reply(0, reply))[6] == reply
    data = s.t.lookup(6, CLIENT, 0, VIP, 30001)
    assert s.t.conn_info(data)[5:9] == (REAL, 30001, 0, fastpath.LISTEN)
    assert s.t.seq_state(s.h) == (0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    "command",
    [
        b"PORT 203,0,113,7,195,80\r\n",
        b"port  203,0,113,7,195,80\r\n",
        b"EPRT |1|203.0.113.7|50000|\r\n",
    ],
)
def test_port_and_eprt_let_the_real_connect_from_vip_20(
    fastpath: ModuleType, command: bytes
) -> None:
    s = Session(fastpath)
    out = s.command(0, command, S_ISN + 1)
    assert fields(out)[:4] == (CLIENT, REAL, CPORT, FTP)
    assert fields(out)[6] == command
    data = s.t.lookup(6, CLIENT, 50000, VIP, 20)
    info = s.t.conn_info(data)
    assert info[5:9] == (REAL, 20, 0, fastpath.LISTEN)
    assert info[12] == s.h
    v, syn = s.send(tcp(REAL, CLIENT, 20, 50000, 7000, 0, 0x02))
    assert v == fastpath.FORWARD
    assert checksums_ok(syn)
    assert fields(syn)[:4] == (VIP, CLIENT, 20, 50000)
    v, synack = s.send(tcp(CLIENT, VIP, 50000, 20, 9000, 7001, 0x12))
    assert v == fastpath.FORWARD
    assert fields(synack)[:4] == (CLIENT, REAL, 50000, 20)


def test_the_helper_acts_only_while_the_control_connection_is_established(
    fastpath: ModuleType,
) -> None:
    s = Session(fastpath)
    v, _ = s.send(tcp(CLIENT, VIP, CPORT, FTP, C_ISN + 1, S_ISN + 1, 0x11))
    assert v == fastpath.FORWARD
    assert s.t.conn_info(s.h)[8] == fastpath.CLOSE_WAIT
    assert fields(s.reply(0, PASV_REAL, C_ISN + 2))[6] == PASV_REAL
    assert len(s.t) == 1


def test_needs_csum_packets_get_the_partial_sum_of_their_new_length(
    fastpath: ModuleType,
) -> None:
    s = Session(fastpath)
    buf = tcp(REAL, CLIENT, FTP, CPORT, S_ISN + 1, C_ISN + 1, 0x18, PASV_REAL, partial=True)
    v, out = s.send(buf)
    assert v == fastpath.APP
    assert fields(out)[6] == PASV_VIP
    assert checksums_ok(out)


def test_expected_entries_expire_with_listen_and_release_the_control_connection(
    fastpath: ModuleType,
) -> None:
    s = Session(fastpath)
    s.reply(0, PASV_REAL)
    d = s.t.dest_buffer()
    assert d[fastpath.DEST_INACTIVE] == 1
    assert d[fastpath.DEST_ACTIVE] == 1
    assert s.t.expire(NOW + 119_000) == 0
    assert s.t.expire(NOW + 121_000) == 1
    assert len(s.t) == 1
    assert s.t.conn_info(s.h)[11] == 0


def test_drain_hands_app_packets_up_and_stops_after_one(fastpath: ModuleType) -> None:
    """An APP packet ends drain, so the offsets it records apply to the packets after it."""
    s = Session(fastpath)
    rx, tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink_rx, sink_tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with rx, tx, sink_rx, sink_tx:
        for sock in (rx, sink_rx):
            sock.setblocking(False)
        n = len(PASV_REAL)
        tx.send(tcp(REAL, CLIENT, FTP, CPORT, S_ISN + 1, C_ISN + 1, 0x18, PASV_REAL))
        tx.send(tcp(REAL, CLIENT, FTP, CPORT, S_ISN + 1 + n, C_ISN + 1, 0x11))
        out: list[tuple[int, bytearray]] = []
        assert s.t.drain(rx.fileno(), NOW, out, write_fd=sink_tx.fileno()) == 1
        assert [v for v, _ in out] == [fastpath.APP]
        s.ftp.handle(out[0][1], NOW)
        assert s.t.drain(rx.fileno(), NOW, out, write_fd=sink_tx.fileno()) == 1
        fin = bytearray(sink_rx.recv(65536))
        assert fields(fin)[4] == S_ISN + 1 + n + DIFF


_TOKENS = st.sampled_from(
    [
        b"227 ",
        b"229 ",
        b"PORT ",
        b"EPRT ",
        b"port ",
        b"Entering Passive Mode (",
        b"(|||",
        b"|",
        b"|1|",
        b",",
        b".",
        b"192,168,1,10,",
        b"10.0.1.5",
        b")",
        b"\r\n",
        b" ",
    ]
)
_NUMBERS = st.integers(0, 70000).map(lambda n: str(n).encode())
_PAYLOADS = st.lists(st.one_of(_TOKENS, _NUMBERS), min_size=1, max_size=16).map(b"".join)


def _run(fp: Any, steps: list[tuple[bool, int, bytes]]) -> tuple[Any, ...]:
    s = Session(fp)
    outs = []
    for inbound, seq, payload in steps:
        if inbound:
            buf = tcp(CLIENT, VIP, CPORT, FTP, C_ISN + 1 + seq, S_ISN + 1, 0x18, payload)
        else:
            buf = tcp(REAL, CLIENT, FTP, CPORT, S_ISN + 1 + seq, C_ISN + 1, 0x18, payload)
        v, out = s.send(buf)
        assert checksums_ok(out)
        outs.append((v, bytes(out)))
    entries = [(row[:10], s.t.seq_state(row[0])) for row in s.t.entries(1 << 20)]
    return tuple(outs), tuple(entries), s.ftp.statistics()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.integers(-50, 400), _PAYLOADS), max_size=8))
def test_c_and_twin_agree_on_control_payloads(steps: list[tuple[bool, int, bytes]]) -> None:
    c = pytest.importorskip("director.dataplane._fastpath")
    assert _run(c, steps) == _run(_fastpath_py, steps)
