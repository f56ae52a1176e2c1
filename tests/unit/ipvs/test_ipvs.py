"""The IPVS service layer: ip_vs_ctl.c's dest rules and ip_vs_core.c's scheduling, both tables."""

from __future__ import annotations

import errno
import ipaddress
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from director.dataplane._fastpath_py import (
    DEST_AVAILABLE,
    DEST_FIELDS,
    DROP_DEST_UNAVAILABLE,
    ESTABLISHED,
    FORWARD,
)
from director.ipvs.service import (
    CONN_INFO_DEST,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPVS,
    TRASH_PERIOD_MS,
    Destination,
    DestinationExists,
    InvalidArgument,
    NoSuchDestination,
    OutOfMemory,
    OutOfRange,
    SchedulerNotFound,
    ServiceExists,
    ServiceNotDefined,
    VirtualService,
)
from director.tools.simulate import TCP_ACK, TCP_FIN, TCP_SYN, craft_packet
from scheduling.base import DestView

VIP = int(ipaddress.IPv4Address("10.0.1.5"))
A = int(ipaddress.IPv4Address("192.168.1.10"))
B = int(ipaddress.IPv4Address("192.168.1.11"))
C = int(ipaddress.IPv4Address("192.168.1.12"))
CLIENT = int(ipaddress.IPv4Address("203.0.113.7"))
# conn_info() positions
DADDR, DPORT, STATE, EXPIRES = 5, 6, 8, 10


def ip(a: str) -> int:
    return int(ipaddress.IPv4Address(a))


@pytest.fixture
def ipvs(fastpath: ModuleType) -> IPVS:
    return IPVS(fastpath.ConnTable(64, max_dests=8, max_svcs=4))


def names(svc: VirtualService) -> list[str]:
    return [str(d) for d in svc.dests]


def connect(ipvs: IPVS, caddr: int, cport: int, now: int = 0, vport: int = 80) -> int | None:
    """A client SYN through the table: NEW, schedule + insert, then the SYN itself."""
    buf = craft_packet(IPPROTO_TCP, caddr, cport, VIP, vport, TCP_SYN)
    verdict = ipvs.table.process(buf, now)
    if verdict != 1:  # NEW
        return None
    h = ipvs.new_connection(IPPROTO_TCP, caddr, cport, VIP, vport, now)
    if h is not None:
        ipvs.table.process(craft_packet(IPPROTO_TCP, caddr, cport, VIP, vport, TCP_SYN), now)
    return h


def dest_of(ipvs: IPVS, handle: int) -> Destination:
    d = ipvs.dest_at(ipvs.table.conn_info(handle)[CONN_INFO_DEST])
    assert d is not None
    return d


# --- the destination list (ip_vs_ctl.c) ---------------------------------------------------


