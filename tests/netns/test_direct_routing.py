"""Direct routing (LVS-DR) end to end in the lab, on the C fast path and the Python twin.

    client 10.0.1.100 ──┬── br-pub ──┬── director eth0 10.0.1.1 (answers ARP for VIP 10.0.1.5)
                        │            └── real1 eth1 10.0.1.10, real2 .11, real3 .12
                        │                (VIP on lo, arp_ignore=1, arp_announce=2)
                        │
    director eth1 192.168.1.1 ── br-priv ── real1 eth0 192.168.1.10, real2 .11, real3 .12

The director serves the thesis's lvs.cf with ``network = direct`` instead of ``nat``,
unchanged otherwise. It receives the client's packets for the VIP and frames them,
unchanged, to the chosen real's MAC on the private segment; each real answers from the
VIP straight to the client on the public segment, so no reply crosses lvsd. A second lab
runs a mixed service: one real direct, one masquerading.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from director.config import parse_config
from director.tools.demo import THESIS_CF, LabDirector
from lab.cluster import Lab, LabSpec
from lab.server import expected_digest
from tests.conftest import require_root
from tests.netns.conftest import PAIRED, DataPath, LabFactory, data_paths, unique_lab_name
from tests.netns.test_dataplane import _state_dump
from tests.netns.test_failover import STREAM, Pair, _result, cluster_config

pytestmark = pytest.mark.netns

VIP = "10.0.1.5"
DR_LAB = LabSpec(mode="direct")
LOAD_300_SEQUENTIAL = ("--count", "300", "--concurrency", "1")


def thesis_direct() -> str:
    text = THESIS_CF.read_text()
    assert "network = nat\n" in text
    return "heartbeat = 0\n" + text.replace("network = nat\n", "network = direct\n")


class Cluster:
    def __init__(self, lab: Lab, director: LabDirector, implementation: str) -> None:
        self.lab = lab
        self.director = director
        self.implementation = implementation

    def dests(self, vport: int = 80) -> dict[str, dict[str, Any]]:
        svc = next(s for s in self.director.status()["services"] if s["addr"] == f"{VIP}:{vport}")
        return {str(d["addr"]).rsplit(":", 1)[0]: d for d in svc["dests"]}

    def lvsadm(self, *args: str) -> str:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "director.ops.lvsadm",
                "--socket",
                str(self.director.socket_path),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout


@pytest.fixture(scope="module", params=data_paths(PAIRED))
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    require_root()
    path: DataPath = request.param
    implementation = path.implementation
    lab = Lab(DR_LAB, unique_lab_name())
    try:
        lab.up(reals=3, ftp=True)
        before = _state_dump(lab, "director")
        cfg = parse_config(thesis_direct(), "thesis-lvs.cf (network = direct)")
        director = LabDirector(lab, path.configure(cfg), env=path.env).start()
        try:
            path.check(director.status())
            yield Cluster(lab, director, implementation)
        finally:
            assert director.stop() == 0, director.log()
        # After SIGTERM the director's namespace is exactly as before lvsd ran.
        assert _state_dump(lab, "director") == before
    finally:
        lab.down()


def test_requests_spread_as_wlc_says_and_replies_bypass_lvsd(cluster: Cluster) -> None:
    done = cluster.lab.run(
        "client",
        [sys.executable, "-m", "lab.loadgen", f"http://{VIP}/", *LOAD_300_SEQUENTIAL],
        check=False,
    )
    assert '"failed": 0' in done.stdout, (done.stdout, cluster.director.log()[-3000:])
    # wlc's 2000/1000/1000 give 2:1:1, give or take one: the director sees only the
    # client's side, so a connection stays active (ESTABLISHED) until the client's FIN,
    # which loadgen's asyncio close may send just after the next SYN; with NAT the real's
    # FIN (output side) makes it inactive first. Kernel IPVS behaves the same in DR.
    by_real = json.loads(done.stdout)["by_real"]
    assert sum(by_real.values()) == 300
    for real, share in (("real1", 150), ("real2", 75), ("real3", 75)):
        assert abs(by_real[real] - share) <= 1, by_real
    dests = cluster.dests()
    for real in ("192.168.1.10", "192.168.1.11", "192.168.1.12"):
        assert dests[real]["inpkts"] > 0
        assert dests[real]["outpkts"] == 0, "a reply crossed lvsd"


def test_lvsadm_lists_route(cluster: Cluster) -> None:
    lines = [line.split() for line in cluster.lvsadm("-L", "-n").splitlines()]
    reals = [line for line in lines if line[:1] == ["->"] and line[1] != "RemoteAddress:Port"]
    assert len(reals) == 6  # three reals in each of TCP 80 and 21
    assert {line[2] for line in reals} == {"Route"}
    assert "-a -t 10.0.1.5:80 -r 192.168.1.10:80 -g -w 2000" in cluster.lvsadm("-S", "-n")


def test_a_1gib_download_arrives_intact(cluster: Cluster) -> None:
    size = 1 << 30
    out = cluster.lab.run(
        "client",
        ["sh", "-c", f"curl -sS --max-time 300 http://{VIP}/bytes/{size} | sha256sum"],
        timeout=330,
    ).stdout
    assert out.split()[0] == expected_digest(size)
    assert sum(d["outbytes"] for d in cluster.dests().values()) == 0


MIXED = f"""
heartbeat = 0
primary = 10.0.1.1
network = direct
nat_router = 192.168.1.254 eth1:1

