"""A connection whose dest is no longer AVAILABLE (ipvsadm -d), on both fast paths.

ip_vs_in with expire_nodest_conn=0: client-to-server packets are dropped untouched, the
state machine does not run and the timer is not re-armed; replies still flow; reviving the
dest (set AVAILABLE again) lets the same connection carry traffic again.
"""

from __future__ import annotations

import socket
from types import ModuleType
from typing import Any

import pytest

from tests.vectors.nat_vectors import _icmp_error, _tcp, _udp, ip4

CLIENT, CPORT = "198.51.100.20", 41000
VIP, VPORT = "192.0.2.10", 80
RIP, RPORT = "10.0.1.30", 8080
SLOT = 2


def _table(fp: ModuleType, proto: int = 6) -> tuple[Any, int]:
    t = fp.ConnTable(8, 4, 2)
    t.set_dest(SLOT, 1, ip4(RIP), RPORT, 0, 0)
    h = t.insert(proto, ip4(CLIENT), CPORT, ip4(VIP), VPORT, ip4(RIP), RPORT, SLOT, 0)
    assert h >= 0
    return t, h


def _in(flags: str = "A", payload: bytes = b"") -> bytearray:
    return bytearray(_tcp(CLIENT, VIP, CPORT, VPORT, flags, payload))


def _out(flags: str = "A") -> bytearray:
    return bytearray(_tcp(RIP, CLIENT, RPORT, CPORT, flags))


def test_set_dest_marks_available_and_the_flag_is_in_the_buffer(fastpath: ModuleType) -> None:
    fp = fastpath
    t = fp.ConnTable(8, 4, 2)
    base = SLOT * fp.DEST_FIELDS + fp.DEST_AVAILABLE
    assert t.dest_buffer()[base] == 0
    t.set_dest(SLOT, 1, ip4(RIP), RPORT, 0, 0)
    assert t.dest_buffer()[base] == 1
    t.set_dest_available(SLOT, False)
    assert t.dest_buffer()[base] == 0
    t.set_dest(SLOT, 1, ip4(RIP), RPORT, 5, 0)  # an add or edit makes it AVAILABLE again
    assert t.dest_buffer()[base] == 1
    t.set_dest_available(SLOT, False)
    t.clear_dest(SLOT)
    assert (
        t.dest_buffer().tolist()[SLOT * fp.DEST_FIELDS : (SLOT + 1) * fp.DEST_FIELDS]
        == [0] * fp.DEST_FIELDS
    )
    with pytest.raises(ValueError, match="dest"):
        t.set_dest_available(4, True)
    with pytest.raises(ValueError, match="dest"):
        t.set_dest_available(-1, False)


def test_client_packets_are_dropped_untouched_without_rearming(fastpath: ModuleType) -> None:
    fp = fastpath
    t, h = _table(fp)
    assert t.process(_in("S"), 0) == fp.FORWARD
    assert t.process(_out("SA"), 10) == fp.FORWARD
    assert t.process(_in("A"), 20) == fp.FORWARD
    info = t.conn_info(h)
    assert info[8] == fp.ESTABLISHED
    deadline = info[10]
    d = t.dest_buffer()
    b = SLOT * fp.DEST_FIELDS
    inpkts = d[b + fp.DEST_INPKTS]

    t.set_dest_available(SLOT, False)
    for flags, payload in (("PA", b"GET / HTTP/1.1\r\n\r\n"), ("FA", b""), ("R", b"")):
        pkt = _in(flags, payload)
        before = bytes(pkt)
        assert t.process(pkt, 5_000) == fp.DROP_DEST_UNAVAILABLE
        assert bytes(pkt) == before
    info = t.conn_info(h)
    assert info[8] == fp.ESTABLISHED  # neither FIN nor RST moved the state
    assert info[10] == deadline  # and no packet re-armed the timer
    assert d[b + fp.DEST_INPKTS] == inpkts
    assert d[b + fp.DEST_ACTIVE] == 1
    assert t.drops()["DROP_DEST_UNAVAILABLE"] == 3
    assert fp.VERDICT_NAMES[fp.DROP_DEST_UNAVAILABLE] == "DROP_DEST_UNAVAILABLE"


def test_replies_still_flow_and_revival_resumes(fastpath: ModuleType) -> None:
    fp = fastpath
    t, h = _table(fp)
    assert t.process(_in("S"), 0) == fp.FORWARD
    t.set_dest_available(SLOT, False)
    reply = _out("SA")
    assert t.process(reply, 10) == fp.FORWARD
    assert bytes(reply) == _tcp(VIP, CLIENT, VPORT, CPORT, "SA")
    assert t.conn_info(h)[8] == fp.SYN_RECV  # the reply ran the state machine

    t.set_dest_available(SLOT, True)
    pkt = _in("A")
    assert t.process(pkt, 20) == fp.FORWARD
    assert bytes(pkt) == _tcp(CLIENT, RIP, CPORT, RPORT, "A")
    info = t.conn_info(h)
    assert info[8] == fp.ESTABLISHED
    assert info[10] == 20 + 900_000


def test_unavailable_connection_expires_on_its_own_timer(fastpath: ModuleType) -> None:
    fp = fastpath
    t, h = _table(fp, proto=17)
    deadline = t.conn_info(h)[10]
    t.set_dest_available(SLOT, False)
    query = bytearray(_udp(CLIENT, VIP, CPORT, VPORT, b"q"))
    assert t.process(query, deadline - 1) == fp.DROP_DEST_UNAVAILABLE
    assert t.expire(deadline) == 1
    assert len(t) == 0
    assert t.dest_buffer()[SLOT * fp.DEST_FIELDS + fp.DEST_INACTIVE] == 0


def test_icmp_errors_either_way_are_still_translated(fastpath: ModuleType) -> None:
    """ip_vs_in_icmp has no AVAILABLE check: only ip_vs_in's client packets are dropped."""
    fp = fastpath
    t, _ = _table(fp)
    t.set_dest_available(SLOT, False)
    from_client = bytearray(_icmp_error(CLIENT, VIP, 3, 3, _tcp(VIP, CLIENT, VPORT, CPORT, "A")))
    assert t.process(from_client, 1) == fp.FORWARD
    assert socket.inet_ntoa(bytes(from_client[16:20])) == RIP  # outer destination: the real
    from_server = bytearray(
        _icmp_error(RIP, CLIENT, 3, 4, _tcp(CLIENT, RIP, CPORT, RPORT, "A"), 1400)
    )
    assert t.process(from_server, 2) == fp.FORWARD


def test_a_new_syn_on_a_closed_connection_is_still_scheduled(fastpath: ModuleType) -> None:
    """conn_reuse_mode comes first in ip_vs_in: the old conn goes, the SYN is NEW."""
    fp = fastpath
    t, h = _table(fp)
    t.set_state(h, fp.TIME_WAIT, 0)
    t.set_dest_available(SLOT, False)
    assert t.process(_in("S"), 1) == fp.NEW
    assert len(t) == 0
