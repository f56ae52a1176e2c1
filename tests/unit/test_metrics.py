"""The metrics families: node_exporter's ipvs names and labels, lvsd's own, parsed back."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from director import fastpath, metrics
from director.admin import Admin
from director.config import DirectorConfig, HostPort
from director.director import DirectorStats
from director.estimator import RateEstimator
from director.ipvs import IPVS

NODE_LABELS = {
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "proto",
    "local_mark",
}


@dataclass
class FakeDirector:
    """The three things the collector reads, over a real service layer."""

    cfg: DirectorConfig
    admin: Admin

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


def test_lvsd_families(tmp_path: Path) -> None:
    fams = families(generate_latest(metrics.registry_for(director(tmp_path))).decode())
    assert fams["lvsd_fastpath_info"][0][1] == {"implementation": "py"}
    assert fams["lvsd_connection_table_entries"][0][2] == 1.0
    assert fams["lvsd_connection_table_limit"][0][2] == 4096.0
    drops = {s[1]["reason"]: s[2] for s in fams["lvsd_drops"]}
    assert (drops["truncated"], drops["no_service"]) == (2.0, 1.0)
    outcomes = {s[1]["outcome"]: s[2] for s in fams["lvsd_scheduling_decisions"]}
    assert outcomes == {"scheduled": 2.0, "no_service": 1.0, "no_destination": 0.0}
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
