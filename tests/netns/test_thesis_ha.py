"""The thesis's high-availability test plan (section 7.1, tests 3.1-3.9) in the lab.

    client 10.0.1.100 -- br-pub --+-- director eth0 10.0.1.1 (primary) eth1 192.168.1.1 --+
                                  +-- backup   eth0 10.0.1.2 (backup)  eth1 192.168.1.2 --+
                                                                br-priv -- real1..3 --+

The thesis unplugs ("desconexión"), shuts down ("apagado") and cuts the power
("desconexión de suministro eléctrico") of the director, the backup director and a real
server. In the lab (``sw`` holds the bridges, each node is a namespace):

* unplug: the node's ports are set down in ``sw`` (the cable pulled: no carrier). The
  node goes on running, and comes back when the ports are set up again.
* shut down: every process of the node gets SIGTERM (a director stops cleanly and
  releases the VIP), then the node's interfaces go down, as a halting machine's do.
* power cut: every process of the node gets SIGKILL and its interfaces go down at the
  same moment; nothing runs any cleanup. (A director crash without the box going dark,
  where the reaper removes the claims, is in test_reaper.py and test_failover.py.)

Expected outcomes, as the thesis states them for a Piranha cluster: when the active
director fails the backup takes the VIP and the established connections go on; when the
backup fails the director serves on without a role change; when a real server fails nanny
takes it out of the service and the others answer every request. Both directors run on
the thesis's lvs.cf with keepalive 0.2 / deadtime 1 and nanny at timeout 1, reentry 2.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from director.tools.demo import LabDirector, run_load
from lab.cluster import Lab, namespace_pids
from tests.netns.conftest import LabFactory
from tests.netns.test_failover import (
    KEEPALIVE_HTTP,
    VIP,
    Pair,
    _result,
    cluster_config,
    implementation,
)

pytestmark = pytest.mark.netns

REAL_ADDR = {"real1": "192.168.1.10", "real2": "192.168.1.11", "real3": "192.168.1.12"}
TRAFFIC_S = 6
REQUESTS = 30


def ifaces(node: str) -> tuple[str, ...]:
    return ("eth0", "eth1") if node in ("director", "backup") else ("eth0",)


def unplug(lab: Lab, node: str, plugged: bool = False) -> None:
    """Pull (or put back) the node's cables: its switch ports down (up) in ``sw``."""
    for ifname in ifaces(node):
        lab.run("sw", ["ip", "link", "set", f"{node}-{ifname}", "up" if plugged else "down"])


