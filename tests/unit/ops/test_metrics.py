"""The metrics families: node_exporter's ipvs names and labels, lvsd's own, parsed back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from director.config import DirectorConfig, HostPort
from director.dataplane import fastpath
from director.errors import DirectorError
from director.ipvs.estimator import RateEstimator
from director.ipvs.service import IPVS
from director.ops import metrics
from director.ops.admin import Admin
from director.stats import DirectorStats, NannyStats, PulseStats, TargetHealth
from failover.peer import PeerStats
from healthcheck.runner import RunnerStats, TargetState
from healthcheck.specs import ServiceKey

NODE_LABELS = {
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "proto",
    "local_mark",
}


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


def families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = [(s.name, s.labels, s.value) for s in fam.samples]
    return out


def test_node_exporter_names_and_labels(tmp_path: Path) -> None:
    fams = families(generate_latest(metrics.registry_for(director(tmp_path))).decode())
    for name in (
        "connections",
        "incoming_packets",
        "outgoing_packets",
        "incoming_bytes",
        "outgoing_bytes",
    ):
        (sample,) = fams[f"node_ipvs_{name}"]
        assert sample[0] == f"node_ipvs_{name}_total"
        assert sample[1] == {}
    assert fams["node_ipvs_connections"][0][2] == 1.0
    weights = {s[1]["remote_address"]: (s[1], s[2]) for s in fams["node_ipvs_backend_weight"]}
    labels, weight = weights["192.168.1.11"]
    assert set(labels) == NODE_LABELS
    assert labels == {
        "local_address": "10.0.1.5",
        "local_port": "80",
        "remote_address": "192.168.1.11",
        "remote_port": "8080",
        "proto": "TCP",
        "local_mark": "",
    }
    assert weight == 0.0
    active = {s[1]["remote_address"]: s[2] for s in fams["node_ipvs_backend_connections_active"]}
    inactive = {
        s[1]["remote_address"]: s[2] for s in fams["node_ipvs_backend_connections_inactive"]
    }
    assert active["192.168.1.10"] + inactive["192.168.1.10"] == 1.0


def test_a_fwmark_service_exports_its_mark_as_procfs_shows_it(tmp_path: Path) -> None:
    # node_exporter reads /proc/net/ip_vs: "FWM  0000002A", no address, port 0.
    d = director(tmp_path)
    svc = d.admin.ipvs.add_service(6, 0, 0, "rr", fwmark=42, timeout=300)
    svc.add_dest(int(IPv4Address("192.168.1.12")), 0, 5)
    fams = families(generate_latest(metrics.registry_for(d)).decode())
    weights = {s[1]["remote_address"]: (s[1], s[2]) for s in fams["node_ipvs_backend_weight"]}
    assert weights["192.168.1.12"] == (
        {
            "local_address": "",
            "local_port": "0",
            "remote_address": "192.168.1.12",
            "remote_port": "0",
            "proto": "FWM",
            "local_mark": "0000002A",
        },
        5.0,
    )


def test_lvsd_families(tmp_path: Path) -> None:
    fams = families(generate_latest(metrics.registry_for(director(tmp_path))).decode())
    assert fams["lvsd_fastpath_info"][0][1] == {"implementation": "py"}
    assert fams["lvsd_connection_table_entries"][0][2] == 1.0
    assert fams["lvsd_connection_table_limit"][0][2] == 4096.0
    drops = {s[1]["reason"]: s[2] for s in fams["lvsd_drops"]}
    assert (drops["truncated"], drops["no_service"]) == (2.0, 1.0)
    outcomes = {s[1]["outcome"]: s[2] for s in fams["lvsd_scheduling_decisions"]}
    assert outcomes == {
        "scheduled": 2.0,
        "no_service": 1.0,
        "no_destination": 0.0,
        "table_full": 0.0,
    }
    assert {s[1]["state"]: s[2] for s in fams["lvsd_service_backends"]} == {
        "configured": 2.0,
        "schedulable": 1.0,
    }
    assert fams["lvsd_service_up"][0][2] == 1.0
    assert fams["lvsd_state_dir_bytes"][0][2] == 1000.0
    assert {s[1]["period"] for s in fams["lvsd_host_load_average"]} == {"1m", "5m", "15m"}
    assert {s[1]["kind"] for s in fams["lvsd_host_memory_bytes"]} >= {"total", "available"}
    assert "lo" in {s[1]["device"] for s in fams["lvsd_host_network_receive_bytes"]}
    assert "process_cpu_seconds" in fams
    for name in ("lvsd_service_connections", "lvsd_backend_incoming_bytes"):
        assert fams[name][0][0] == f"{name}_total"


async def test_served_over_http(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = director(tmp_path)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(metrics.serve(d, HostPort(IPv4Address("127.0.0.1"), port)))
        for _ in range(100):  # the server binds in its first steps
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except ConnectionRefusedError:
                await asyncio.sleep(0)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        response = await reader.read()
        writer.close()
        task.cancel()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert "node_ipvs_backend_weight" in families(body.decode())


def by_labels(
    samples: list[tuple[str, dict[str, str], float]], *keys: str
) -> dict[tuple[str, ...], float]:
    return {tuple(labels[k] for k in keys): value for _, labels, value in samples}


def test_health_families_per_real(tmp_path: Path) -> None:
    fams = families(generate_latest(metrics.registry_for(director(tmp_path))).decode())
    health = fams["lvsd_backend_health"]
    assert set(health[0][1]) == NODE_LABELS | {"probe", "state"}
    assert by_labels(health, "remote_address", "remote_port", "state") == {
        ("192.168.1.10", "80", "up"): 1.0,
        ("192.168.1.10", "80", "down"): 0.0,
        ("192.168.1.10", "80", "unknown"): 0.0,
        ("192.168.1.11", "8080", "up"): 0.0,
        ("192.168.1.11", "8080", "down"): 1.0,
        ("192.168.1.11", "8080", "unknown"): 0.0,
    }
    assert {labels["probe"] for _, labels, _ in health} == {"http"}
    assert by_labels(fams["lvsd_backend_in_service"], "remote_address") == {
        ("192.168.1.10",): 1.0,
        ("192.168.1.11",): 0.0,
    }
    probes = fams["lvsd_backend_probes"]
    assert {name for name, _, _ in probes} == {"lvsd_backend_probes_total"}
    assert by_labels(probes, "remote_address", "result") == {
        ("192.168.1.10", "passed"): 6.0,
        ("192.168.1.10", "failed"): 0.0,
        ("192.168.1.11", "passed"): 3.0,
        ("192.168.1.11", "failed"): 3.0,
    }
    assert by_labels(fams["lvsd_backend_agent_checks"], "remote_address", "result") == {
        ("192.168.1.10", "reply"): 4.0,
        ("192.168.1.10", "error"): 0.0,
    }
    assert by_labels(fams["lvsd_backend_health_transitions"], "remote_address") == {
        ("192.168.1.10",): 0.0,
        ("192.168.1.11",): 1.0,
    }
    assert fams["lvsd_health_targets"][0][2] == 2.0
    assert by_labels(fams["lvsd_health_changes"], "change") == {
        ("taken_out",): 1.0,
        ("put_back",): 0.0,
        ("weight",): 2.0,
        ("sorry_added",): 0.0,
        ("sorry_removed",): 0.0,
    }
    # The same labels as node_exporter's families for the same real server.
    weights = {
        labels["remote_address"]: labels for _, labels, _ in fams["node_ipvs_backend_weight"]
    }
    for _, labels, _ in fams["lvsd_backend_in_service"]:
        assert labels == weights[labels["remote_address"]]


def test_failover_families_only_with_failover(tmp_path: Path) -> None:
    d = director(tmp_path)
    fams = families(generate_latest(metrics.registry_for(d)).decode())
    assert [name for name in fams if name.startswith("lvsd_failover_")] == ["lvsd_failover_enabled"]
    assert fams["lvsd_failover_enabled"][0][2] == 0.0
    d.pulse = FakePulse()
    fams = families(generate_latest(metrics.registry_for(d)).decode())
    value = {name: samples[0][2] for name, samples in fams.items() if len(samples) == 1}
    assert fams["lvsd_failover_role"] == [("lvsd_failover_role", {"node": "backup"}, 1.0)]
    assert value["lvsd_failover_enabled"] == 1.0
    assert value["lvsd_failover_peer_role"] == 2.0
    assert value["lvsd_failover_peer_alive"] == 1.0
    assert value["lvsd_failover_heartbeats_lost"] == 2.0
    assert value["lvsd_failover_heartbeats_accepted"] == 38.0
    assert fams["lvsd_failover_heartbeats_lost"][0][0] == "lvsd_failover_heartbeats_lost_total"
    assert value["lvsd_failover_heartbeat_rtt_seconds"] == 0.0015
    assert value["lvsd_failover_sync_lag_seconds"] == 0.25
    assert value["lvsd_failover_config_mismatch"] == 1.0
    assert value["lvsd_failover_table_synced"] == 1.0
    assert value["lvsd_failover_vips_claimed"] == 0.0
    assert value["lvsd_failover_sync_log_lost"] == 3.0
    assert value["lvsd_failover_sync_dumps"] == 2.0
    assert value["lvsd_failover_sync_dumping"] == 1.0
    assert fams["lvsd_failover_sync_dumps"][0][0] == "lvsd_failover_sync_dumps_total"
    assert by_labels(fams["lvsd_failover_heartbeats_rejected"], "reason") == {
        ("bad_mac",): 1.0,
        ("replay",): 3.0,
    }
    assert by_labels(fams["lvsd_failover_sync_messages"], "outcome") == {
        ("sent",): 0.0,
        ("received",): 7.0,
        ("applied",): 6.0,
        ("refused",): 1.0,
    }
    d.pulse = FakePulse(rtt_ms=None)
    fams = families(generate_latest(metrics.registry_for(d)).decode())
    assert "lvsd_failover_heartbeat_rtt_seconds" not in fams


DASHBOARD = Path(__file__).resolve().parents[3] / "grafana" / "lvsd-dashboard.json"


def test_dashboard_queries_only_exported_samples(tmp_path: Path) -> None:
    d = director(tmp_path)
    d.pulse = FakePulse()
    exported = {
        name
        for samples in families(generate_latest(metrics.registry_for(d)).decode()).values()
        for name, _, _ in samples
    }
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    queried = {
        name
        for p in panels
        for t in p["targets"]
        for name in re.findall(r"\b(?:node_ipvs|lvsd|process)_[a-z_]+", t["expr"])
    }
    assert queried - exported == set()
    for family in ("lvsd_backend_health", "lvsd_failover_role", "lvsd_failover_sync_lag_seconds"):
        assert family in queried


async def test_a_busy_port_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = HostPort(IPv4Address("127.0.0.1"), busy.getsockname()[1])
        server = metrics.MetricsServer(director(tmp_path), address)
        with pytest.raises(DirectorError) as e:
            await server.start()
    assert str(e.value) == f"metrics_address {address}: cannot listen: Address already in use"


async def test_idle_scrapers_are_capped_and_hung_up_on(tmp_path: Path) -> None:
    server = metrics.MetricsServer(
        director(tmp_path), HostPort(IPv4Address("127.0.0.1"), 0), max_clients=2, read_timeout=0.5
    )
    await server.start()
    assert server._server is not None
    port = server._server.sockets[0].getsockname()[1]
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(server.serve())
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for _ in range(1000):  # until the server has taken both in
            if server._clients == 2:
                break
            await asyncio.sleep(0.001)
        # One more while two idle ones are held: hung up on at once.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(10):
            with contextlib.suppress(ConnectionResetError):
                assert await reader.read() == b""
        writer.close()
        # The idle ones are hung up on after the read timeout...
        for r, w in idle:
            async with asyncio.timeout(10):
                assert await r.read() == b""
            w.close()
        # ... after which a scraper is served again.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
        async with asyncio.timeout(10):
            response = await reader.read()
        writer.close()
        task.cancel()
    assert response.startswith(b"HTTP/1.1 200 OK")
    assert server.refused == 1
