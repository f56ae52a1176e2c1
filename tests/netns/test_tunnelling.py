"""Tunnelling (LVS-TUN, IPIP) end to end in the lab, on the C fast path and the Python twin.

    client 10.0.1.100 ──┬── br-pub ──┬── director eth0 10.0.1.1 (answers ARP for VIP 10.0.1.5)
                        │            └── real1 eth1 10.0.1.10, real2 .11, real3 .12
                        │
    director eth1 192.168.1.1 ── br-priv ── real1 eth0 192.168.1.10, real2 .11, real3 .12
                                            (VIP on tunl0: lab.decap, this kernel has no ipip)

The director serves the thesis's lvs.cf with ``network = tunnel``: it encapsulates the
client's packets in IPIP to the chosen real's address; each real decapsulates them and
answers from the VIP straight to the client. A DF packet that would not fit the real's
link once encapsulated is answered with frag-needed, and the client's kernel learns the
smaller path MTU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from director.config import parse_config
from director.tools.demo import THESIS_CF, LabDirector
from lab.cluster import Lab, LabSpec
from lab.server import expected_digest
from tests.conftest import require_root
from tests.netns.conftest import CROSSED, DataPath, LabFactory, data_paths, unique_lab_name
from tests.netns.test_dataplane import _state_dump
from tests.netns.test_failover import STREAM, Pair, _result, cluster_config

pytestmark = pytest.mark.netns

VIP = "10.0.1.5"


class Cluster:
    def __init__(self, lab: Lab, director: LabDirector) -> None:
        self.lab = lab
        self.director = director

    def lvsadm(self, *args: str) -> str:
        argv = [sys.executable, "-m", "director.ops.lvsadm"]
        argv += ["--socket", str(self.director.socket_path), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout


@pytest.fixture(scope="module", params=data_paths(CROSSED))
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    require_root()
    lab = Lab(LabSpec(mode="tunnel"), unique_lab_name())
    try:
        lab.up(reals=3, ftp=True)
        before = _state_dump(lab, "director")
        path: DataPath = request.param
        text = "heartbeat = 0\n" + THESIS_CF.read_text().replace(
            "network = nat\n", "network = tunnel\n"
        )
        cfg = path.configure(parse_config(text, "thesis (tunnel)"))
        director = LabDirector(lab, cfg, env=path.env).start()
        try:
            path.check(director.status())
            yield Cluster(lab, director)
        finally:
            assert director.stop() == 0, director.log()
        assert _state_dump(lab, "director") == before
    finally:
        lab.down()


def test_requests_spread_as_wlc_says(cluster: Cluster) -> None:
    done = cluster.lab.run(
        "client",
        [sys.executable, "-m", "lab.loadgen", f"http://{VIP}/", "--count", "300",
         "--concurrency", "1"],
        check=False,
    )  # fmt: skip
    assert '"failed": 0' in done.stdout, (done.stdout, cluster.director.log()[-3000:])
    by_real = json.loads(done.stdout)["by_real"]
    assert sum(by_real.values()) == 300
    for real, share in (("real1", 150), ("real2", 75), ("real3", 75)):
        assert abs(by_real[real] - share) <= 1, by_real  # as in DR: see test_direct_routing


def test_lvsadm_lists_tunnel(cluster: Cluster) -> None:
    lines = [line.split() for line in cluster.lvsadm("-L", "-n").splitlines()]
    reals = [line for line in lines if line[:1] == ["->"] and line[1] != "RemoteAddress:Port"]
    assert {line[2] for line in reals} == {"Tunnel"}
    assert len(reals) == 6


def test_a_1gib_download_arrives_intact(cluster: Cluster) -> None:
    size = 1 << 30
    out = cluster.lab.run(
        "client",
        ["sh", "-c", f"curl -sS --max-time 300 http://{VIP}/bytes/{size} | sha256sum"],
        timeout=330,
    ).stdout
    assert out.split()[0] == expected_digest(size)


def test_an_oversized_df_packet_gets_frag_needed(cluster: Cluster) -> None:
    """A 6 KB request: the client's full-size segments (1500 bytes, DF) would be 1520 once
    encapsulated; the director answers frag-needed (MTU 1480), the client's kernel caches
    it for the VIP and resends smaller segments, and the request is served."""
    lab = cluster.lab
    lab.run("client", ["ip", "route", "flush", "cache"])
    pad = "a" * 6000
    got = lab.run(
        "client",
        ["curl", "-sS", "--max-time", "30", "-H", f"X-Pad: {pad}", f"http://{VIP}/"],
        timeout=60,
    ).stdout
    assert got.startswith("real"), got
    assert "mtu 1480" in lab.run("client", ["ip", "route", "get", VIP]).stdout


def test_kill_9_of_the_active_director_keeps_a_tunnelled_stream_going(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    """Two directors; the standby's shadow holds the stream's connection, bound to its own
    tunnelled dest; after a kill -9 it encapsulates the client's ACKs to the same real."""
    lab = lab_factory(reals=3, backup=True, spec=LabSpec(mode="tunnel"), ftp=True)
    text = cluster_config(tmp_path, 0.2, 1).replace("network = nat\n", "network = tunnel\n")
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
        print(f"\nTUN: takeover after kill -9: {took:.2f} s; gap {result['max_gap_s']:.2f} s")
        assert result["ok"], (result, pair.backup.log()[-3000:])
        assert pair.client_arp() == pair.mac("backup")
    finally:
        pair.backup.stop()
        pair.primary.stop()