def test_add_links_at_the_head(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    for addr in (A, B, C):
        svc.add_dest(addr, 80)
    assert names(svc) == ["192.168.1.12:80", "192.168.1.11:80", "192.168.1.10:80"]


def test_destination_is_a_dest_view(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    view: DestView = svc.add_dest(A, 80, weight=3)
    assert (view.addr, view.port, view.weight, view.available) == (A, 80, 3, True)
    assert (view.active_conns, view.inactive_conns, view.overloaded) == (0, 0, False)


def test_add_existing_dest_is_eexist(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    svc.add_dest(A, 80)
    with pytest.raises(DestinationExists) as e:
        svc.add_dest(A, 80, weight=5)
    assert e.value.errno == errno.EEXIST
    assert str(e.value).startswith("Destination already exists")
    assert svc.dests[0].weight == 1


def test_edit_and_del_of_unknown_dest_are_enoent(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    svc.add_dest(A, 80)
    with pytest.raises(NoSuchDestination) as e:
        svc.edit_dest(A, 81, weight=2)
    assert e.value.errno == errno.ENOENT
    assert str(e.value) == "No such destination: TCP 10.0.1.5:80 -> 192.168.1.10:81"
    with pytest.raises(NoSuchDestination):
        svc.del_dest(B, 80)


@pytest.mark.parametrize(
    ("weight", "u", "lo"),
    [(-1, 0, 0), (1, 2, 3), (1, 0, 1), (1, -1, 0)],
)
def test_out_of_range_dest_values_are_erange(ipvs: IPVS, weight: int, u: int, lo: int) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    with pytest.raises(OutOfRange) as e:
        svc.add_dest(A, 80, weight, u, lo)
    assert e.value.errno == errno.ERANGE
    assert svc.dests == []


def test_edit_keeps_position_and_unspecified_values(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    svc.add_dest(A, 80, weight=2, u_threshold=10, l_threshold=5)
    svc.add_dest(B, 80)
    d = svc.edit_dest(A, 80, weight=7)
    assert names(svc) == ["192.168.1.11:80", "192.168.1.10:80"]
    assert (d.weight, d.u_threshold, d.l_threshold) == (7, 10, 5)


def test_last_weight_follows_adds_and_nonzero_edits(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "mh")
    d = svc.add_dest(A, 80, weight=0)
    assert d.last_weight == 0
    svc.edit_dest(A, 80, weight=3)
    assert d.last_weight == 3
    svc.edit_dest(A, 80, weight=0)
    assert (d.weight, d.last_weight) == (0, 3)


def test_del_unlinks_and_marks_unavailable(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    svc.add_dest(A, 80)
    d = svc.add_dest(B, 80)
    assert svc.del_dest(B, 80) is d
    assert names(svc) == ["192.168.1.10:80"]
    assert not d.available
    assert ipvs.trashed() == [d]


def test_deleted_dest_keeps_counting_and_revives_with_its_counters(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    svc.add_dest(A, 80)
    b = svc.add_dest(B, 80)
    h = connect(ipvs, CLIENT, 40000)
    assert h is not None
    assert dest_of(ipvs, h) is b
    svc.del_dest(B, 80)
    # the real server closes (replies are not checked); its connection still moves the
    # deleted dest's counters
    reply = craft_packet(IPPROTO_TCP, B, 80, CLIENT, 40000, TCP_FIN | TCP_ACK)
    assert ipvs.table.process(reply, 1) == FORWARD
    assert (b.active_conns, b.inactive_conns) == (0, 1)
    revived = svc.add_dest(B, 80, weight=4)
    assert revived is b
    assert names(svc) == ["192.168.1.11:80", "192.168.1.10:80"]
    assert (b.available, b.weight, b.inactive_conns) == (True, 4, 1)
    assert ipvs.trashed() == []


def test_deleted_dest_drops_client_packets_until_it_is_added_back(ipvs: IPVS) -> None:
    """ip_vs_in: a connection bound to a dest that is not AVAILABLE drops client packets."""
    table = ipvs.table
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    a = svc.add_dest(A, 80)
    h = connect(ipvs, CLIENT, 40000)
    assert h is not None
    assert dest_of(ipvs, h) is a
    buf = table.dest_buffer()
    flag = a.slot * DEST_FIELDS + DEST_AVAILABLE
    assert buf[flag] == 1
    deadline = table.conn_info(h)[EXPIRES]

    svc.del_dest(A, 80)
    assert buf[flag] == 0
    ack = craft_packet(IPPROTO_TCP, CLIENT, 40000, VIP, 80, TCP_ACK)
    assert table.process(ack, 5) == DROP_DEST_UNAVAILABLE
    assert table.conn_info(h)[EXPIRES] == deadline
    assert table.drops()["DROP_DEST_UNAVAILABLE"] == 1
    # a new client is not scheduled to it either: the service has no destination
    assert connect(ipvs, CLIENT, 40001) is None

    assert svc.add_dest(A, 80) is a  # revived from the trash
    assert buf[flag] == 1
    ack = craft_packet(IPPROTO_TCP, CLIENT, 40000, VIP, 80, TCP_ACK)
    assert table.process(ack, 6) == FORWARD
    assert table.conn_info(h)[STATE] == ESTABLISHED
    assert table.conn_info(h)[EXPIRES] > deadline


def test_edit_and_service_delete_follow_availability(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    a = svc.add_dest(A, 80)
    buf = ipvs.table.dest_buffer()
    flag = a.slot * DEST_FIELDS + DEST_AVAILABLE
    svc.edit_dest(A, 80, weight=0)  # quiesced is still AVAILABLE
    assert buf[flag] == 1
    ipvs.del_service(IPPROTO_TCP, VIP, 80)
    assert buf[flag] == 0


def test_trashed_slot_is_freed_after_the_trash_period_and_reused(fastpath: ModuleType) -> None:
    ipvs = IPVS(fastpath.ConnTable(16, max_dests=2, max_svcs=1))
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    svc.add_dest(A, 80)
    b = svc.add_dest(B, 80)
    assert connect(ipvs, CLIENT, 40000) is not None  # on B, SYN_RECV for 60 s
    svc.del_dest(B, 80)
    with pytest.raises(OutOfMemory, match="Memory allocation problem"):
        svc.add_dest(C, 80)
    ipvs.expire(60_000)  # the connection goes; B is unreferenced from now on
    assert b.refs == 0
    ipvs.expire(60_000 + TRASH_PERIOD_MS - 1)
    assert ipvs.trashed() == [b]
    ipvs.expire(60_000 + TRASH_PERIOD_MS)
    assert ipvs.trashed() == []
    c = svc.add_dest(C, 80)
    assert c.slot == b.slot
    assert (c.active_conns, c.inactive_conns, c.persist_conns) == (0, 0, 0)


def test_fwmark_of_a_slot_follows_its_service_until_the_slot_is_freed(ipvs: IPVS) -> None:
    marked = ipvs.add_service(IPPROTO_TCP, 0, 0, "rr", fwmark=5)
    plain = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    a, b = marked.add_dest(A, 0), plain.add_dest(B, 80)
    assert (ipvs.fwmark_of(a.slot), ipvs.fwmark_of(b.slot)) == (5, 0)
    assert (ipvs.fwmark_of(-1), ipvs.fwmark_of(10**6)) == (0, 0)
    marked.del_dest(A, 0)
    assert ipvs.fwmark_of(a.slot) == 5  # trashed: its entries still go out marked
    ipvs.expire(0)
    ipvs.expire(TRASH_PERIOD_MS)
    assert ipvs.trashed() == []
    assert plain.add_dest(C, 80).slot == a.slot
    assert ipvs.fwmark_of(a.slot) == 0


def test_a_dest_referenced_again_restarts_its_trash_period(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    b = svc.add_dest(B, 80)
    svc.del_dest(B, 80)
    ipvs.expire(0)
    ipvs.expire(TRASH_PERIOD_MS)
    assert ipvs.trashed() == []
    assert ipvs.dest_at(b.slot) is None


@pytest.mark.parametrize("sched", ["lblc", "lblcr"])
def test_a_dest_held_by_the_scheduler_stays_in_the_trash_until_let_go(
    ipvs: IPVS, sched: str
) -> None:
    """ip_vs_dest_trash_expire frees only a dest whose sole reference is the trash's:
    an lblc entry or an lblcr set keeps it until GC drops the entry (24 h idle)."""
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, sched)
    a = svc.add_dest(A, 80)
    assert svc.pick(IPPROTO_TCP, CLIENT, 40000, VIP, 80, 0) is a
    svc.del_dest(A, 80)
    for now in range(0, 10 * TRASH_PERIOD_MS, 60_000):
        ipvs.expire(now)
    assert ipvs.trashed() == [a]
    assert svc.add_dest(A, 80) is a
    svc.add_dest(B, 80)
    assert svc.pick(IPPROTO_TCP, CLIENT, 40000, VIP, 80, 10 * TRASH_PERIOD_MS) is a
    # Deleted again and left idle: the GC's full check after 24 h drops the entry, and
    # the trash frees the dest one trash period later.
    svc.del_dest(A, 80)
    day = 24 * 3600_000
    for now in range(10 * TRASH_PERIOD_MS, 2 * day, 60_000):
        ipvs.expire(now)
    assert ipvs.trashed() == []
    assert ipvs.dest_at(a.slot) is None


def test_a_deleted_service_lets_go_of_its_schedulers_holds(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "lblcr")
    a = svc.add_dest(A, 80)
    assert svc.pick(IPPROTO_TCP, CLIENT, 40000, VIP, 80, 0) is a
    ipvs.del_service(IPPROTO_TCP, VIP, 80)
    ipvs.expire(0)
    ipvs.expire(TRASH_PERIOD_MS)
    assert ipvs.trashed() == []
    again = ipvs.add_service(IPPROTO_TCP, VIP, 80, "lblcr")
    assert again.add_dest(A, 80) is not a


def test_one_packet_service_schedules_each_datagram_and_keeps_no_entry(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_UDP, VIP, 53, "rr")
    svc.one_packet = True
    svc.add_dest(A, 53)
    svc.add_dest(B, 53)
    got = []
    for now in range(4):
        buf = craft_packet(IPPROTO_UDP, CLIENT, 5000, VIP, 53)
        assert ipvs.table.process(buf, now) == 1  # NEW: no entry from the last datagram
        h = ipvs.new_connection(IPPROTO_UDP, CLIENT, 5000, VIP, 53, now)
        assert h is not None
        got.append(dest_of(ipvs, h).addr)
        assert ipvs.table.process(buf, now) == 0  # FORWARD
        ipvs.one_packet_done(svc, IPPROTO_UDP, h)
        assert len(ipvs.table) == 0
    assert got == [B, A, B, A]
    assert (svc.dests[0].inactive_conns, svc.dests[1].inactive_conns) == (0, 0)
    assert [d.stats[0] for d in svc.dests] == [2, 2]  # each datagram a connection


def test_totals_never_go_down_when_services_and_dests_go(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    svc.add_dest(A, 80)
    assert connect(ipvs, CLIENT, 40000) is not None
    assert connect(ipvs, CLIENT, 40001) is not None
    before = ipvs.totals()
    assert before[0] == 2
    ipvs.del_service(IPPROTO_TCP, VIP, 80)
    assert ipvs.totals() == before
    for now in range(0, 10 * TRASH_PERIOD_MS, 30_000):
        ipvs.expire(now)
    assert ipvs.trashed() == []  # the slot was freed: its counters stay in the totals
    assert ipvs.totals() == before
    again = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    assert again.stats == (0, 0, 0, 0, 0)
    ipvs.zero_totals()
    assert ipvs.totals() == (0, 0, 0, 0, 0)


# --- schedulers and their hooks -------------------------------------------------------------


def picks(svc: VirtualService, n: int) -> list[str]:
    out = []
    for i in range(n):
        d = svc.pick(IPPROTO_TCP, CLIENT + i, 40000, VIP, 80, 0)
        out.append("-" if d is None else str(d.addr & 0xFF))
    return out


def test_same_scheduler_keeps_its_state_a_different_one_reinits(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    for addr, w in ((C, 2), (B, 3), (A, 4)):
        svc.add_dest(addr, 80, weight=w)
    svc.set_scheduler("wrr")
    assert picks(svc, 3) == ["10", "10", "11"]
    svc.set_scheduler("wrr")
    assert picks(svc, 6) == ["10", "11", "12", "10", "11", "12"]
    svc.set_scheduler("rr")
    svc.set_scheduler("wrr")
    assert picks(svc, 3) == ["10", "10", "11"]


@pytest.mark.parametrize("name", ["sh", "mh"])
def test_same_scheduler_takes_new_flags_at_the_next_decision(ipvs: IPVS, name: str) -> None:
    """ipvsadm -E -s sh -b sh-port: the kernel reads the service's flags at each decision."""
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, name)
    for addr in (A, B, C):
        svc.add_dest(addr, 80)

    def by_port() -> set[str]:
        chosen = (svc.pick(IPPROTO_TCP, CLIENT, 40000 + i, VIP, 80, 0) for i in range(32))
        return {"-" if d is None else str(d.addr & 0xFF) for d in chosen}

    assert len(by_port()) == 1  # one source address, one real server
    svc.set_scheduler(name, frozenset({f"{name}-port"}))
    assert len(by_port()) == 3  # the source port now counts
    svc.set_scheduler(name, frozenset({"flag-3"}))  # not the scheduler's: stored, unread
    assert len(by_port()) == 1
    assert svc.sched_flags == {"flag-3"}


def test_scheduler_sees_add_del_and_upd(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    svc.add_dest(A, 80)
    svc.add_dest(B, 80)
    svc.add_dest(C, 80)
    assert picks(svc, 2) == ["12", "11"]
    svc.del_dest(B, 80)  # rr's position moves to B's predecessor: the rotation goes on
    assert picks(svc, 2) == ["10", "12"]
    svc.edit_dest(A, 80, weight=0)
    assert picks(svc, 2) == ["12", "12"]


def test_unknown_scheduler_and_bad_flags(ipvs: IPVS) -> None:
    with pytest.raises(SchedulerNotFound, match="wlcx") as e:
        ipvs.add_service(IPPROTO_TCP, VIP, 80, "wlcx")
    assert e.value.errno == errno.ENOENT
    with pytest.raises(InvalidArgument, match="'bogus'"):
        ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr", frozenset({"bogus"}))
    # The kernel keeps any flag bit on any scheduler; rr ignores it.
    rr = ipvs.add_service(IPPROTO_TCP, VIP, 81, "rr", frozenset({"sh-port", "flag-3"}))
    assert rr.sched_flags == {"sh-port", "flag-3"}
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "sh", frozenset({"sh-port"}))
    with pytest.raises(SchedulerNotFound):
        svc.set_scheduler("nope")
    assert svc.sched_name == "sh"


# --- services ---------------------------------------------------------------------------------


def test_service_table(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80)
    assert svc.sched_name == "wlc"
    with pytest.raises(ServiceExists):
        ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    assert ipvs.get_service(IPPROTO_TCP, VIP, 80) is svc
    with pytest.raises(ServiceNotDefined, match=r"Service not defined: UDP 10\.0\.1\.5:80") as e:
        ipvs.get_service(IPPROTO_UDP, VIP, 80)
    assert e.value.errno == errno.ESRCH
    d = svc.add_dest(A, 80)
    ipvs.del_service(IPPROTO_TCP, VIP, 80)
    assert ipvs.services == {}
    assert ipvs.trashed() == [d]
    assert ipvs.add_service(IPPROTO_TCP, VIP, 80).index == svc.index


def test_find_service_falls_back_to_ftp_then_port_zero(ipvs: IPVS) -> None:
    ftp = ipvs.add_service(IPPROTO_TCP, VIP, 21, "rr", timeout=300)
    assert ipvs.find_service(IPPROTO_TCP, VIP, 21) is ftp
    assert ipvs.find_service(IPPROTO_TCP, VIP, 20) is ftp
    assert ipvs.find_service(IPPROTO_TCP, VIP, 30000) is ftp
    assert ipvs.find_service(IPPROTO_TCP, VIP, 443) is None
    assert ipvs.find_service(IPPROTO_UDP, VIP, 30000) is None
    zero = ipvs.add_service(IPPROTO_TCP, VIP, 0, "rr", timeout=60)
    assert ipvs.find_service(IPPROTO_TCP, VIP, 443) is zero
    assert ipvs.find_service(IPPROTO_TCP, VIP, 30000) is ftp


def test_a_marked_packet_finds_the_fwmark_service_first(ipvs: IPVS) -> None:
    # ip_vs_service_find: the fwmark table first, for any protocol; then address:port.
    http = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    fwm = ipvs.add_service(IPPROTO_TCP, 0, 0, "rr", fwmark=1)
    assert ipvs.find_service(IPPROTO_TCP, VIP, 80, fwmark=1) is fwm
    assert ipvs.find_service(IPPROTO_TCP, VIP, 443, fwmark=1) is fwm
    assert ipvs.find_service(IPPROTO_UDP, VIP, 53, fwmark=1) is fwm
    # Unmarked, or a mark without a service: the address lookup, as before.
    assert ipvs.find_service(IPPROTO_TCP, VIP, 80) is http
    assert ipvs.find_service(IPPROTO_TCP, VIP, 80, fwmark=2) is http
    assert ipvs.find_service(IPPROTO_TCP, VIP, 443, fwmark=2) is None
    assert ipvs.find_service(IPPROTO_TCP, VIP, 443) is None


def test_of_two_fwmark_services_with_one_mark_the_packets_protocol_wins(ipvs: IPVS) -> None:
    tcp = ipvs.add_service(IPPROTO_TCP, 0, 0, "rr", fwmark=7)
    udp = ipvs.add_service(IPPROTO_UDP, 0, 0, "rr", fwmark=7)
    assert ipvs.find_service(IPPROTO_TCP, VIP, 80, fwmark=7) is tcp
    assert ipvs.find_service(IPPROTO_UDP, VIP, 80, fwmark=7) is udp


def test_marked_connections_keep_their_port_and_share_the_fwmark_template(ipvs: IPVS) -> None:
    # <IPPROTO_IP, caddr, 0, fwmark, 0>: ports 80 and 443 of one client, and even UDP,
    # go to the real the first connection chose; dest port 0 keeps the client's port.
    svc = ipvs.add_service(IPPROTO_TCP, 0, 0, "rr", fwmark=1, timeout=300)
    svc.add_dest(A, 0)
    svc.add_dest(B, 0)
    chosen = set()
    for proto, cport, vport in ((IPPROTO_TCP, 40000, 80), (IPPROTO_TCP, 40001, 443),
                                (IPPROTO_UDP, 40002, 443), (IPPROTO_TCP, 40003, 80)):  # fmt: skip
        found = ipvs.find_service(proto, VIP, vport, fwmark=1)
        assert found is svc
        h = ipvs.new_connection(proto, CLIENT, cport, VIP, vport, 0, found)
        assert h is not None
        info = ipvs.table.conn_info(h)
        assert info[DPORT] == vport
        chosen.add(info[DADDR])
    assert len(chosen) == 1
    other = CLIENT + 1
    h = ipvs.new_connection(IPPROTO_TCP, other, 40000, VIP, 443, 0, svc)
    assert h is not None
    assert {ipvs.table.conn_info(h)[DADDR], *chosen} == {A, B}


# --- scheduling a connection (ip_vs_core.c) ------------------------------------------------


def test_new_connection_binds_and_rewrites_to_the_dest(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    a = svc.add_dest(A, 8080)
    h = connect(ipvs, CLIENT, 40000)
    assert h is not None
    info = ipvs.table.conn_info(h)
    assert (info[DADDR], info[DPORT]) == (A, 8080)
    assert (a.active_conns, a.inactive_conns) == (1, 0)  # SYN_RECV counts as active


def test_non_persistent_service_schedules_only_its_port(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 0, "rr")
    svc.add_dest(A, 80)
    assert ipvs.new_connection(IPPROTO_TCP, CLIENT, 40000, VIP, 80, 0) is None
    assert svc.schedule(IPPROTO_TCP, CLIENT, 40000, VIP, 80, 0) is None


def test_ftp_data_source_port_is_never_scheduled(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    svc.add_dest(A, 80)
    assert svc.schedule(IPPROTO_TCP, CLIENT, 20, VIP, 80, 0) is None
    assert svc.schedule(IPPROTO_TCP, CLIENT, 21, VIP, 80, 0) is not None


def test_no_destination_is_none(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "wlc")
    svc.add_dest(A, 80, weight=0)
    assert ipvs.new_connection(IPPROTO_TCP, CLIENT, 40000, VIP, 80, 0) is None
    assert len(ipvs.table) == 0


def test_full_table_is_none_and_counted(fastpath: ModuleType) -> None:
    ipvs = IPVS(fastpath.ConnTable(2, max_dests=2, max_svcs=1))
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    svc.add_dest(A, 80)
    handles = [connect(ipvs, CLIENT, 1), connect(ipvs, CLIENT, 2)]
    # Half-open entries would be evicted to make room; established ones are not.
    for h in handles:
        assert h is not None
        ipvs.table.set_state(h, 1, 0)
    assert ipvs.new_connection(IPPROTO_TCP, CLIENT, 3, VIP, 80, 0) is None
    assert ipvs.no_memory == 1


def test_full_table_of_half_open_entries_evicts_the_oldest(fastpath: ModuleType) -> None:
    ipvs = IPVS(fastpath.ConnTable(2, max_dests=2, max_svcs=1))
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    svc.add_dest(A, 80)
    first = connect(ipvs, CLIENT, 1)
    assert connect(ipvs, CLIENT, 2) is not None
    assert ipvs.new_connection(IPPROTO_TCP, CLIENT, 3, VIP, 80, 0) == first
    assert (ipvs.no_memory, ipvs.table.evictions()) == (0, 1)


def test_set_timeouts_changes_established(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    a = svc.add_dest(A, 80)
    ipvs.set_timeouts(tcp=100)
    h = connect(ipvs, CLIENT, 40000)
    assert h is not None
    ipvs.table.process(craft_packet(IPPROTO_TCP, CLIENT, 40000, VIP, 80, TCP_ACK), 0)
    assert ipvs.table.conn_info(h)[EXPIRES] == 100_000
    ipvs.expire(99_999)
    assert a.active_conns == 1
    ipvs.expire(100_000)
    assert a.active_conns == 0
    with pytest.raises(OutOfRange):
        ipvs.set_timeouts(udp=-1)


# --- persistence ----------------------------------------------------------------------------


def persistent(ipvs: IPVS, timeout: int = 300, netmask: int = 0xFFFFFFFF) -> VirtualService:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr", timeout=timeout, netmask=netmask)
    svc.add_dest(A, 80)
    svc.add_dest(B, 80)
    return svc


def test_template_pins_the_client_without_asking_the_scheduler(ipvs: IPVS) -> None:
    svc = persistent(ipvs)
    h1 = connect(ipvs, CLIENT, 40000)
    assert h1 is not None
    b = dest_of(ipvs, h1)
    assert str(b) == "192.168.1.11:80"
    assert b.persist_conns == 1
    for port in range(40001, 40005):
        h = connect(ipvs, CLIENT, port)
        assert h is not None
        assert dest_of(ipvs, h) is b
    assert b.persist_conns == 1
    # rr was asked once, so its next pick is A
    assert str(svc.pick(IPPROTO_TCP, CLIENT, 1, VIP, 80, 0)) == "192.168.1.10:80"


def test_template_ignores_overload_and_weight_zero(ipvs: IPVS) -> None:
    svc = persistent(ipvs)
    h = connect(ipvs, CLIENT, 40000)
    assert h is not None
    b = dest_of(ipvs, h)
    svc.edit_dest(b.addr, b.port, weight=0, u_threshold=1)
    assert b.overloaded is False  # edit raised u: cleared; next bind sets it
    h2 = connect(ipvs, CLIENT, 40001)
    assert h2 is not None
    assert dest_of(ipvs, h2) is b
    assert b.overloaded


def test_expire_quiescent_template_reschedules_weight_zero(fastpath: ModuleType) -> None:
    ipvs = IPVS(fastpath.ConnTable(64, max_dests=8, max_svcs=4), expire_quiescent_template=True)
    svc = persistent(ipvs)
    h = connect(ipvs, CLIENT, 40000)
    assert h is not None
    b = dest_of(ipvs, h)
    svc.edit_dest(b.addr, b.port, weight=0)
    h2 = connect(ipvs, CLIENT, 40001)
    assert h2 is not None
    assert str(dest_of(ipvs, h2)) == "192.168.1.10:80"
    # the invalidated template lives on until its timer: B keeps its persist count
    assert b.persist_conns == 1


def test_deleted_dest_invalidates_its_template(ipvs: IPVS) -> None:
    svc = persistent(ipvs)
    h = connect(ipvs, CLIENT, 40000)
    assert h is not None
    svc.del_dest(B, 80)
    h2 = connect(ipvs, CLIENT, 40001)
    assert h2 is not None
    assert str(dest_of(ipvs, h2)) == "192.168.1.10:80"


def test_netmask_groups_clients(ipvs: IPVS) -> None:
    persistent(ipvs, netmask=0xFFFFFF00)
    first = connect(ipvs, ip("203.0.113.7"), 40000)
    same = connect(ipvs, ip("203.0.113.250"), 40000)
    other = connect(ipvs, ip("203.0.114.7"), 40000)
    assert first is not None
    assert same is not None
    assert other is not None
    assert dest_of(ipvs, same) is dest_of(ipvs, first)
    assert dest_of(ipvs, other) is not dest_of(ipvs, first)


def test_template_is_rearmed_by_each_new_connection(ipvs: IPVS) -> None:
    svc = persistent(ipvs, timeout=300)
    connect(ipvs, CLIENT, 40000, now=0)
    ipvs.expire(250_000)  # the SYN_RECV connection is gone at 60 s
    connect(ipvs, CLIENT, 40001, now=250_000)
    ipvs.expire(310_000)  # the connection is gone; the template was re-armed to 550 s
    b = svc.find_dest(B, 80)
    assert b is not None
    assert (b.active_conns, b.persist_conns) == (0, 1)
    ipvs.expire(549_999)
    assert b.persist_conns == 1
    ipvs.expire(550_000)
    assert b.persist_conns == 0


def test_port_zero_persistent_service_shares_one_template(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 0, "rr", timeout=300)
    svc.add_dest(A, 0)
    svc.add_dest(B, 0)
    h80 = connect(ipvs, CLIENT, 40000, vport=80)
    h443 = connect(ipvs, CLIENT, 40001, vport=443)
    assert h80 is not None
    assert h443 is not None
    assert dest_of(ipvs, h443) is dest_of(ipvs, h80)
    assert ipvs.table.conn_info(h443)[DPORT] == 443


def test_udp_persistence_and_connections_are_inactive(ipvs: IPVS) -> None:
    svc = ipvs.add_service(IPPROTO_UDP, VIP, 53, "rr", timeout=60)
    a = svc.add_dest(A, 53)
    for port in (1000, 1001):
        buf = craft_packet(IPPROTO_UDP, CLIENT, port, VIP, 53)
        assert ipvs.table.process(buf, 0) == 1  # NEW
        assert ipvs.new_connection(IPPROTO_UDP, CLIENT, port, VIP, 53, 0) is not None
        assert ipvs.table.process(craft_packet(IPPROTO_UDP, CLIENT, port, VIP, 53), 0) == 0
    assert (a.active_conns, a.inactive_conns, a.persist_conns) == (0, 2, 1)


def test_out_of_slots_frees_unreferenced_trash_early(fastpath: ModuleType) -> None:
    ipvs = IPVS(fastpath.ConnTable(16, max_dests=2, max_svcs=1))
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    svc.add_dest(A, 80)
    b = svc.add_dest(B, 80)
    svc.del_dest(B, 80)
    c = svc.add_dest(C, 80)
    assert c.slot == b.slot
    assert ipvs.trashed() == []


def test_port_zero_needs_persistence_warns_once(
    ipvs: IPVS, caplog: pytest.LogCaptureFixture
) -> None:
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 0, "rr")
    svc.add_dest(A, 80)
    for port in (1, 2, 3):
        assert svc.schedule(IPPROTO_TCP, CLIENT, port, VIP, 80, 0) is None
    assert [r.getMessage() for r in caplog.records] == [
        "TCP 10.0.1.5:0: port zero only supported in persistent services"
    ]


# --- accounting invariants under random operations -----------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 3), st.integers(0, 3)),
        st.tuples(st.just("edit"), st.integers(0, 3), st.integers(0, 3)),
        st.tuples(st.just("del"), st.integers(0, 3), st.just(0)),
        st.tuples(st.just("connect"), st.integers(0, 7), st.integers(1, 3)),
        st.tuples(st.just("advance"), st.integers(1, 200), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, persistent_timeout=st.sampled_from([0, 30]))
def test_counters_match_the_table_under_random_operations(
    fastpath: ModuleType, ops: list[tuple[str, int, int]], persistent_timeout: int
) -> None:
    """Slots are never shared, the list and the trash are disjoint, and the dest counters
    (linked and trashed alike) add up to the table's connections and templates."""
    ipvs = IPVS(fastpath.ConnTable(32, max_dests=6, max_svcs=1))
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "wlc", timeout=persistent_timeout)
    now = 0
    cport = 1000
    for op, x, y in ops:
        addr = A + x
        try:
            if op == "add":
                svc.add_dest(addr, 80, weight=y)
            elif op == "edit":
                svc.edit_dest(addr, 80, weight=y, u_threshold=y)
            elif op == "del":
                svc.del_dest(addr, 80)
            elif op == "connect":
                cport += 1
                connect(ipvs, CLIENT + x, cport, now)
            else:
                now += x * 1000
                ipvs.expire(now)
        except (DestinationExists, NoSuchDestination, OutOfMemory):
            pass
        linked = svc.dests
        trashed = ipvs.trashed()
        assert len({(d.addr, d.port) for d in linked}) == len(linked)
        assert all(d.available for d in linked)
        assert not any(d.available for d in trashed)
        slots = [d.slot for d in (*linked, *trashed)]
        assert len(set(slots)) == len(slots)
        assert all(ipvs.dest_at(d.slot) is d for d in (*linked, *trashed))
        everyone = (*linked, *trashed)
        conns = sum(d.active_conns + d.inactive_conns for d in everyone)
        templates = sum(d.persist_conns for d in everyone)
        assert conns + templates == len(ipvs.table)
        if not persistent_timeout:
            assert templates == 0
