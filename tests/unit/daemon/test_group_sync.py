"""Group sync without a network: two directors' tables, Streamer -> messages -> copies.

Each director sends its own connections and keeps the other's as copies; it never sends
a copy on except in a full dump (what a joining director needs), and a copy of a
connection it holds itself changes nothing (no duplicate entry, no echo loop).
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address
from socket import IPPROTO_TCP
from types import ModuleType, SimpleNamespace
from typing import cast

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from director.config import DirectorConfig
from director.daemon.group import Group
from director.dataplane.plumbing import Plumbing
from director.ipvs.service import IPVS
from director.ops import metrics
from failover import packet, sync
from failover.group import GroupSettings, GroupSync

VIP, RIP, CLIENT = 0xC000020A, 0x0A000102, 0xC6336401
ES = 1
A, B = IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2")


def _group(
    fastpath: ModuleType, me: IPv4Address, peer: IPv4Address
) -> tuple[Group, IPVS, list[bytes]]:
    ipvs = IPVS(fastpath.ConnTable(64, max_dests=8, max_svcs=4))
    svc = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    svc.add_dest(RIP, 80)
    cfg = DirectorConfig(
        active_active=True, directors=(A, B), bgp_neighbor=IPv4Address("192.0.2.254"),
        bgp_asn=65001, bgp_neighbor_asn=65000,
    )  # fmt: skip
    plumbing = cast(Plumbing, SimpleNamespace(spec=SimpleNamespace(vips=(IPv4Address(VIP),))))
    settings = GroupSettings(me, (peer,), 539, b"k" * 16, 0.2, 1.0)
    group = Group(cfg, settings, plumbing, ipvs.table, lambda: ipvs, lambda: 0)
    ipvs.table.enable_sync_log(256)
    sent: list[bytes] = []

    def broadcast(kind: packet.Kind, payload: bytes, flags: int = 0) -> int:
        sent.append(payload)
        return 1

    group.link.broadcast = broadcast  # type: ignore[method-assign]
    return group, ipvs, sent


def _deliver(to: Group, sent: list[bytes], peer: IPv4Address) -> None:
    for payload in sent:
        to._group_sync(GroupSync(peer, payload, False, 0))
    sent.clear()


def _entries(sent: list[bytes]) -> list[int]:
    return [e.cport for m in sent for e in sync.decode(m)]


def test_own_connections_go_copies_stay_and_echoes_change_nothing(fastpath: ModuleType) -> None:
    a, ipvs_a, sent_a = _group(fastpath, A, B)
    b, ipvs_b, sent_b = _group(fastpath, B, A)
    h = ipvs_a.table.insert(6, CLIENT, 1000, VIP, 80, RIP, 80, 0, 0)
    ipvs_a.table.set_state(h, ES, 0)
    a.stream_once(0)
    assert _entries(sent_a) == [1000]
    _deliver(b, sent_a, A)
    # B holds a copy.
    assert len(ipvs_b.table) == 1
    assert b.snapshot()["shadow_conns"] == 1
    # B's own ticks never send A's connection back ...
    b.stream_once(100)
    assert _entries(sent_b) == []
    # ... a dump does (a joining director needs every flow), and A keeps its own entry.
    b.streamer.start_dump()
    for now in range(200, 2000, 100):
        b.stream_once(now)
        if not b.streamer.dumping:
            break
    assert _entries(sent_b) == [1000]
    _deliver(a, sent_b, B)
    assert len(ipvs_a.table) == 1
    assert a.snapshot()["sync_own"] == 1
    assert a.snapshot()["shadow_conns"] == 0


def test_a_removed_connection_goes_from_the_copies(fastpath: ModuleType) -> None:
    a, ipvs_a, sent_a = _group(fastpath, A, B)
    b, ipvs_b, _ = _group(fastpath, B, A)
    h = ipvs_a.table.insert(6, CLIENT, 1000, VIP, 80, RIP, 80, 0, 0)
    ipvs_a.table.set_state(h, ES, 0)
    a.stream_once(0)
    _deliver(b, sent_a, A)
    assert len(ipvs_b.table) == 1
    ipvs_a.table.remove(h)
    a.stream_once(100)
    _deliver(b, sent_a, A)
    assert len(ipvs_b.table) == 0


@pytest.mark.parametrize("draining", [True, False])
def test_why_not_serving_names_the_reason(fastpath: ModuleType, draining: bool) -> None:
    g, _, _ = _group(fastpath, A, B)
    g.draining = draining
    if draining:
        assert g.why_not_serving() == "draining"
    else:
        g.plumbing = cast(Plumbing, SimpleNamespace(public_iface="lo", spec=g.plumbing.spec))
        assert g.why_not_serving() == "waiting for the peers' tables"


def test_the_metrics_show_the_copies_the_sync_and_why_not_serving(fastpath: ModuleType) -> None:
    a, ipvs_a, sent_a = _group(fastpath, A, B)
    b, _, _ = _group(fastpath, B, A)
    for port in (1000, 1001):
        h = ipvs_a.table.insert(6, CLIENT, port, VIP, 80, RIP, 80, 0, 0)
        ipvs_a.table.set_state(h, ES, 0)
    a.stream_once(0)
    _deliver(b, sent_a, A)
    registry = CollectorRegistry(auto_describe=False)

    class Group_(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from metrics.group_families(b.group_statistics())

    registry.register(Group_())
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(generate_latest(registry).decode())
        for s in fam.samples
    }
    assert samples[("lvsd_group_enabled", ())] == 1.0
    assert samples[("lvsd_group_peer_connections", ())] == 2.0
    assert samples[("lvsd_group_sync_messages_total", (("outcome", "applied"),))] >= 1.0
    assert samples[("lvsd_group_vips_announced", ())] == 0.0
    assert samples[("lvsd_group_not_serving", (("reason", "starting"),))] == 1.0
    assert samples[("lvsd_group_peer_alive", (("peer", str(A)),))] == 0.0
    assert ("lvsd_group_withdrawals_total", ()) in samples
    # Outside a group only the switch is exported.
    assert [m.name for m in metrics.group_families(None)] == ["lvsd_group_enabled"]
