"""drain(): the read/rewrite/write loop over a packet fd, on a SOCK_SEQPACKET socketpair.

A seqpacket socket keeps message boundaries like a TUN fd does; the daemon's side is `ours`
(non-blocking, as the TUN is), the network's side is `peer`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.unit.dataplane.fastpath_ref import standard_table
from tests.vectors.nat_vectors import VECTORS, vnet_header


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    try:
        yield ours, peer
    finally:
        ours.close()
        peer.close()


def _framed(v: object) -> bytes:
    before: bytes = v.before  # type: ignore[attr-defined]
    return before if v.vnet else vnet_header() + before  # type: ignore[attr-defined]


def test_drain_forwards_known_and_hands_over_the_rest(
    fastpath: ModuleType, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    t = standard_table(fastpath)
    wanted = (
        "thesis Table 1",
        "UDP query",
        "echo request",
        "first fragment",
        "TCP ACK with no",
        "new client SYN",
        "NEEDS_CSUM TCP in",
    )
    sent = [
        v
        for v in VECTORS
        if v.description.startswith(wanted) or any(w in v.description for w in wanted)
    ]
    assert len(sent) == 8
    for v in sent:
        peer.send(_framed(v))
    out: list[tuple[int, bytearray]] = []
    assert t.drain(ours.fileno(), 1000, out) == len(sent)
    forwarded = [v for v in sent if v.verdict == "FORWARD"]
    for v in forwarded:
        want = v.after if v.vnet else vnet_header() + v.after
        assert peer.recv(70000) == want
    assert out == [
        (getattr(fastpath, v.verdict), bytearray(_framed(v)))
        for v in sent
        if v.verdict in ("NEW", "LOCAL", "FRAGMENT")
    ]
    assert all(type(p) is bytearray for _, p in out)  # rewritable in place
    assert t.drops()["DROP_NO_CONN"] == 1
    assert t.drain(ours.fileno(), 1000, out) == 0  # EAGAIN: nothing more, no exception


def test_drain_stops_at_max_packets(
    fastpath: ModuleType, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    t = standard_table(fastpath)
    for _ in range(5):
        peer.send(vnet_header() + VECTORS[0].before)
    out: list[tuple[int, bytearray]] = []
    assert t.drain(ours.fileno(), 0, out, max_packets=3) == 3
    assert t.drain(ours.fileno(), 0, out, 10) == 2
    assert out == []


def test_drain_counts_failed_writes(
    fastpath: ModuleType, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    t = standard_table(fastpath)
    peer.send(vnet_header() + VECTORS[0].before)
    peer.shutdown(socket.SHUT_RD)  # writes back to the peer now fail (EPIPE)
    assert t.drain(ours.fileno(), 0, []) == 1
    assert t.drops()["DROP_TX"] == 1


def test_drain_writes_to_write_fd_when_given(
    fastpath: ModuleType, pair: tuple[socket.socket, socket.socket]
) -> None:
    # A firewall-mark TUN is read; what it forwards leaves by the address TUN.
    ours, peer = pair
    other_ours, other_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with other_ours, other_peer:
        t = standard_table(fastpath)
        v = VECTORS[0]
        assert v.verdict == "FORWARD"
        peer.send(_framed(v))
        assert t.drain(ours.fileno(), 1000, [], write_fd=other_ours.fileno()) == 1
        assert other_peer.recv(70000) == (v.after if v.vnet else vnet_header() + v.after)
        peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            peer.recv(70000)


def test_drain_rejects_a_bad_fd(fastpath: ModuleType) -> None:
    t = fastpath.ConnTable(4)
    with pytest.raises(OSError):  # noqa: PT011  (EBADF: any OSError is right)
        t.drain(-1, 0, [])


def test_drain_hands_over_tcp_segments_of_no_connection_once_asked(
    fastpath: ModuleType, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    t = standard_table(fastpath)
    ack = next(v for v in VECTORS if v.description.startswith("TCP ACK with no"))
    rst = bytearray(_framed(ack))
    rst[vnet_header().__len__() + 20 + 13] |= 0x04  # the same segment with RST: never
    out: list[tuple[int, bytearray]] = []
    peer.send(_framed(ack))
    assert t.drain(ours.fileno(), 1000, out) == 1
    assert out == []  # off by default: dropped and counted only
    t.set_report_no_conn(True)
    peer.send(_framed(ack))
    peer.send(bytes(rst))
    assert t.drain(ours.fileno(), 1000, out) == 2
    assert out == [(fastpath.DROP_NO_CONN, bytearray(_framed(ack)))]
    assert dict(t.drops())["DROP_NO_CONN"] == 3
