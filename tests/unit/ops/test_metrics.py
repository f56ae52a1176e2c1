"""The metrics families: node_exporter's ipvs names and labels, lvsd's own, parsed back.

Scraped from real objects: a Director built from lvs.cf (not run), whose real nanny
probed loopback servers and whose packet loop handled real packets, and a real Pulse
whose peer heard a real primary over loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import struct
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from director.config import HostPort, parse_config
from director.daemon import reload
from director.daemon.director import Director, now_ms
from director.daemon.pulse import Pulse
from director.dataplane import fastpath
from director.errors import DirectorError
from director.ops import exporter, metrics
from director.ops.admin import ServiceSpec
from director.tools.simulate import craft_packet
from failover import packet, sync
from failover.events import SyncReceived
from failover.peer import FailoverSettings, HeartbeatPath, Peer
from tests.unit.dataplane.fastpath_ref import ones_sum, syn
from tests.vectors.nat_vectors import vnet_header

NODE_LABELS = {
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "proto",
    "local_mark",
}


VIP, CLIENT = 0x0A000105, 0x0A000164
PEER_PORT = 20539  # the heartbeat port on 127.0.0.1/127.0.0.2; tests never run in parallel

CF = """
network = nat
nat_router = 127.0.0.254 eth1:1
virtual web {{
    load_monitor = uptime
    address = 10.0.1.5
    port = 80
    scheduler = wlc
    timeout = 2
    probe_interval = 1
    reentry = 0
    server real1 {{
        address = 127.0.0.1
        port = {up}
        weight = 2000
    }}
    server real2 {{
        address = 127.0.0.2
        port = {refused}
        weight = 1000
    }}
}}
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port


async def probed_director(tmp_path: Path) -> Director:
    """A real Director (not run: no plumbing) whose real nanny probed two loopback reals
    until real1 (an HTTP server) is up and real2 (nothing listening) down, with a
    connection, a packet to no service, a truncated packet and a ping through its loop."""

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http, "127.0.0.1", 0)
    up = server.sockets[0].getsockname()[1]
    cfg = parse_config(CF.format(up=up, refused=free_port("127.0.0.2")))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "f").write_bytes(b"x" * 1000)
    d = Director(replace(cfg, state_dir=tmp_path / "state"))
    async with server:
        task = asyncio.create_task(d.nanny.run())
        try:
            await wait_until("real1 up, real2 down", lambda: _settled(d))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    packets(d)
    return d


async def wait_until(what: str, cond: Callable[[], bool], within: float = 30.0) -> None:
    """Poll ``cond`` (real probes and heartbeats report no event to await) every 50 ms."""
    for _ in range(int(within / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"not within {within}s: {what}")


def _settled(d: Director) -> bool:
    health = {h.addr: h for h in d.nanny.health()}
    return (
        health["127.0.0.1"].state.health == "up"
        and health["127.0.0.1"].stats.passed >= 2
        and health["127.0.0.2"].state.health == "down"
        and all(h.stats.load_errors + h.stats.load_readings for h in health.values())
    )


def packets(d: Director) -> None:
    """Through the director's packet loop (a socketpair as its TUN): a SYN to the service,
    one to no service, a truncated IPv4 header and a ping to the VIP."""
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        ours.setblocking(False)
        d._fd = ours.fileno()
        peer.send(syn(CLIENT, 40000, VIP, 80))
        peer.send(syn(CLIENT, 40001, VIP, 81))
        peer.send(syn(CLIENT, 40002, VIP, 80)[: 10 + 12])
        peer.send(ping(CLIENT, VIP))
        d._on_readable(d._fd, 0)
    finally:
        d._fd = -1
        ours.close()
        peer.close()


def ping(src: int, dst: int) -> bytes:
    icmp = bytearray(struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"ping")
    struct.pack_into("!H", icmp, 2, ~ones_sum(bytes(icmp)) & 0xFFFF)
    ip = bytearray(struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0, src, dst))
    struct.pack_into("!H", ip, 10, ~ones_sum(bytes(ip)) & 0xFFFF)
    return vnet_header() + bytes(ip) + bytes(icmp)


