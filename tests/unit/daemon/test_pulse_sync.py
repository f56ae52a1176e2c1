"""Connection sync end to end without a network: active table -> Streamer -> messages -> standby."""

from __future__ import annotations

import asyncio
import logging
from ipaddress import IPv4Address
from socket import IPPROTO_TCP
from types import ModuleType
from typing import Any, cast

import pytest

from director.config import DirectorConfig
from director.daemon.pulse import Pulse, run_hook, sync_path
from director.dataplane.plumbing import Plumbing
from director.errors import ConfigError
from director.ipvs.service import IPVS
from failover import packet, sync
from failover.events import SyncReceived
from failover.peer import FailoverSettings, HeartbeatPath

VIP, RIP, CLIENT = 0xC000020A, 0x0A000102, 0xC6336401
ES, FW = 1, 4


def _pulse(
    fastpath: ModuleType, syncid: int = 0, cfg: DirectorConfig | None = None
) -> tuple[Pulse, IPVS]:
    ipvs = IPVS(fastpath.ConnTable(64, max_dests=8, max_svcs=4))
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    svc.add_dest(RIP, 80)
    settings = FailoverSettings(
        primary=False,
        paths=(HeartbeatPath("public", IPv4Address("192.0.2.2"), IPv4Address("192.0.2.1")),),
        port=539,
        keepalive_s=1,
        deadtime_s=3,
        key=b"",
        syncid=syncid,
    )
    pulse = Pulse(
        cfg or DirectorConfig(syncd_id=syncid),
        settings,
        cast(Plumbing, None),
        ipvs.table,
        lambda: ipvs,
        lambda c: True,
    )
    return pulse, ipvs


def _active(fastpath: ModuleType) -> Any:
    t = fastpath.ConnTable(64, 8, 4)
    t.set_dest(0, 0, RIP, 80, 0, 0)
    t.enable_sync_log(256)
    return t


def _mirror(standby: Pulse, tick: sync.Tick) -> None:
    for m in sync.encode(tick.entries):
        for e in sync.decode(m):
            assert standby.apply_entry(e, 0)


def _keys(t: Any) -> list[tuple[int, ...]]:
    return sorted((e[3], e[9]) for e in t.entries(100))  # (cport, state)


def test_standby_follows_inserts_state_changes_and_removals(fastpath: ModuleType) -> None:
    standby, ipvs = _pulse(fastpath)
    active, streamer = _active(fastpath), sync.Streamer()
    hs = [active.insert(6, CLIENT, p, VIP, 80, RIP, 80, 0, 0) for p in (1000, 1001)]
    for h in hs:
        active.set_state(h, ES, 0)
    _mirror(standby, streamer.tick(active, 0))
    assert _keys(ipvs.table) == [(1000, ES), (1001, ES)]
    active.set_state(hs[0], FW, 1)
    active.remove(hs[1])
    _mirror(standby, streamer.tick(active, 1))
    assert _keys(ipvs.table) == [(1000, FW)]


def test_removal_of_an_entry_the_standby_does_not_hold_is_harmless(fastpath: ModuleType) -> None:
    standby, ipvs = _pulse(fastpath)
    h = ipvs.table.insert(6, CLIENT, 1000, VIP, 80, RIP, 80, 0, 0)
    ipvs.table.set_state(h, ES, 0)
    gone = sync.ConnEntry(6, CLIENT, 2000, VIP, 80, RIP, 80, ES, sync.F_REMOVED, 0)
    tmpl = sync.ConnEntry(6, CLIENT, 0, VIP, 80, RIP, 80, 0, sync.F_TEMPLATE | sync.F_REMOVED, 0)
    assert standby.apply_entry(gone, 0)
    assert standby.apply_entry(tmpl, 0)
    assert _keys(ipvs.table) == [(1000, ES)]


