"""The nanny bridge: probes chosen from lvs.cf, events applied to the service layer."""

from __future__ import annotations

from types import ModuleType

import pytest

from director.config import parse_config
from director.daemon.director import build_ipvs
from director.daemon.nanny import Nanny, targets
from director.tools.agent import capacity_line
from healthcheck.events import HealthChanged, WeightChanged
from healthcheck.specs import ProbeKind, ServiceKey

CF = """
network = nat
nat_router = 192.168.1.254 eth1
virtual web {{
    address = 10.0.1.5 eth0:1
    port = 80,21,53
    scheduler = wrr
    sorry_server = 192.168.1.99
    timeout = 6
    probe_interval = 2
    reentry = 30
    quiesce_server = {quiesce}
    agent_port = 5555
    server real1 {{
        address = 192.168.1.10
        weight = 100
    }}
    server real2 {{
        address = 192.168.1.11
        weight = 100
    }}
}}
"""
WEB = ServiceKey(6, "10.0.1.5", 80)
R1, R2 = 0xC0A8010A, 0xC0A8010B
SORRY = 0xC0A80163


def make(fastpath: ModuleType, quiesce: int = 0) -> Nanny:
    cfg = parse_config(CF.format(quiesce=quiesce))
    return Nanny(cfg, build_ipvs(cfg, fastpath.ConnTable(1024)))


def weights(n: Nanny) -> dict[int, int]:
    svc = n.ipvs.get_service(6, 0x0A000105, 80)
    return {d.addr: d.weight for d in svc.dests}


def down(addr: str) -> HealthChanged:
    return HealthChanged(WEB, addr, 80, False, 0, "connection refused", "http", 6.0)


def test_targets_follow_nannys_choice_of_probe() -> None:
    cfg = parse_config(CF.format(quiesce=0))
    ts = targets(cfg)
    assert len(ts) == 6
    kinds = {(t.key.vport, t.probe.kind) for t in ts}
    assert kinds == {(80, ProbeKind.HTTP), (21, ProbeKind.TCP), (53, ProbeKind.TCP)}
    t = ts[0]
    assert (t.interval, t.probe.timeout, t.tracker.timeout, t.tracker.reentry) == (2, 2, 6, 30)
    assert t.agent is not None
    assert t.agent.port == 5555


def test_down_removes_then_sorry_then_ramped_return(fastpath: ModuleType) -> None:
    n = make(fastpath)
    n.apply(down("192.168.1.11"))
    assert weights(n) == {R1: 100}
    n.apply(down("192.168.1.10"))
    assert weights(n) == {SORRY: 1}
    n.apply(HealthChanged(WEB, "192.168.1.11", 80, True, 3, "HTTP 200", "http", 30.0))
    assert weights(n) == {R2: 3}
    n.apply(WeightChanged(WEB, "192.168.1.11", 80, 6, "ramp"))
    assert weights(n) == {R2: 6}
    n.apply(WeightChanged(WEB, "192.168.1.10", 80, 6, "stale: real1 is out"))
    assert weights(n) == {R2: 6}
    s = n.statistics()
    assert (s.taken_out, s.put_back, s.sorry_added, s.sorry_removed) == (2, 1, 1, 1)


def test_quiesce_keeps_the_dest_at_weight_zero(fastpath: ModuleType) -> None:
    n = make(fastpath, quiesce=1)
    n.apply(down("192.168.1.11"))
    assert weights(n) == {R1: 100, R2: 0}
    n.apply(HealthChanged(WEB, "192.168.1.11", 80, True, 3, "HTTP 200", "http", 30.0))
    assert weights(n) == {R1: 100, R2: 3}


@pytest.mark.parametrize(
    ("load", "cpus", "line"), [(0.0, 2, "100%"), (1.0, 2, "50%"), (4.0, 2, "1%"), (0.3, 1, "70%")]
)
def test_agent_capacity_line(load: float, cpus: int, line: str) -> None:
    assert capacity_line(load, cpus) == line


FWMARK_CF = """
network = nat
nat_router = 192.168.1.254 eth1
virtual marked {
    address = 10.0.1.5 eth0:1
    fwmark = 1
    port = 80
    scheduler = rr
    server real1 {
        address = 192.168.1.10
    }
    server real2 {
        address = 192.168.1.11
        port = 8000
    }
}
"""


def test_a_fwmark_servers_unset_port_keeps_the_packets_port(fastpath: ModuleType) -> None:
    # ipvsadm -a -f 1 -r 192.168.1.10: destination port 0, each packet keeps its port;
    # nanny still probes the virtual's port and names the target by the destination.
    cfg = parse_config(FWMARK_CF)
    ipvs = build_ipvs(cfg, fastpath.ConnTable(1024))
    svc = ipvs.get_service(6, 0, 0, fwmark=1)
    assert {(d.addr, d.port) for d in svc.dests} == {(R1, 0), (R2, 8000)}
    ts = {t.addr: t for t in targets(cfg)}
    assert (ts["192.168.1.10"].port, ts["192.168.1.10"].probe.port) == (0, 80)
    assert (ts["192.168.1.11"].port, ts["192.168.1.11"].probe.port) == (8000, 8000)
    dports = set()
    for cport in (40000, 40001):
        h = ipvs.new_connection(6, 0x0A000164, cport, 0x0A000105, 443, 0, svc)
        assert h is not None
        dports.add(ipvs.table.conn_info(h)[6])
    assert dports == {443, 8000}