def halt(lab: Lab, node: str, sig: signal.Signals) -> None:
    """Send ``sig`` to every process of ``node``; after SIGTERM wait (bounded) for them
    to end, as a shutdown does. Then the node's interfaces go down: the box is off."""
    for pid in namespace_pids(lab.ns(node)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    if sig is signal.SIGTERM:
        deadline = time.monotonic() + 15
        while namespace_pids(lab.ns(node)) and time.monotonic() < deadline:
            time.sleep(0.05)
    for ifname in ifaces(node):
        lab.run(node, ["ip", "link", "set", ifname, "down"])


def shut_down(pair: Pair, node: str) -> None:
    if node in ("director", "backup"):
        d = pair.primary if node == "director" else pair.backup
        assert d.stop() == 0, d.log()[-3000:]
    halt(pair.lab, node, signal.SIGTERM)


def power_cut(pair: Pair, node: str) -> None:
    halt(pair.lab, node, signal.SIGKILL)
    for d in (pair.primary, pair.backup):
        if d.node == node and d.proc is not None:
            d.proc.wait(10)


def http_dests(d: LabDirector) -> set[str]:
    """The reals in the active director's TCP VIP:80 service."""
    for svc in d.status()["services"]:
        if svc["addr"] == f"{VIP}:80":
            return {str(dest["addr"]).split(":")[0] for dest in svc["dests"]}
    raise AssertionError(f"no service {VIP}:80")


__all__ = ["implementation"]  # the fixture: every test runs on both fast paths


@pytest.fixture
def pair(lab_factory: LabFactory, tmp_path: Path, implementation: str) -> Iterator[Pair]:
    lab = lab_factory(reals=3, backup=True)
    text = cluster_config(tmp_path, 0.2, 1).replace(
        "timeout = 10\n    reentry = 180\n", "timeout = 1\n    reentry = 2\n"
    )
    assert "reentry = 2" in text
    p = Pair(lab, text, implementation)
    try:
        p.start()
        p.wait("every real in", lambda: len(http_dests(p.primary)) == 3)
        yield p
    finally:
        p.backup.stop()
        p.primary.stop()


def keepalive_http(pair: Pair) -> subprocess.Popen[str]:
    """Keep-alive HTTP from the client for TRAFFIC_S seconds, once both directors hold it."""
    http = pair.client_bg(KEEPALIVE_HTTP.format(vip=VIP, duration=TRAFFIC_S))
    pair.wait("the standby to hold the connection", lambda: pair.shadow(pair.backup) >= 1)
    return http


def assert_served(pair: Pair, by: LabDirector, http: subprocess.Popen[str], what: str) -> None:
    """The keep-alive session lost no request; new requests are answered; ARP points at ``by``."""
    h = _result(http)
    print(f"\n{what}: keep-alive HTTP gap {h['max_gap_s']:.2f} s ({h['ok']} requests)")
    assert h["failed"] == 0, h
    assert_load_served_by(pair, by)


def assert_load_served_by(pair: Pair, by: LabDirector) -> None:
    """REQUESTS new connections all answered, all scheduled by ``by``; a live other
    director scheduled and forwarded none; the client's ARP entry points at ``by``."""
    others = [d for d in (pair.primary, pair.backup) if d is not by and pair.role(d) != "DOWN"]
    before = {d.node: pair.served_by(d) for d in (by, *others)}
    load = run_load(pair.lab, f"http://{VIP}/", REQUESTS)
    after = {d.node: pair.served_by(d) for d in (by, *others)}
    logs = f"\nprimary:\n{pair.primary.log()[-5000:]}\nbackup:\n{pair.backup.log()[-3000:]}"
    assert load["failed"] == 0, f"{load}{logs}"
    assert after[by.node][0] - before[by.node][0] >= REQUESTS, (before, after)
    for d in others:
        assert after[d.node] == before[d.node], (d.node, before, after)
    assert pair.client_arp() == pair.mac(by.node)


def assert_one_active(pair: Pair) -> None:
    pair.wait(
        "exactly one active director",
        lambda: sorted((pair.role(pair.primary), pair.role(pair.backup))) == ["BACKUP", "MASTER"],
    )


def director_fails(pair: Pair, fail: str) -> None:
    http = keepalive_http(pair)
    if fail == "unplug":
        unplug(pair.lab, "director")
    elif fail == "shut down":
        shut_down(pair, "director")
    else:
        power_cut(pair, "director")
    took = pair.wait("the backup to take over", lambda: pair.role(pair.backup) == "MASTER")
    assert_served(pair, pair.backup, http, f"director {fail}: takeover {took:.2f} s")


def backup_fails(pair: Pair, fail: str) -> None:
    http = keepalive_http(pair)
    if fail == "unplug":
        unplug(pair.lab, "backup")
    elif fail == "shut down":
        shut_down(pair, "backup")
    else:
        power_cut(pair, "backup")
    pair.wait(
        "the director to see the backup gone", lambda: not pair.failover(pair.primary)["peer_alive"]
    )
    assert pair.role(pair.primary) == "MASTER"
    assert int(str(pair.failover(pair.primary)["transitions"])) == 2  # INIT-BACKUP-MASTER
    assert_served(pair, pair.primary, http, f"backup {fail}")


def real_fails(pair: Pair, fail: str) -> None:
    if fail == "unplug":
        unplug(pair.lab, "real1")
    elif fail == "shut down":
        halt(pair.lab, "real1", signal.SIGTERM)
    else:
        halt(pair.lab, "real1", signal.SIGKILL)
    pair.wait("nanny to take real1 out", lambda: REAL_ADDR["real1"] not in http_dests(pair.primary))
    load = run_load(pair.lab, f"http://{VIP}/", REQUESTS)
    assert load["failed"] == 0, load
    assert set(load["by_real"]) == {"real2", "real3"}
    assert int(pair.backup.status()["decided"]) == 0  # the standby scheduled nothing
    assert pair.role(pair.primary) == "MASTER"
    assert pair.role(pair.backup) == "BACKUP"


def test_3_1_director_unplugged(pair: Pair) -> None:
    """3.1 Desconexión de servidor Director: the backup takes over, connections go on;
    plugged back, one director is active again."""
    director_fails(pair, "unplug")
    unplug(pair.lab, "director", plugged=True)
    assert_one_active(pair)
    # Without carrier the director went to FAULT and released the VIP; plugged back, it
    # rejoins as standby, and takes the VIP back once it holds the table and its nanny
    # has the reals in again (preemption), so that is who serves.
    assert "MASTER -> FAULT" in pair.primary.log()
    pair.wait("the director to take the VIP back", lambda: pair.role(pair.primary) == "MASTER")
    assert_one_active(pair)
    assert_load_served_by(pair, pair.primary)


def test_3_2_backup_unplugged(pair: Pair) -> None:
    """3.2 Desconexión de servidor Director respaldo: the director serves on, no role
    change; plugged back, the backup is standby again."""
    backup_fails(pair, "unplug")
    unplug(pair.lab, "backup", plugged=True)
    pair.wait("the backup standby again", lambda: pair.role(pair.backup) == "BACKUP")
    assert pair.role(pair.primary) == "MASTER"
    assert_load_served_by(pair, pair.primary)


def test_3_3_real_unplugged(pair: Pair) -> None:
    """3.3 Desconexión de servidor real: nanny takes it out, the others answer; plugged
    back, it returns after reentry."""
    real_fails(pair, "unplug")
    unplug(pair.lab, "real1", plugged=True)
    pair.wait("nanny to bring real1 back", lambda: REAL_ADDR["real1"] in http_dests(pair.primary))


def test_3_4_director_shut_down(pair: Pair) -> None:
    """3.4 Apagado de servidor Director: the backup takes over, connections go on."""
    director_fails(pair, "shut down")


def test_3_5_backup_shut_down(pair: Pair) -> None:
    """3.5 Apagado de servidor Director respaldo: the director serves on, no role change."""
    backup_fails(pair, "shut down")


def test_3_6_real_shut_down(pair: Pair) -> None:
    """3.6 Apagado de servidor real: nanny takes it out, the others answer."""
    real_fails(pair, "shut down")


def test_3_7_director_power_cut(pair: Pair) -> None:
    """3.7 Desconexión de suministro eléctrico servidor Director: the backup takes over,
    connections go on."""
    director_fails(pair, "power cut")


def test_3_8_backup_power_cut(pair: Pair) -> None:
    """3.8 Desconexión de suministro eléctrico servidor Director respaldo: the director
    serves on, no role change."""
    backup_fails(pair, "power cut")


def test_3_9_real_power_cut(pair: Pair) -> None:
    """3.9 Desconexión de suministro eléctrico servidor real: nanny takes it out, the
    others answer."""
    real_fails(pair, "power cut")
