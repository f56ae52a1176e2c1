"""The reaper in a lab: a director killed with SIGKILL stops answering for the VIP.

    client 10.0.1.100 -- br-pub -- director eth0 10.0.1.1  (VIP 10.0.1.5 by proxy ARP)
                                  director eth1 192.168.1.1 (+ nat_router 192.168.1.254)
                         br-priv -- real1..3 192.168.1.10-12

One director on the thesis's lvs.cf, no backup. After ``kill -9`` of the daemon its
reaper removes the proxy entry, the nat_router address and the policy rule, puts the
sysctls back, and the client's ARP request for the VIP goes unanswered. After a clean
stop the reaper exits without acting. One fast path is enough: the reaper is a process of
its own that removes plumbing and never touches the connection table.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from director.config import load_config
from director.daemon.director import plumbing_spec
from director.daemon.reaper import TUN_GONE_TIMEOUT_S, spec_to_json
from director.tools.demo import THESIS_CF, LabDirector
from lab.cluster import Lab, namespace_pids

pytestmark = pytest.mark.netns

VIP = "10.0.1.5"
NAT_ROUTER = "192.168.1.254"
WAIT_S = TUN_GONE_TIMEOUT_S + 10.0

ARP_PROBE = """
from scapy.layers.l2 import ARP, Ether
from scapy.sendrecv import srp
answered, _ = srp(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="{vip}"), iface="eth0",
                  timeout=1, verbose=0)
print(",".join(sorted({{r[1].hwsrc for r in answered}})))
"""


def arp_answers(lab: Lab, vip: str = VIP) -> set[str]:
    """The MACs answering the client's ARP request for ``vip`` within one second."""
    out = lab.run("client", [sys.executable, "-c", ARP_PROBE.format(vip=vip)]).stdout.strip()
    return set(out.split(",")) - {""}


def mac(lab: Lab, node: str, iface: str = "eth0") -> str:
    return lab.run(node, ["cat", f"/sys/class/net/{iface}/address"]).stdout.strip()


def proxied(lab: Lab, node: str = "director") -> bool:
    return VIP in lab.run(node, ["ip", "neigh", "show", "proxy"]).stdout


def has_nat_router(lab: Lab, node: str = "director") -> bool:
    return f"{NAT_ROUTER}/" in lab.run(node, ["ip", "-4", "addr", "show"]).stdout


def has_rule(lab: Lab, node: str = "director") -> bool:
    return "lookup 469" in lab.run(node, ["ip", "rule", "show"]).stdout


def offload_filters(lab: Lab, node: str = "director") -> int:
    """lvsd's tc programs attached to the ingress of the node's eth0 and eth1."""
    return sum(
        "lvsd_offload" in lab.run(node, ["tc", "filter", "show", "dev", dev, "ingress"]).stdout
        for dev in ("eth0", "eth1")
    )


SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv4/tcp_early_demux",
    "net/ipv4/udp_early_demux",
    "net/ipv4/neigh/eth0/proxy_delay",
    "net/ipv4/conf/all/rp_filter",
    "net/ipv4/conf/eth1/rp_filter",
)


def sysctls(lab: Lab, node: str = "director") -> dict[str, str]:
    paths = [f"/proc/sys/{key}" for key in SYSCTLS]
    values = lab.run(node, ["cat", *paths]).stdout.split()
    return dict(zip(SYSCTLS, values, strict=True))


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except FileNotFoundError:  # a short-lived child that is gone already
        return b""


def wait_for(what: str, cond: Callable[[], bool], log: Callable[[], str]) -> None:
    """Poll ``cond`` every 50 ms for at most WAIT_S seconds."""
    deadline = time.monotonic() + WAIT_S
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{log()[-3000:]}")
        time.sleep(0.05)


def test_kill_9_director_its_reaper_removes_the_claims(lab: Lab) -> None:
    before = sysctls(lab)
    d = LabDirector(lab, load_config(THESIS_CF)).start()
    try:
        assert sysctls(lab) != before  # early demux and proxy_delay at least
        assert proxied(lab)
        assert has_nat_router(lab)
        assert has_rule(lab)
        assert arp_answers(lab) == {mac(lab, "director")}
        assert offload_filters(lab) == 2  # ingress of eth0 and eth1
        assert d.proc is not None
        d.proc.kill()
        d.proc.wait()
        wait_for(
            "the reaper to remove the proxy entry, nat_router and rule",
            lambda: not (proxied(lab) or has_nat_router(lab) or has_rule(lab)),
            d.log,
        )
        wait_for("the reaper to exit", lambda: not namespace_pids(lab.ns("director")), d.log)
        assert arp_answers(lab) == set()
        assert "reaper: the director died" in d.log()
        assert sysctls(lab) == before, d.log()[-3000:]
        # The kernel offload's program no longer forwards the dead director's connections.
        assert offload_filters(lab) == 0, d.log()[-3000:]
    finally:
        d.stop()


def test_clean_stop_disarms_the_reaper(lab: Lab) -> None:
    d = LabDirector(lab, load_config(THESIS_CF)).start()
    try:
        # The daemon and its reaper; nanny's load probes (the thesis's
        # load_monitor = uptime) may briefly add a short-lived child of their own.
        pids = namespace_pids(lab.ns("director"))
        assert d.proc is not None
        assert d.proc.pid in pids
        reapers = [p for p in pids if b"director.daemon.reaper" in _cmdline(p)]
        assert len(reapers) == 1
    finally:
        rc = d.stop()
    assert rc == 0
    assert not namespace_pids(lab.ns("director"))
    assert "reaper: the director died" not in d.log()
    assert not proxied(lab)
    assert not has_nat_router(lab)
    assert not has_rule(lab)


def test_a_restarted_director_is_not_reaped(lab: Lab) -> None:
    """A new director that holds the TUN before the old reaper looks is left alone."""
    cfg = load_config(THESIS_CF)
    # Hold a TUN of the same name in the node, as a director started at once would.
    holder = lab.popen(
        "director",
        [
            sys.executable,
            "-c",
            "import sys; from director.dataplane.tun import open_tun; t = open_tun('lvs0'); "
            "print('up', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "up"
        # Claims as a live director would hold them, and a reaper told its daemon died.
        lab.run("director", ["ip", "neigh", "add", "proxy", VIP, "dev", "eth0"])
        reaper = lab.popen(
            "director",
            [sys.executable, "-m", "director.daemon.reaper", spec_to_json(plumbing_spec(cfg))],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, err = reaper.communicate(timeout=WAIT_S)
        assert reaper.returncode == 0
        assert "someone holds it" in err
        assert proxied(lab)
    finally:
        holder.communicate(timeout=10)