def test_stream_once_marks_the_end_of_a_dump(
    fastpath: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    active, ipvs = _pulse(fastpath)
    sent: list[tuple[int, int]] = []

    def send(kind: packet.Kind, payload: bytes, flags: int = 0) -> bool:
        sent.append((len(sync.decode(payload)), flags))
        return True

    monkeypatch.setattr(active.peer, "send", send)
    ipvs.table.enable_sync_log(256)
    active.streamer = sync.Streamer(dump_slice=40)
    for p in range(60):
        ipvs.table.set_state(ipvs.table.insert(6, CLIENT, p, VIP, 80, RIP, 80, 0, 0), ES, 0)
    ipvs.table.sync_changes(1000)
    active.streamer.start_dump()
    assert active.stream_once(0) == 40
    assert active.streamer.dumping
    assert active.stream_once(1) == 20
    assert not active.streamer.dumping
    assert (active._counts["sync_dumps"], active._counts["sync_log_lost"]) == (1, 0)
    ends = [f for _, f in sent]
    assert ends[-1] == packet.SYNC_DUMP_END
    assert ends.count(packet.SYNC_DUMP_END) == 1
    assert sum(n for n, _ in sent) == 60
    sent.clear()
    active.streamer.start_dump()
    ipvs.table.flush()
    ipvs.table.sync_changes(1000)
    assert active.stream_once(2) == 0
    assert sent == [(0, packet.SYNC_DUMP_END)]


MARK, RIP2, RIP3, MASK = 7, 0x0A000103, 0x0A000104, 0xFFFFFF00
_KEY = slice(0, 7)  # conn_info: proto, caddr, cport, vaddr, vport, daddr, dport
_STATE, _FLAGS, _CTL = 8, 9, 12


def _with_fwmark(pulse: Pulse, ipvs: IPVS, spare_dest: bool = False) -> Pulse:
    """Add a persistent fwmark service (mark 7, TCP, /24) whose dest RIP2 has no port."""
    svc = ipvs.add_service(IPPROTO_TCP, 0, 0, "rr", timeout=300, netmask=MASK, fwmark=MARK)
    if spare_dest:
        svc.add_dest(RIP3, 0)  # RIP2 gets another slot here than on the active director
    svc.add_dest(RIP2, 0)
    return pulse


def _linked(table: Any) -> list[tuple[tuple[int, ...], int, int, tuple[int, ...] | None]]:
    """Every entry as (key, state, flags, its template's key), independent of handles."""
    out = []
    for row in table.entries(100):
        info = row[1:]
        ctl = info[_CTL]
        out.append(
            (
                tuple(info[_KEY]),
                info[_STATE],
                info[_FLAGS] & (sync.F_TEMPLATE | sync.F_INACTIVE),
                tuple(table.conn_info(ctl)[_KEY]) if ctl >= 0 else None,
            )
        )
    return sorted(out)


def test_fwmark_connection_and_template_sync_with_their_mark(fastpath: ModuleType) -> None:
    active, a_ipvs = _pulse(fastpath)
    _with_fwmark(active, a_ipvs)
    standby, s_ipvs = _pulse(fastpath)
    _with_fwmark(standby, s_ipvs, spare_dest=True)
    a_ipvs.table.enable_sync_log(256)
    svc = a_ipvs.find_service(IPPROTO_TCP, VIP, 443, MARK)
    assert svc is not None
    marked = a_ipvs.new_connection(IPPROTO_TCP, CLIENT, 40000, VIP, 443, 0, svc)
    plain = a_ipvs.new_connection(IPPROTO_TCP, CLIENT, 40001, VIP, 80, 0)
    assert marked is not None
    assert plain is not None
    a_ipvs.table.set_state(marked, ES, 0)
    a_ipvs.table.set_state(plain, ES, 0)

    tick = active.streamer.tick(a_ipvs.table, 0)
    snet = CLIENT & MASK
    assert [(e.protocol, e.caddr, e.cport, e.vaddr, e.vport, e.fwmark) for e in tick.entries] == [
        (0, snet, 0, MARK, 0, MARK),  # the template: <IPPROTO_IP, snet, 0, fwmark, 0>
        (IPPROTO_TCP, CLIENT, 40000, VIP, 443, MARK),
        (IPPROTO_TCP, CLIENT, 40001, VIP, 80, 0),  # an address service's: unmarked
    ]
    _mirror(standby, tick)
    assert _linked(s_ipvs.table) == _linked(a_ipvs.table)
    assert [key for key, _, _, ctl in _linked(s_ipvs.table) if ctl is not None] == [
        (IPPROTO_TCP, CLIENT, 40000, VIP, 443, RIP2, 443)
    ]
    dests = {row[3]: row[8] for row in s_ipvs.table.entries(100)}  # cport -> dest slot
    rip2 = s_ipvs.get_service(IPPROTO_TCP, 0, 0, MARK).find_dest(RIP2, 0)
    assert rip2 is not None
    assert dests[40000] == dests[0] == rip2.slot

    # A later connection of that client network joins the synced template on the standby.
    later = a_ipvs.new_connection(IPPROTO_TCP, CLIENT, 40002, VIP, 8443, 1, svc)
    assert later is not None
    a_ipvs.table.set_state(later, ES, 1)
    a_ipvs.table.remove(marked)
    tick = active.streamer.tick(a_ipvs.table, 1)
    assert {(e.cport, e.removed, e.fwmark) for e in tick.entries} == {
        (40002, False, MARK),
        (40000, True, MARK),
    }
    _mirror(standby, tick)
    assert _linked(s_ipvs.table) == _linked(a_ipvs.table)


def test_marked_entry_needs_the_dest_in_its_fwmark_service(fastpath: ModuleType) -> None:
    standby, ipvs = _pulse(fastpath)
    _with_fwmark(standby, ipvs)
    # RIP serves the address service VIP:80 only: not the mark's service, so refused.
    stray = sync.ConnEntry(IPPROTO_TCP, CLIENT, 1000, VIP, 80, RIP, 80, ES, 0, 0, MARK)
    assert not standby.apply_entry(stray, 0)
    # No service has the mark: like ip_vs_service_find, the address decides.
    other = stray._replace(fwmark=MARK + 1)
    assert standby.apply_entry(other, 0)
    assert _keys(ipvs.table) == [(1000, ES)]


def test_ftp_offsets_and_expected_connections_reach_the_standby(fastpath: ModuleType) -> None:
    """After a rewritten 227 the standby holds the control connection, bound to the helper
    with the same sequence offsets, and the expected data connection (cport 0, LISTEN)."""
    ipvs = IPVS(fastpath.ConnTable(64, max_dests=8, max_svcs=4))
    ipvs.add_service(IPPROTO_TCP, VIP, 21, "rr").add_dest(RIP, 21)
    standby, _ = _pulse(fastpath)
    standby._ipvs = lambda: ipvs
    standby.table = ipvs.table
    active = fastpath.ConnTable(64, 8, 4)
    active.set_dest(0, 0, RIP, 21, 0, 0)
    active.enable_sync_log(256)
    ctl = active.insert(6, CLIENT, 40000, VIP, 21, RIP, 21, 0, 0)
    active.bind_app(ctl)
    active.set_state(ctl, ES, 0)
    active.seq_update(ctl, False, 5001, -4)
    data = active.insert(6, CLIENT, 0, VIP, 30000, RIP, 30000, 0, 0, ctl)
    active.set_state(data, fastpath.LISTEN, 0)
    _mirror(standby, sync.Streamer().tick(active, 0))
    h = ipvs.table.lookup(6, CLIENT, 40000, VIP, 21)
    assert ipvs.table.conn_info(h)[9] & fastpath.CONN_F_APP
    assert ipvs.table.seq_state(h) == (0, 0, 0, 5001, -4, 0)
    d = ipvs.table.lookup(6, CLIENT, 0, VIP, 30000)
    assert ipvs.table.conn_info(d)[5:9] == (RIP, 30000, 0, fastpath.LISTEN)


def _established(cport: int) -> sync.ConnEntry:
    return sync.ConnEntry(6, CLIENT, cport, VIP, 80, RIP, 80, ES, 0, 0)


def test_a_standby_ignores_the_sync_of_another_syncd_id(fastpath: ModuleType) -> None:
    """Two pairs on one segment with syncd_id 1 and 2: neither applies the other's sync."""
    standby, ipvs = _pulse(fastpath, syncid=1)
    [other] = sync.encode([_established(1000)], syncid=2)
    [ours] = sync.encode([_established(1001)], syncid=1)
    standby._sync_received(SyncReceived(other, False))
    assert len(ipvs.table) == 0
    assert standby._counts["sync_refused"] == 1
    standby._sync_received(SyncReceived(ours, False))
    assert _keys(ipvs.table) == [(1001, ES)]


def test_syncdaemon_0_applies_no_sync(fastpath: ModuleType) -> None:
    standby, ipvs = _pulse(fastpath, cfg=DirectorConfig(syncdaemon=False))
    [msg] = sync.encode([_established(1000)])
    standby._sync_received(SyncReceived(msg, True))
    assert len(ipvs.table) == 0
    assert standby._counts["sync_received"] == 0


def test_a_syncd_iface_that_no_heartbeat_path_uses_is_refused() -> None:
    path = HeartbeatPath("public", IPv4Address("192.0.2.2"), IPv4Address("192.0.2.1"))
    with pytest.raises(ConfigError, match="syncd_iface = eth7: lvsd sends connection sync"):
        sync_path(DirectorConfig(syncd_iface="eth7"), [path])
    assert sync_path(DirectorConfig(), [path]) is None


def test_a_hook_runs_with_its_output_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="director.daemon.pulse")
    rc = asyncio.run(run_hook("echo one; echo two >&2; exit 3", "active_cmd"))
    assert rc == 3
    lines = [r.getMessage() for r in caplog.records]
    assert "failover: active_cmd: one" in lines
    assert "failover: active_cmd: two" in lines
    assert any("exited with 3" in line for line in lines)
    assert asyncio.run(run_hook(None, "inactive_cmd")) is None


def test_synced_connections_are_not_counted_as_scheduled_here(fastpath: ModuleType) -> None:
    """A standby's conns counters count what it schedules, as the kernel's: not sync."""
    standby, ipvs = _pulse(fastpath)
    [msg] = sync.encode([_established(1000), _established(1001)])
    standby._sync_received(SyncReceived(msg, False))
    assert len(ipvs.table) == 2
    svc = next(iter(ipvs.services.values()))
    dest = svc.dests[0]
    assert ipvs.table.svc_buffer()[svc.index * fastpath.SVC_FIELDS + fastpath.SVC_CONNS] == 0
    assert ipvs.table.dest_buffer()[dest.slot * fastpath.DEST_FIELDS + fastpath.DEST_CONNS] == 0
    assert dest.inactive_conns + dest.active_conns == 2  # bound all the same
