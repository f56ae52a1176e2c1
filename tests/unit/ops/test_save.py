"""``lvsd save``: the running services written back as lvs.cf."""

from __future__ import annotations

import argparse
import asyncio
from ipaddress import IPv4Address
from pathlib import Path

from director.config import DirectorConfig, format_config, parse_config
from director.ops.save import add_command, running_config
from tests.unit.daemon.test_nanny import FWMARK_CF
from tests.unit.ops.test_lvsadm import Daemon, daemon

__all__ = ["daemon"]  # the fixture: a control socket over a real Admin and service layer


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


CF = """
network = nat
nat_router = 192.168.1.254 eth1:1
virtual web {
    address = 10.0.1.5
    port = 80
    scheduler = wlc
    server real1 {
        address = 192.168.1.10
        weight = 2
    }
    server real2 {
        address = 192.168.1.11
    }
}
virtual ftp {
    address = 10.0.1.5
    port = 21
    scheduler = rr
    server real1 {
        address = 192.168.1.10
    }
}
"""
RUNNING = (
    ("-A", "-t", "10.0.1.5:80", "-s", "wlc"),
    ("-a", "-t", "10.0.1.5:80", "-r", "192.168.1.10:80", "-m", "-w", "2"),
    ("-a", "-t", "10.0.1.5:80", "-r", "192.168.1.11:80", "-m", "-w", "1"),
    ("-A", "-t", "10.0.1.5:21", "-s", "rr"),
    ("-a", "-t", "10.0.1.5:21", "-r", "192.168.1.10:21", "-m", "-w", "1"),
)


async def save(daemon: Daemon, cf: Path) -> DirectorConfig:
    """``lvsd save -c cf --socket ... -o -`` as the command line runs it; what it wrote."""
    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers())
    out = cf.with_suffix(".saved")
    args = parser.parse_args(["save", "-c", str(cf), "--socket", str(daemon.path), "-o", str(out)])
    assert await asyncio.to_thread(args.func, args) == 0
    return parse_config(out.read_text(), str(out))


def servers(cfg: DirectorConfig, name: str) -> dict[str, tuple[str, int]]:
    (v,) = [v for v in cfg.virtuals if v.name == name]
    return {s.name: (str(s.address), s.weight) for s in v.servers}


async def test_services_and_servers_changed_with_lvsadm_are_saved(
    daemon: Daemon, tmp_path: Path
) -> None:
    cf = tmp_path / "lvs.cf"
    cf.write_text(CF)
    for rule in RUNNING:
        assert (await daemon.run(*rule)).status == 0
    unchanged = await save(daemon, cf)
    assert [(v.name, v.ports, v.active) for v in unchanged.virtuals] == [
        ("web", (80,), True),
        ("ftp", (21,), True),
    ]
    changes: tuple[tuple[str, ...], ...] = (
        ("-a", "-t", "10.0.1.5:80", "-r", "192.168.1.12:80", "-m", "-w", "5"),  # server added
        ("-d", "-t", "10.0.1.5:80", "-r", "192.168.1.11:80"),  # server deleted
        ("-D", "-t", "10.0.1.5:21"),  # a configured service deleted
        ("-A", "-u", "10.0.1.5:53", "-s", "sh"),  # a service of lvsadm's own
        ("-a", "-u", "10.0.1.5:53", "-r", "192.168.1.12:5353", "-m", "-w", "3"),
    )
    for change in changes:
        assert (await daemon.run(*change)).status == 0, change
    saved = await save(daemon, cf)
    by_name = {v.name: v for v in saved.virtuals}
    assert set(by_name) == {"web", "ftp", "udp_10_0_1_5_53"}
    assert servers(saved, "web") == {
        "real1": ("192.168.1.10", 2),
        "real_192_168_1_12": ("192.168.1.12", 5),
    }
    assert not by_name["ftp"].active  # kept, switched off: its settings are not lost
    dns = by_name["udp_10_0_1_5_53"]
    assert (dns.protocol.value, dns.ports, dns.scheduler, dns.active) == ("udp", (53,), "sh", True)
    assert {(str(s.address), s.port, s.weight) for s in dns.servers} == {("192.168.1.12", 5353, 3)}
    # Saved, restarted: the daemon would load exactly the running table again.
    rerun = tmp_path / "rerun.cf"
    rerun.write_text(format_config(saved))
    again = await save(daemon, rerun)
    assert again == saved
