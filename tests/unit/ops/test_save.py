"""``lvsd save``: the running services written back as lvs.cf."""

from __future__ import annotations

from ipaddress import IPv4Address

from director.config import parse_config
from director.ops.save import running_config
from tests.unit.daemon.test_nanny import FWMARK_CF


def test_a_fwmark_servers_destination_port_0_is_saved_without_port() -> None:
    base = parse_config(FWMARK_CF)
    service = {
        "proto": "TCP",
        "addr": "0.0.0.0:0",
        "fwmark": 1,
        "scheduler": "wlc",
        "flags": [],
        "persistent": 0,
        "netmask": "255.255.255.255",
        "dests": [
            {"addr": "192.168.1.10:0", "weight": 3},
            {"addr": "192.168.1.11:8000", "weight": 1},
        ],
    }
    cfg = running_config(base, {"services": [service]}, (900, 120, 300))
    (v,) = cfg.virtuals
    assert (v.fwmark, v.ports, v.scheduler) == (1, (80,), "wlc")
    ports = {s.address: (s.port, s.weight) for s in v.servers}
    assert ports == {IPv4Address("192.168.1.10"): (None, 3), IPv4Address("192.168.1.11"): (8000, 1)}
