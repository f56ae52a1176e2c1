"""Stand-ins for the daemon's reports, over a real service layer, for the console's tests.

The console's tests are about its HTTP surface (routing, guards, caching, assets); what
it shows is built from the same records as the metrics, whose own tests
(``test_metrics.py``) scrape a real Director, nanny and Pulse. These fixed records make
the console's pages deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from director.config import DirectorConfig
from director.dataplane import fastpath
from director.ipvs.estimator import RateEstimator
from director.ipvs.service import IPVS
from director.ops.admin import Admin
from director.stats import DirectorStats, NannyStats, PulseStats, TargetHealth
from failover.peer import PeerStats
from healthcheck.runner import RunnerStats, TargetState
from healthcheck.specs import ServiceKey

WEB = ServiceKey(6, "10.0.1.5", 80)


def runner_stats(passed: int, failed: int, agent: int = 0) -> RunnerStats:
    return RunnerStats(1, passed + failed, passed, failed, agent, 0, 0, 0, 0)


@dataclass
class FakeNanny:
    """nanny's two reports: real2 down after failed HTTP probes, real1 up."""

    def statistics(self) -> NannyStats:
        return NannyStats(RunnerStats(2, 12, 9, 3, 4, 0, 0, 0, 1), 1, 0, 2, 0, 0)

    def health(self) -> tuple[TargetHealth, ...]:
        up = TargetState("TCP 10.0.1.5:80 -> 192.168.1.10:80", "http", "up", True, 2000, "", 0)
        down = TargetState(
            "TCP 10.0.1.5:80 -> 192.168.1.11:8080", "http", "down", False, 0, "refused", 1
        )
        return (
            TargetHealth(WEB, "192.168.1.10", 80, "http", up, runner_stats(6, 0, agent=4)),
            TargetHealth(WEB, "192.168.1.11", 8080, "http", down, runner_stats(3, 3)),
        )

    def iter_health(self) -> Iterator[TargetHealth]:
        return iter(self.health())


@dataclass
class FakePulse:
    """pulse's report: a backup that hears its master, 2 heartbeats lost."""

    rtt_ms: float | None = 1.5

    def statistics(self) -> PulseStats:
        peer = PeerStats(
            role=1,
            peer_role=2,
            peer_alive=True,
            primary=False,
            transitions=1,
            heartbeats_sent=40,
            accepted=38,
            lost=2,
            rejected={"replay": 3, "bad_mac": 1},
            rtt_ms=self.rtt_ms,
            config_mismatch=True,
            table_synced=True,
        )
        return PulseStats(peer, False, 0, 7, 6, 1, 250, 5, 0, 1, 3, 2, True)


@dataclass
class FakeDirector:
    """What the collector reads, over a real service layer."""

    cfg: DirectorConfig
    admin: Admin
    nanny: FakeNanny = field(default_factory=FakeNanny)
    pulse: FakePulse | None = None
    group: None = None

    def statistics(self) -> DirectorStats:
        return DirectorStats("py", len(self.admin.ipvs.table), 4096, 3, 1, 0, 0, {"truncated": 2})


def director(tmp_path: Path) -> FakeDirector:
    ipvs = IPVS(fastpath.ConnTable(4096))
    svc = ipvs.add_service(6, int(IPv4Address("10.0.1.5")), 80, "wlc")
    svc.add_dest(int(IPv4Address("192.168.1.10")), 80, 2000)
    svc.add_dest(int(IPv4Address("192.168.1.11")), 8080, 0)
    ipvs.new_connection(
        6, int(IPv4Address("10.0.1.100")), 40000, int(IPv4Address("10.0.1.5")), 80, 0
    )
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "f").write_bytes(b"x" * 1000)
    cfg = DirectorConfig(state_dir=tmp_path / "state")
    return FakeDirector(cfg, Admin(ipvs, RateEstimator(), lambda: 0))
