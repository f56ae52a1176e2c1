"""The kernel's IPVS selftest (tools/testing/selftests/netfilter/ipvs.sh), its NAT and DR
cases, ported to the lab: lvsd starts with no virtual server and lvsadm fills it, as the
selftest's ipvsadm commands fill kernel IPVS. Also: a routed VIP (on none of the
director's subnets) is served without proxy ARP.

    client 10.0.1.100 ── br-pub ── director eth0 10.0.1.1      (lvsd, empty lvs.cf)
                                   director eth1 192.168.1.1 ── br-priv ── real1 192.168.1.10

NAT: ``-A -t VIP:80 -s rr`` and ``-a -r RIP:80 -m``; the real's default route is the
director (its nat_router address). DR: ``-A`` and ``-a -r RIP -g``; the real holds the
VIP on ``lo`` with arp_ignore/arp_announce, and, as in the selftest, its default route is
the director, whose kernel forwards the replies (lvsd passes them through unchanged). In
both, the client downloads through the VIP and checks the digest, and the director's
namespace is as before once lvsd has stopped. The VIP is never a local address of the
director: ``-A`` of one that is (as ipvsadm scripts configure it) is refused, naming the
address and the interface.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from director.config import parse_config
from director.tools.demo import LabDirector
from lab.cluster import Lab, LabSpec
from lab.server import expected_digest
from tests.netns.conftest import LabFactory
from tests.netns.test_dataplane import _state_dump

pytestmark = pytest.mark.netns

VIP = "10.0.1.5"
RIP = "192.168.1.10"
EMPTY_CF = """
heartbeat = 0
primary = 10.0.1.1
public_iface = eth0
private_iface = eth1
nat_router = 192.168.1.254 eth1:1
"""
SIZE = 8 << 20


class Empty:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.before = _state_dump(lab, "director")
        self.director = LabDirector(lab, parse_config(EMPTY_CF, "empty.cf")).start()

    def lvsadm(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "director.ops.lvsadm"]
        argv += ["--socket", str(self.director.socket_path), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if ok:
            assert done.returncode == 0, (done.stderr, self.director.log()[-3000:])
        return done

    def download(self) -> str:
        return self.lab.run(
            "client",
            ["sh", "-c", f"curl -sS --max-time 60 http://{VIP}/bytes/{SIZE} | sha256sum"],
            timeout=90,
        ).stdout.split()[0]


@pytest.fixture
def empty_nat(lab_factory: LabFactory) -> Iterator[Empty]:
    e = Empty(lab_factory(reals=1))
    try:
        yield e
    finally:
        assert e.director.stop() == 0, e.director.log()
    assert _state_dump(e.lab, "director") == e.before


@pytest.fixture
def empty_dr(lab_factory: LabFactory) -> Iterator[Empty]:
    lab = lab_factory(reals=1, spec=LabSpec(mode="direct"))
    # As in the selftest: the real's only way out is the director.
    lab.run("real1", ["ip", "link", "set", "eth1", "down"])
    lab.run("real1", ["ip", "route", "add", "default", "via", "192.168.1.1"])
    e = Empty(lab)
    try:
        yield e
    finally:
        assert e.director.stop() == 0, e.director.log()
    assert _state_dump(e.lab, "director") == e.before


def test_nat_case(empty_nat: Empty) -> None:
    e = empty_nat
    assert e.director.status()["services"] == []
    e.lvsadm("-A", "-t", f"{VIP}:80", "-s", "rr")
    e.lvsadm("-a", "-t", f"{VIP}:80", "-r", f"{RIP}:80", "-m")
    assert e.download() == expected_digest(SIZE)
    assert f"{RIP}:80              Masq" in e.lvsadm("-L", "-n").stdout


def test_dr_case(empty_dr: Empty) -> None:
    e = empty_dr
    e.lvsadm("-A", "-t", f"{VIP}:80", "-s", "rr")
    e.lvsadm("-a", "-t", f"{VIP}:80", "-r", RIP, "-g")
    assert e.download() == expected_digest(SIZE)
    assert f"{RIP}:80              Route" in e.lvsadm("-L", "-n").stdout


def test_a_vip_that_is_a_local_address_is_refused(empty_nat: Empty) -> None:
    e = empty_nat
    e.lab.run("director", ["ip", "addr", "add", "10.0.1.6/24", "dev", "eth0"])
    try:
        refused = e.lvsadm("-A", "-t", "10.0.1.6:80", "-s", "rr", ok=False)
        assert refused.returncode == 255
        assert "VIP 10.0.1.6: is a local address of this director (on eth0)" in refused.stderr
        assert "10.0.1.6" not in e.lvsadm("-L", "-n").stdout
    finally:
        e.lab.run("director", ["ip", "addr", "del", "10.0.1.6/24", "dev", "eth0"])
    # Removed, the same address is served.
    e.lvsadm("-A", "-t", "10.0.1.6:80", "-s", "rr")
    e.lvsadm("-D", "-t", "10.0.1.6:80")


def test_a_routed_vip_needs_no_arp(empty_nat: Empty) -> None:
    """A VIP on none of the director's subnets, routed to it by the client's router (here
    the client's own route): lvsd routes it into the data plane and answers no ARP."""
    e = empty_nat
    routed = "203.0.113.5"
    e.lab.run("client", ["ip", "route", "add", routed, "via", "10.0.1.1"])
    e.lvsadm("-A", "-t", f"{routed}:80", "-s", "rr")
    e.lvsadm("-a", "-t", f"{routed}:80", "-r", f"{RIP}:80", "-m")
    body = e.lab.run(
        "client", ["curl", "-sS", "--max-time", "30", f"http://{routed}/"], timeout=60
    ).stdout
    assert body == "real1\n"
    assert routed not in e.lab.run("director", ["ip", "neigh", "show", "proxy"]).stdout
    assert routed in e.lab.run("director", ["ip", "route", "show", routed]).stdout
