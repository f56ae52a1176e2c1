"""The forwarding method in lvs.cf: the global ``network`` and a server's own ``network``.

Piranha's ``network = nat | direct | tunnel`` is the default of every server in the file; a
``server`` block may say ``network`` itself for a mixed service. ``format_config`` writes a
server's method back and
``lvsd save`` (``running_config``) turns the running methods into the same keywords.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from director.config import Network, format_config, parse_config
from director.daemon.director import build_ipvs, plumbing_spec
from director.dataplane import fastpath
from director.errors import ConfigError
from director.ipvs.service import DROUTE, MASQ, TUNNEL
from director.ops.save import running_config

MIXED = """
service = lvs
primary = 10.0.1.1
nat_router = 192.168.1.254 eth1
network = direct

virtual web {
    address = 10.0.1.5 eth0:1
    port = 80
    scheduler = rr
    server dr1 {
        address = 10.0.2.10
    }
    server nat1 {
        address = 192.168.1.11
        network = nat
    }
}
"""


def test_a_server_takes_the_files_method_unless_it_names_its_own() -> None:
    cfg = parse_config(MIXED)
    dr1, nat1 = cfg.virtuals[0].servers
    assert cfg.network is Network.DIRECT
    assert (dr1.network, cfg.forwarding(dr1)) == (None, Network.DIRECT)
    assert (nat1.network, cfg.forwarding(nat1)) == (Network.NAT, Network.NAT)
    ipvs = build_ipvs(cfg, fastpath.ConnTable(16))
    (svc,) = ipvs.services.values()
    assert {str(d): d.fwd for d in svc.dests} == {"10.0.2.10:80": DROUTE, "192.168.1.11:80": MASQ}
    again = parse_config(format_config(cfg))
    assert again == cfg


def test_a_bad_server_method_names_the_line() -> None:
    broken = MIXED.replace("network = nat", "network = gre")
    with pytest.raises(ConfigError, match=r":16: .*network.*'gre'"):
        parse_config(broken)


def test_save_writes_the_running_methods_back() -> None:
    base = parse_config(MIXED)
    service = {
        "proto": "TCP",
        "addr": "10.0.1.5:80",
        "fwmark": 0,
        "scheduler": "rr",
        "flags": [],
        "persistent": 0,
        "netmask": "255.255.255.255",
        "dests": [
            {"addr": "10.0.2.10:80", "weight": 1, "fwd": "Route"},
            {"addr": "192.168.1.11:80", "weight": 1, "fwd": "Masq"},
            {"addr": "192.168.1.12:80", "weight": 1, "fwd": "Masq"},
        ],
    }
    cfg = running_config(base, {"services": [service]}, (900, 120, 300))
    methods = {s.address: s.network for s in cfg.virtuals[0].servers}
    assert methods == {
        IPv4Address("10.0.2.10"): None,
        IPv4Address("192.168.1.11"): Network.NAT,
        IPv4Address("192.168.1.12"): Network.NAT,
    }
    text = format_config(cfg)
    assert text.count("network = nat") == 2
    assert parse_config(text) == cfg


def test_a_direct_routing_server_keeps_the_virtuals_port() -> None:
    broken = MIXED.replace("address = 10.0.2.10", "address = 10.0.2.10\n        port = 8080")
    with pytest.raises(ConfigError, match=r":13: .*port.*receives the virtual's port \(80\)"):
        parse_config(broken)
    # The same port as the virtual's is no lie; a NAT server may map ports as it likes.
    parse_config(MIXED.replace("address = 10.0.2.10", "address = 10.0.2.10\n        port = 80"))
    parse_config(MIXED.replace("network = nat", "network = nat\n        port = 8080"))


def test_tunnelling_turns_the_tun_offloads_off_and_a_director_may_start_empty() -> None:
    assert plumbing_spec(parse_config(MIXED)).tun_offloads
    tunnel = parse_config(MIXED.replace("network = nat", "network = tunnel"))
    assert not plumbing_spec(tunnel).tun_offloads
    (svc,) = build_ipvs(tunnel, fastpath.ConnTable(16)).services.values()
    assert {str(d): d.fwd for d in svc.dests} == {"10.0.2.10:80": DROUTE, "192.168.1.11:80": TUNNEL}
    empty = parse_config("primary = 10.0.1.1\npublic_iface = eth0\nprivate_iface = eth1\n")
    assert plumbing_spec(empty).vips == ()