async def heard_pulse(d: Director) -> Pulse:
    """A real Pulse (backup) whose peer heard a real primary's heartbeats over loopback,
    rejected one forged datagram and mirrored the connection the primary synced."""
    paths = ("127.0.0.2", "127.0.0.1")

    def settings(primary: bool) -> FailoverSettings:
        local, peer = paths if not primary else paths[::-1]
        path = HeartbeatPath("public", IPv4Address(local), IPv4Address(peer))
        # The primary runs another lvs.cf than the backup: a digest of its own.
        digest = bytes([primary]) * 32
        return FailoverSettings(
            primary, (path,), PEER_PORT, 0.05, 2.0, b"k" * 32, config_digest=digest
        )

    # The director's own plumbing, never set up: nothing is claimed on this machine.
    pulse = Pulse(d.cfg, settings(False), d.plumbing, d.table, lambda: d.ipvs, lambda c: True)
    primary = Peer(settings(True), asyncio.Queue())
    tasks = [asyncio.create_task(pulse.peer.run()), asyncio.create_task(primary.run())]
    try:
        await wait_until(
            "three heartbeats and a round trip",
            lambda: (
                pulse.statistics().peer.accepted >= 3 and pulse.statistics().peer.rtt_ms is not None
            ),
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forger:
            forger.sendto(b"not a heartbeat", (paths[0], PEER_PORT))
        await wait_until("the forgery rejected", lambda: bool(pulse.statistics().peer.rejected))
        # The primary syncs one connection to real1; the backup's pulse applies what its
        # peer received (its role changes are left alone: they would claim addresses).
        real1 = d.cfg.virtuals[0].servers[0].port or 80
        entry = sync.ConnEntry(6, 0x0A000165, 40100, VIP, 80, 0x7F000001, real1, 1, 0, 900)
        for message in sync.encode([entry]):
            assert primary.send(packet.Kind.SYNC, message)
        received: list[SyncReceived] = []

        def take_sync() -> bool:
            while not pulse.events.empty():
                event = pulse.events.get_nowait()
                if isinstance(event, SyncReceived):
                    received.append(event)
            return bool(received)

        await wait_until("the sync message", take_sync)
        for event in received:
            pulse._sync_received(event)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return pulse


def families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = [(s.name, s.labels, s.value) for s in fam.samples]
    return out


@pytest.fixture
async def director(tmp_path: Path) -> Director:
    return await probed_director(tmp_path)


def scrape(d: Director) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return families(generate_latest(metrics.registry_for(d)).decode())


def test_node_exporter_names_and_labels(director: Director) -> None:
    fams = scrape(director)
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
    assert fams["node_ipvs_incoming_packets"][0][2] == 1.0  # the SYN
    weights = {s[1]["remote_address"]: (s[1], s[2]) for s in fams["node_ipvs_backend_weight"]}
    labels, weight = weights["127.0.0.1"]
    assert set(labels) == NODE_LABELS
    up = str(director.cfg.virtuals[0].servers[0].port)
    assert labels == {
        "local_address": "10.0.1.5",
        "local_port": "80",
        "remote_address": "127.0.0.1",
        "remote_port": up,
        "proto": "TCP",
        "local_mark": "",
    }
    assert weight == 2000.0
    assert "127.0.0.2" not in weights  # nanny took the refused real out
    active = {s[1]["remote_address"]: s[2] for s in fams["node_ipvs_backend_connections_active"]}
    inactive = {
        s[1]["remote_address"]: s[2] for s in fams["node_ipvs_backend_connections_inactive"]
    }
    assert active["127.0.0.1"] + inactive["127.0.0.1"] == 1.0
    persistent = fams["lvsd_backend_persistent_connections"]
    assert by_labels(persistent, "remote_address") == {("127.0.0.1",): 0.0}


def test_a_fwmark_service_exports_its_mark_as_procfs_shows_it(director: Director) -> None:
    # node_exporter reads /proc/net/ip_vs: "FWM  0000002A", no address, port 0.
    svc = director.admin.ipvs.add_service(6, 0, 0, "rr", fwmark=42, timeout=300)
    svc.add_dest(int(IPv4Address("192.168.1.12")), 0, 5)
    fams = scrape(director)
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
    persistent = by_labels(fams["lvsd_backend_persistent_connections"], "local_mark")
    assert persistent[("0000002A",)] == 0.0


def test_lvsd_families(director: Director) -> None:
    fams = scrape(director)
    assert fams["lvsd_fastpath_info"][0][1] == {"implementation": fastpath.IMPLEMENTATION}
    assert fams["lvsd_connection_table_entries"][0][2] == 1.0
    assert fams["lvsd_connection_table_limit"][0][2] == director.cfg.max_connections
    drops = {s[1]["reason"]: s[2] for s in fams["lvsd_drops"]}
    assert (drops["DROP_TRUNCATED"], drops["no_service"]) == (1.0, 1.0)
    outcomes = {s[1]["outcome"]: s[2] for s in fams["lvsd_scheduling_decisions"]}
    assert outcomes == {
        "scheduled": 1.0,
        "no_service": 1.0,
        "no_destination": 0.0,
        "table_full": 0.0,
    }
    assert fams["lvsd_echo_replies"] == [("lvsd_echo_replies_total", {}, 1.0)]
    assert {s[1]["state"]: s[2] for s in fams["lvsd_service_backends"]} == {
        "configured": 1.0,
        "schedulable": 1.0,
    }
    assert fams["lvsd_service_up"][0][2] == 1.0
    assert fams["lvsd_state_dir_bytes"][0][2] == 1000.0
    fs = {s[1]["kind"]: s[2] for s in fams["lvsd_state_dir_filesystem_bytes"]}
    assert 0 < fs["available"] <= fs["size"], fs
    assert {s[1]["period"] for s in fams["lvsd_host_load_average"]} == {"1m", "5m", "15m"}
    assert {s[1]["kind"] for s in fams["lvsd_host_memory_bytes"]} >= {"total", "available"}
    for direction in ("receive", "transmit"):
        devices = {s[1]["device"] for s in fams[f"lvsd_host_network_{direction}_bytes"]}
        assert "lo" in devices, direction
    assert "process_cpu_seconds" in fams
    for name in ("lvsd_service_connections", "lvsd_backend_incoming_bytes"):
        assert fams[name][0][0] == f"{name}_total"


async def test_served_over_http(director: Director) -> None:
    port = free_port()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(exporter.serve(director, HostPort(IPv4Address("127.0.0.1"), port)))
        for _ in range(500):  # the server binds in its first steps
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except ConnectionRefusedError:
                await asyncio.sleep(0.01)
        else:
            pytest.fail(f"nothing listens on 127.0.0.1:{port} for the metrics")
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        response = await reader.read()
        writer.close()
        task.cancel()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    # The type prometheus_client names, though the daemon never imports it.
    assert b"\r\nContent-Type: " + CONTENT_TYPE_LATEST.encode() + b"\r\n" in head
    assert "node_ipvs_backend_weight" in families(body.decode())


def by_labels(
    samples: list[tuple[str, dict[str, str], float]], *keys: str
) -> dict[tuple[str, ...], float]:
    return {tuple(labels[k] for k in keys): value for _, labels, value in samples}


def test_health_families_per_real(director: Director) -> None:
    fams = scrape(director)
    stats = {h.addr: h.stats for h in director.nanny.health()}
    health = fams["lvsd_backend_health"]
    assert set(health[0][1]) == NODE_LABELS | {"probe", "state"}
    assert by_labels(health, "remote_address", "state") == {
        ("127.0.0.1", "up"): 1.0,
        ("127.0.0.1", "down"): 0.0,
        ("127.0.0.1", "unknown"): 0.0,
        ("127.0.0.2", "up"): 0.0,
        ("127.0.0.2", "down"): 1.0,
        ("127.0.0.2", "unknown"): 0.0,
    }
    assert {labels["probe"] for _, labels, _ in health} == {"http"}
    assert by_labels(fams["lvsd_backend_in_service"], "remote_address") == {
        ("127.0.0.1",): 1.0,
        ("127.0.0.2",): 0.0,
    }
    probes = fams["lvsd_backend_probes"]
    assert {name for name, _, _ in probes} == {"lvsd_backend_probes_total"}
    counted = by_labels(probes, "remote_address", "result")
    assert counted == {
        ("127.0.0.1", "passed"): float(stats["127.0.0.1"].passed),
        ("127.0.0.1", "failed"): 0.0,
        ("127.0.0.2", "passed"): 0.0,
        ("127.0.0.2", "failed"): float(stats["127.0.0.2"].failed),
    }
    assert counted[("127.0.0.1", "passed")] >= 2
    assert counted[("127.0.0.2", "failed")] >= 1
    # load_monitor = uptime runs `rsh HOST uptime`, which fails here: counted as errors.
    loads = by_labels(fams["lvsd_backend_load_readings"], "remote_address", "result")
    assert loads[("127.0.0.1", "error")] >= 1
    assert loads[("127.0.0.1", "reading")] == 0.0
    assert fams["lvsd_backend_agent_checks"] == []  # no agent_port configured
    # Both start in service at their configured weight; only real2 changed.
    assert by_labels(fams["lvsd_backend_health_transitions"], "remote_address") == {
        ("127.0.0.1",): 0.0,
        ("127.0.0.2",): 1.0,
    }
    assert fams["lvsd_health_targets"][0][2] == 2.0
    assert by_labels(fams["lvsd_health_changes"], "change") == {
        ("taken_out",): 1.0,
        ("put_back",): 0.0,
        ("weight",): 0.0,
        ("sorry_added",): 0.0,
        ("sorry_removed",): 0.0,
    }
    # The same labels as node_exporter's families for the same real server.
    weights = {
        labels["remote_address"]: labels for _, labels, _ in fams["node_ipvs_backend_weight"]
    }
    (labels,) = [x for _, x, v in fams["lvsd_backend_in_service"] if v == 1.0]
    assert labels == weights[labels["remote_address"]]


async def test_failover_families_only_with_failover(director: Director) -> None:
    fams = scrape(director)
    assert [name for name in fams if name.startswith("lvsd_failover_")] == ["lvsd_failover_enabled"]
    assert fams["lvsd_failover_enabled"][0][2] == 0.0
    pulse = await heard_pulse(director)
    director.pulse = pulse
    peer = pulse.statistics().peer
    fams = scrape(director)
    value = {name: samples[0][2] for name, samples in fams.items() if len(samples) == 1}
    assert fams["lvsd_failover_role"] == [("lvsd_failover_role", {"node": "backup"}, 1.0)]
    assert value["lvsd_failover_enabled"] == 1.0
    assert value["lvsd_failover_peer_role"] == 2.0  # it hears an active primary
    assert value["lvsd_failover_peer_alive"] == 1.0
    assert value["lvsd_failover_heartbeats_accepted"] == peer.accepted >= 3
    assert value["lvsd_failover_heartbeats_sent"] == peer.heartbeats_sent >= 1
    assert value["lvsd_failover_heartbeats_lost"] == peer.lost
    assert fams["lvsd_failover_heartbeats_lost"][0][0] == "lvsd_failover_heartbeats_lost_total"
    assert value["lvsd_failover_transitions"] == peer.transitions >= 1
    assert peer.rtt_ms is not None
    assert value["lvsd_failover_heartbeat_rtt_seconds"] == peer.rtt_ms / 1000
    assert value["lvsd_failover_shadow_connections"] == 1.0  # the synced entry
    assert value["lvsd_failover_config_mismatch"] == 1.0  # the primary's lvs.cf differs
    assert value["lvsd_failover_vips_claimed"] == 0.0
    assert value["lvsd_failover_sync_log_lost"] == 0.0
    assert value["lvsd_failover_sync_dumps"] == 0.0
    assert value["lvsd_failover_sync_dumping"] == 0.0
    assert fams["lvsd_failover_sync_dumps"][0][0] == "lvsd_failover_sync_dumps_total"
    assert sum(v for _, _, v in fams["lvsd_failover_heartbeats_rejected"]) == 1.0
    assert by_labels(fams["lvsd_failover_config_syncs"], "outcome") == {
        ("applied",): 0.0,
        ("refused",): 0.0,
    }
    assert by_labels(fams["lvsd_failover_sync_messages"], "outcome") == {
        ("sent",): 0.0,
        ("received",): 1.0,
        ("applied",): 1.0,
        ("refused",): 0.0,
    }
    assert value["lvsd_failover_sync_lag_seconds"] >= 0.0


DASHBOARD = Path(__file__).resolve().parents[3] / "grafana" / "lvsd-dashboard.json"


async def test_dashboard_queries_only_exported_samples(director: Director) -> None:
    director.pulse = await heard_pulse(director)
    exported = {name for samples in scrape(director).values() for name, _, _ in samples}
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


def node_totals(d: Director) -> dict[str, float]:
    fams = families(generate_latest(metrics.registry_for(d)).decode())
    return {
        name: fams[f"node_ipvs_{name}"][0][2]
        for name in ("connections", "incoming_packets", "incoming_bytes")
    }


def test_node_ipvs_totals_never_decrease_across_deletes_and_reloads(director: Director) -> None:
    """Global accumulators, as the kernel's /proc/net/ip_vs_stats: deleting a destination
    (lvsadm -d), a service (-D), a reload that drops them, or their slots being freed
    takes nothing off; only -Z of everything starts them again."""
    d = director
    ipvs, admin = d.admin.ipvs, d.admin
    vip, client = int(IPv4Address("10.0.1.5")), int(IPv4Address("10.0.1.100"))
    before = node_totals(d)
    dns = ServiceSpec(17, vip, 53)
    admin.add_service(dns, "rr")
    admin.add_dest(dns, int(IPv4Address("192.168.1.12")), 53)
    for port in range(41000, 41010):
        buf = craft_packet(17, client, port, vip, 53)
        assert ipvs.table.process(buf, 0) == fastpath.NEW
        assert ipvs.new_connection(17, client, port, vip, 53, 0) is not None
        assert ipvs.table.process(buf, 0) == fastpath.FORWARD
    seen = [node_totals(d)]
    assert seen[0] == {
        "connections": before["connections"] + 10,
        "incoming_packets": before["incoming_packets"] + 10,
        "incoming_bytes": before["incoming_bytes"] + 320,
    }
    web = ServiceSpec(6, vip, 80)
    real1 = next(iter(ipvs.get_service(6, vip, 80)))
    admin.del_dest(web, real1.addr, real1.port)
    seen.append(node_totals(d))
    reload.apply_event(admin, reload.ServiceRemoved(dns))
    seen.append(node_totals(d))
    # Connections expire and trashed slots are freed: the loop's SYN was stamped with the
    # monotonic clock, the UDP entries above with 0.
    for now in range(0, now_ms() + 1_000_000, 30_000):
        ipvs.expire(now)
    assert ipvs.trashed() == []
    seen.append(node_totals(d))
    admin.del_service(web)
    seen.append(node_totals(d))
    assert all(s == seen[0] for s in seen), seen
    admin.zero()
    assert node_totals(d) == {"connections": 0.0, "incoming_packets": 0.0, "incoming_bytes": 0.0}


async def test_a_busy_port_is_one_line_naming_the_setting(director: Director) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = HostPort(IPv4Address("127.0.0.1"), busy.getsockname()[1])
        server = exporter.MetricsServer(director, address)
        with pytest.raises(DirectorError) as e:
            await server.start()
    assert str(e.value) == f"metrics_address {address}: cannot listen: Address already in use"


async def test_idle_scrapers_are_capped_and_hung_up_on(director: Director) -> None:
    server = exporter.MetricsServer(
        director, HostPort(IPv4Address("127.0.0.1"), 0), max_clients=2, read_timeout=0.5
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