virtual web {{
    address = {VIP}
    port = 80
    scheduler = rr
    server real1 {{
        address = 192.168.1.10
    }}
    server real2 {{
        address = 192.168.1.11
        network = nat
    }}
}}
"""


def test_a_mixed_service_one_real_direct_one_masquerading(lab_factory: LabFactory) -> None:
    lab = lab_factory(reals=2, spec=DR_LAB)
    # real2 masquerades: replies from its own address go back through the director.
    lab.run("real2", ["ip", "rule", "add", "from", "192.168.1.11", "lookup", "100"])
    lab.run("real2", ["ip", "route", "add", "default", "via", "192.168.1.254", "table", "100"])
    director = LabDirector(lab, parse_config(MIXED, "mixed.cf")).start()
    try:
        done = lab.run(
            "client",
            [sys.executable, "-m", "lab.loadgen", f"http://{VIP}/", "--count", "40"],
            check=False,
        )
        assert '"failed": 0' in done.stdout, (done.stdout, director.log()[-3000:])
        assert '"by_real": {"real1": 20, "real2": 20}' in done.stdout
        svc = director.status()["services"][0]
        dests = {str(d["addr"]): d for d in svc["dests"]}
        assert dests["192.168.1.10:80"]["outpkts"] == 0  # direct: replies bypass lvsd
        assert dests["192.168.1.11:80"]["outpkts"] > 0  # masq: replies come back through it
        listing = subprocess.run(
            [
                sys.executable,
                "-m",
                "director.ops.lvsadm",
                "--socket",
                str(director.socket_path),
                "-L",
                "-n",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        assert "192.168.1.10:80              Route" in listing
        assert "192.168.1.11:80              Masq" in listing
    finally:
        assert director.stop() == 0, director.log()


def test_kill_9_of_the_active_director_keeps_a_dr_stream_going(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    """Two directors; the standby's shadow table holds the stream's connection with its
    method (sync's flags), and once it takes over it frames the client's ACKs to the same
    real: the stream, served by the real straight to the client, never stops."""
    lab = lab_factory(reals=3, backup=True, spec=DR_LAB, ftp=True)
    text = cluster_config(tmp_path, 0.2, 1).replace("network = nat\n", "network = direct\n")
    pair = Pair(lab, text)
    try:
        pair.primary.start()
        pair.backup.start()
        pair.wait("primary active", lambda: pair.role(pair.primary) == "MASTER")
        pair.wait("backup standby", lambda: pair.role(pair.backup) == "BACKUP")
        stream = pair.client_bg(STREAM.format(vip=VIP, port=80, duration=20))
        pair.wait("the standby to hold the stream", lambda: pair.shadow(pair.backup) >= 1)
        assert pair.primary.proc is not None
        pair.primary.proc.kill()
        pair.primary.proc.wait()
        took = pair.wait("the backup to take over", lambda: pair.role(pair.backup) == "MASTER")
        result = _result(stream)
        print(f"\nDR: takeover after kill -9: {took:.2f} s; stream gap {result['max_gap_s']:.2f} s")
        assert result["ok"], (result, pair.backup.log()[-3000:])
        assert pair.client_arp() == pair.mac("backup")
    finally:
        pair.backup.stop()
        pair.primary.stop()
