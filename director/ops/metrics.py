"""Prometheus metrics of a running director, built at scrape time from its statistics.

Two sets of families. node_exporter's ipvs collector (collector/ipvs_linux.go), with
its names, help texts and labels exactly, so that dashboards and alerts written for
kernel IPVS work unchanged: ``node_ipvs_{connections,incoming_packets,
outgoing_packets,incoming_bytes,outgoing_bytes}_total`` and
``node_ipvs_backend_{connections_active,connections_inactive,weight}`` labelled
``local_address, local_port, remote_address, remote_port, proto, local_mark``. And
lvsd's own ``lvsd_*`` families: per service and per destination counters, the
connection table, drops by reason, scheduling decisions, the fast path in use, nanny's
health state and probe results per real server, failover (role in keepalived's
numbering, the peer, heartbeat loss and round trip, sync lag, configuration mismatch)
when it runs, and the host figures an operator watches (load, memory, network, the
state directory's disk use). The only module that imports prometheus_client, and the
daemon never does: ``director.ops.exporter`` serves them on ``metrics_address``, with the
data of each scrape taken on the event loop (``director.ops.scrape``, so it reads the
live table without locks) and its text made here, in a forked child.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from director.ops.scrape import Observed, Scrape, take
from director.stats import (
    DirectorStats,
    GroupStats,
    NannyStats,
    PulseStats,
    SnapshotStats,
    TargetHealth,
)

if TYPE_CHECKING:
    from healthcheck.specs import ServiceKey

log = logging.getLogger(__name__)

#: The media type of ``render``'s text, as this prometheus_client version names it.
CONTENT_TYPE: str = CONTENT_TYPE_LATEST

BACKEND_LABELS = (
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "proto",
    "local_mark",
)
SERVICE_LABELS = ("local_address", "local_port", "proto", "local_mark")
_COUNTER_FIELDS = (
    ("connections", "conns", "The total number of connections made."),
    ("incoming_packets", "inpkts", "The total number of incoming packets."),
    ("outgoing_packets", "outpkts", "The total number of outgoing packets."),
    ("incoming_bytes", "inbytes", "The total amount of incoming data."),
    ("outgoing_bytes", "outbytes", "The total amount of outgoing data."),
)
STATE_DIR_MAX_FILES = 10_000


HEALTH_STATES = ("up", "down", "unknown")
_PROTO_NAMES = {6: "TCP", 17: "UDP"}


def _split(addr: str) -> tuple[str, str]:
    host, _, port = addr.rpartition(":")
    return host, port


def _service_labels(svc: Mapping[str, Any]) -> list[str]:
    # /proc/net/ip_vs as procfs reads it: a fwmark service has no address, proto
    # "FWM" and its mark in hex; others have no mark.
    if svc.get("fwmark"):
        return ["", "0", "FWM", f"{int(svc['fwmark']):08X}"]
    host, port = _split(svc["addr"])
    return [host, port, svc["proto"], ""]


def _backend_labels(svc: Mapping[str, Any], dest: Mapping[str, Any]) -> list[str]:
    local_address, local_port, proto, mark = _service_labels(svc)
    host, port = _split(dest["addr"])
    return [local_address, local_port, host, port, proto, mark]


def render(scrape: Scrape, pid: int | None = None) -> bytes:
    """The exposition text of ``scrape`` and of process ``pid`` (CPU, memory; default this
    one). Touches no live state: any thread, or a forked child."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector(scrape))
    who = os.getpid() if pid is None else pid
    ProcessCollector(pid=lambda: who, registry=registry)
    return generate_latest(registry)


class DirectorCollector(Collector):
    """Builds every family from one director's live state at each scrape (in one go)."""

    def __init__(self, director: Observed) -> None:
        self._director = director

    def collect(self) -> Iterator[Metric]:
        yield from ScrapeCollector(take(self._director)).collect()


class ScrapeCollector(Collector):
    """Builds every family from one ``Scrape``."""

    def __init__(self, scrape: Scrape) -> None:
        self._scrape = scrape

    def collect(self) -> Iterator[Metric]:
        s = self._scrape
        yield from self._node_ipvs(s.services, s.totals)
        yield from self._lvsd_services(s.services)
        yield from self._lvsd_director(s.stats)
        yield from health_families(s.nanny, s.health)
        yield from failover_families(s.pulse)
        yield from group_families(s.group)
        yield from host_families(s.state_dir)

    @staticmethod
    def _node_ipvs(
        services: list[Mapping[str, Any]], totals: Mapping[str, int]
    ) -> Iterator[Metric]:
        # The kernel's /proc/net/ip_vs_stats, which node_exporter reads: global
        # accumulators that deleting a service or a destination (or a reload) never
        # takes down; only ``ipvsadm -Z`` of everything starts them again.
        for name, field, text in _COUNTER_FIELDS:
            fam = CounterMetricFamily(f"node_ipvs_{name}", text)
            fam.add_metric([], float(totals[field]))
            yield fam
        active = GaugeMetricFamily(
            "node_ipvs_backend_connections_active",
            "The current active connections by local and remote address.",
            labels=BACKEND_LABELS,
        )
        inactive = GaugeMetricFamily(
            "node_ipvs_backend_connections_inactive",
            "The current inactive connections by local and remote address.",
            labels=BACKEND_LABELS,
        )
        weight = GaugeMetricFamily(
            "node_ipvs_backend_weight",
            "The current backend weight by local and remote address.",
            labels=BACKEND_LABELS,
        )
        for s in services:
            for dest in s["dests"]:
                labels = _backend_labels(s, dest)
                active.add_metric(labels, float(dest["active"]))
                inactive.add_metric(labels, float(dest["inactive"]))
                weight.add_metric(labels, float(dest["weight"]))
        yield from (active, inactive, weight)

    @staticmethod
    def _lvsd_services(services: list[Mapping[str, Any]]) -> Iterator[Metric]:
        for name, field, text in _COUNTER_FIELDS:
            svc_fam = CounterMetricFamily(
                f"lvsd_service_{name}", f"{text[:-1]} by virtual service.", labels=SERVICE_LABELS
            )
            dest_fam = CounterMetricFamily(
                f"lvsd_backend_{name}", f"{text[:-1]} by real server.", labels=BACKEND_LABELS
            )
            for s in services:
                svc_fam.add_metric(_service_labels(s), float(s[field]))
                for dest in s["dests"]:
                    dest_fam.add_metric(_backend_labels(s, dest), float(dest[field]))
            yield svc_fam
            yield dest_fam
        persist = GaugeMetricFamily(
            "lvsd_backend_persistent_connections",
            "Persistence templates bound to a real server.",
            labels=BACKEND_LABELS,
        )
        backends = GaugeMetricFamily(
            "lvsd_service_backends",
            "Real servers of a virtual service, and how many can be scheduled (weight > 0).",
            labels=(*SERVICE_LABELS, "state"),
        )
        up = GaugeMetricFamily(
            "lvsd_service_up",
            "1 when the virtual service has a real server it can schedule, else 0.",
            labels=(*SERVICE_LABELS, "scheduler"),
        )
        for s in services:
            labels = _service_labels(s)
            usable = sum(1 for dest in s["dests"] if dest["weight"] > 0)
            backends.add_metric([*labels, "configured"], float(len(s["dests"])))
            backends.add_metric([*labels, "schedulable"], float(usable))
            up.add_metric([*labels, str(s["scheduler"])], 1.0 if usable else 0.0)
            for dest in s["dests"]:
                persist.add_metric(_backend_labels(s, dest), float(dest["persist"]))
        yield from (persist, backends, up)

    @staticmethod
    def _lvsd_director(stats: DirectorStats) -> Iterator[Metric]:
        fastpath = InfoMetricFamily("lvsd_fastpath", "The fast path implementation in use.")
        fastpath.add_metric([], {"implementation": stats.implementation})
        yield fastpath
        off = stats.offload
        mode = InfoMetricFamily(
            "lvsd_offload", "The data-plane mode chosen at start (tun, tun+offload) and why."
        )
        mode.add_metric([], {"mode": off.mode, "reason": off.reason})
        yield mode
        held = GaugeMetricFamily(
            "lvsd_offload_connections", "Connections the kernel's offload map forwards now."
        )
        held.add_metric([], float(off.connections))
        yield held
        changes = CounterMetricFamily(
            "lvsd_offload_changes",
            "Connections put in the offload map, taken out, and cleared from it.",
            labels=("change",),
        )
        for change, n in (("installed", off.installed), ("removed", off.removed)):
            changes.add_metric([change], float(n))
        changes.add_metric(["cleared"], float(off.cleared))
        yield changes
        table = GaugeMetricFamily("lvsd_connection_table_entries", "Connections and templates.")
        table.add_metric([], float(stats.connections))
        yield table
        limit = GaugeMetricFamily("lvsd_connection_table_limit", "The table's capacity.")
        limit.add_metric([], float(stats.max_connections))
        yield limit
        drops = CounterMetricFamily("lvsd_drops", "Packets dropped, by reason.", labels=("reason",))
        reasons = dict(stats.drops)
        reasons["no_service"] = reasons.get("no_service", 0) + stats.no_service
        reasons["no_destination"] = reasons.get("no_destination", 0) + stats.no_dest
        for reason, n in sorted(reasons.items()):
            drops.add_metric([reason], float(n))
        yield drops
        decisions = CounterMetricFamily(
            "lvsd_scheduling_decisions",
            "New connections the director was asked to schedule, by outcome.",
            labels=("outcome",),
        )
        decided = stats.decided - stats.no_service - stats.no_dest - stats.table_full
        decisions.add_metric(["scheduled"], float(max(0, decided)))
        decisions.add_metric(["no_service"], float(stats.no_service))
        decisions.add_metric(["no_destination"], float(stats.no_dest))
        decisions.add_metric(["table_full"], float(stats.table_full))
        yield decisions
        yield _counter(
            "lvsd_connection_table_evictions",
            "Half-open (SYN_RECV) entries evicted to make room in a full table.",
            float(stats.evicted_half_open),
        )
        yield _counter(
            "lvsd_icmp_errors_suppressed",
            "ICMP errors not sent because of the rate limit (icmp_msgs_per_sec).",
            float(stats.icmp_suppressed),
        )
        echo = CounterMetricFamily("lvsd_echo_replies", "ICMP echo replies sent for the VIPs.")
        echo.add_metric([], float(stats.echo_replies))
        yield echo
        ftp = stats.ftp
        yield _counter(
            "lvsd_ftp_control_packets",
            "FTP control-connection payloads the helper inspected.",
            float(ftp.packets),
        )
        yield _counter(
            "lvsd_ftp_replies_rewritten",
            "FTP 227 replies whose address the helper rewrote to the VIP.",
            float(ftp.rewritten),
        )
        yield _counter(
            "lvsd_ftp_data_connections_expected",
            "FTP data connections the helper expected (PASV, EPSV, PORT, EPRT).",
            float(ftp.expected),
        )
        ignored = CounterMetricFamily(
            "lvsd_ftp_ignored",
            "FTP replies or commands the helper passed unchanged, by reason.",
            labels=("reason",),
        )
        ignored.add_metric(["malformed"], float(ftp.malformed))
        ignored.add_metric(["split"], float(ftp.split))
        yield ignored
        yield _counter(
            "lvsd_tcp_resets",
            "TCP resets sent for segments to a service that matched no connection.",
            float(stats.resets),
        )
        if stats.snapshot is not None:
            yield from snapshot_families(stats.snapshot)


def snapshot_families(s: SnapshotStats, now_s: float | None = None) -> Iterator[Metric]:
    """The connection table snapshots in state_dir (docs/operations.md)."""
    now = time.time() if now_s is None else now_s
    if s.last_created_ms:
        yield _gauge(
            "lvsd_snapshot_age_seconds",
            "Seconds since the newest snapshot written was taken.",
            max(0.0, now - s.last_created_ms / 1000),
        )
    yield _gauge("lvsd_snapshot_bytes", "Size of the newest snapshot written.", s.last_bytes)
    yield _gauge("lvsd_snapshot_entries", "Entries in the newest snapshot.", s.last_entries)
    yield _gauge(
        "lvsd_snapshot_write_seconds",
        "Time the newest snapshot took to write (worker thread: prune, write, fsync).",
        s.last_write_s,
    )
    yield _gauge(
        "lvsd_snapshot_capture_seconds",
        "Time the newest snapshot held the event loop (copying the table, in slices).",
        s.last_capture_s,
    )
    yield _counter("lvsd_snapshots_written", "Snapshots written.", float(s.written))
    failures = CounterMetricFamily(
        "lvsd_snapshot_failures", "Snapshots not written, by reason.", labels=("reason",)
    )
    for reason in ("error", "no_space", "over_budget"):
        failures.add_metric([reason], float(s.failures.get(reason, 0)))
    yield failures
    yield _counter("lvsd_snapshots_pruned", "Snapshot files deleted.", float(s.pruned_files))
    yield _counter(
        "lvsd_snapshot_pruned_bytes", "Bytes of snapshot files deleted.", float(s.pruned_bytes)
    )


def _key_labels(key: ServiceKey, addr: str, port: int) -> list[str]:
    # As _backend_labels: a fwmark service has no address, proto FWM and a hex mark.
    if key.fwmark:
        return ["", "0", addr, str(port), "FWM", f"{key.fwmark:08X}"]
    return [key.vaddr, str(key.vport), addr, str(port), _PROTO_NAMES.get(key.protocol, ""), ""]


def health_families(stats: NannyStats, targets: Iterable[TargetHealth]) -> Iterator[Metric]:
    """nanny: each real server's health and probe results, and the changes it applied."""
    health = GaugeMetricFamily(
        "lvsd_backend_health",
        "The probes' verdict on a real server: 1 for its current state (up, down, unknown).",
        labels=(*BACKEND_LABELS, "probe", "state"),
    )
    in_service = GaugeMetricFamily(
        "lvsd_backend_in_service",
        "1 while nanny keeps the real server in its service, 0 while it is out or quiesced.",
        labels=BACKEND_LABELS,
    )
    transitions = CounterMetricFamily(
        "lvsd_backend_health_transitions",
        "Times nanny took the real server out or put it back.",
        labels=BACKEND_LABELS,
    )
    probes = CounterMetricFamily(
        "lvsd_backend_probes",
        "Health probes of the real server, by result.",
        labels=(*BACKEND_LABELS, "result"),
    )
    agent = CounterMetricFamily(
        "lvsd_backend_agent_checks",
        "Agent-check readings of the real server, by result.",
        labels=(*BACKEND_LABELS, "result"),
    )
    load = CounterMetricFamily(
        "lvsd_backend_load_readings",
        "Load-average readings of the real server (load_monitor), by result.",
        labels=(*BACKEND_LABELS, "result"),
    )
    for t in targets:
        labels = _key_labels(t.key, t.addr, t.port)
        for state in HEALTH_STATES:
            value = 1.0 if t.state.health == state else 0.0
            health.add_metric([*labels, t.probe, state], value)
        in_service.add_metric(labels, 1.0 if t.state.in_service else 0.0)
        transitions.add_metric(labels, float(t.state.transitions))
        probes.add_metric([*labels, "passed"], float(t.stats.passed))
        probes.add_metric([*labels, "failed"], float(t.stats.failed))
        if t.stats.agent_replies or t.stats.agent_errors:
            agent.add_metric([*labels, "reply"], float(t.stats.agent_replies))
            agent.add_metric([*labels, "error"], float(t.stats.agent_errors))
        if t.stats.load_readings or t.stats.load_errors:
            load.add_metric([*labels, "reading"], float(t.stats.load_readings))
            load.add_metric([*labels, "error"], float(t.stats.load_errors))
    yield from (health, in_service, transitions, probes, agent, load)
    watched = GaugeMetricFamily("lvsd_health_targets", "(service, real server) pairs probed.")
    watched.add_metric([], float(stats.runner.targets))
    yield watched
    changes = CounterMetricFamily(
        "lvsd_health_changes",
        "Changes nanny applied to the table, by kind.",
        labels=("change",),
    )
    for change, n in (
        ("taken_out", stats.taken_out),
        ("put_back", stats.put_back),
        ("weight", stats.weight_changes),
        ("sorry_added", stats.sorry_added),
        ("sorry_removed", stats.sorry_removed),
    ):
        changes.add_metric([change], float(n))
    yield changes
    yield _counter(
        "lvsd_health_internal_errors",
        "Probes that failed for the director's own reasons (out of descriptors, buffers "
        "or memory); they never take a real server out.",
        float(stats.runner.internal_errors),
    )


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, text)
    fam.add_metric([], value)
    return fam


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    fam = CounterMetricFamily(name, text)
    fam.add_metric([], value)
    return fam


def _sync_messages(prefix: str, stats: PulseStats | GroupStats) -> CounterMetricFamily:
    sync = CounterMetricFamily(
        f"{prefix}_sync_messages", "Connection sync messages, by outcome.", labels=("outcome",)
    )
    for outcome, n in (
        ("sent", stats.sync_sent),
        ("received", stats.sync_received),
        ("applied", stats.sync_applied),
        ("refused", stats.sync_refused),
    ):
        sync.add_metric([outcome], float(n))
    return sync


def group_families(stats: GroupStats | None) -> Iterator[Metric]:
    """An active-active director: its peers, its announcement over BGP, the drain and the
    sync. Only ``lvsd_group_enabled`` (0) outside a group."""
    yield _gauge(
        "lvsd_group_enabled",
        "1 when this director serves in an active-active group.",
        float(stats is not None),
    )
    if stats is None:
        return
    yield _gauge(
        "lvsd_group_vips_announced",
        "1 while this director announces its VIPs to the router (BGP).",
        float(stats.announced),
    )
    why = GaugeMetricFamily(
        "lvsd_group_not_serving",
        "1 with the reason while the VIPs are withdrawn (starting, draining, a link down, ...).",
        labels=("reason",),
    )
    if stats.not_serving is not None:
        why.add_metric([stats.not_serving], 1.0)
    yield why
    yield _gauge("lvsd_group_draining", "1 while this director drains.", float(stats.draining))
    for name, text, value in (
        ("announcements", "Times the VIPs were announced.", stats.announcements),
        ("withdrawals", "Times the VIPs were withdrawn.", stats.withdrawals),
        (
            "datagrams_rejected",
            "Group datagrams refused (unknown sender, bad key).",
            stats.rejected,
        ),
    ):
        yield _counter(f"lvsd_group_{name}", text, float(value))
    alive = GaugeMetricFamily(
        "lvsd_group_peer_alive", "1 while the peer's heartbeats arrive.", labels=("peer",)
    )
    table = GaugeMetricFamily(
        "lvsd_group_peer_table_received",
        "1 once this director holds the peer's connection table.",
        labels=("peer",),
    )
    for peer in stats.peers:
        alive.add_metric([peer.address], float(peer.alive))
        table.add_metric([peer.address], float(peer.table))
    yield from (alive, table)
    yield _sync_messages("lvsd_group", stats)
    if stats.sync_lag_ms is not None:
        yield _gauge(
            "lvsd_group_sync_lag_seconds",
            "Age of the last sync message from a peer when it arrived.",
            stats.sync_lag_ms / 1000.0,
        )
    yield _gauge(
        "lvsd_group_peer_connections",
        "Connections held as copies of the peers' (ready for a flow ECMP moves here).",
        float(stats.shadow_conns),
    )


def failover_families(stats: PulseStats | None) -> Iterator[Metric]:
    """pulse: roles in keepalived's numbering (0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT), the
    peer, heartbeats, sync. Only ``lvsd_failover_enabled`` (0) without failover."""
    yield _gauge(
        "lvsd_failover_enabled", "1 when this director runs failover.", float(stats is not None)
    )
    if stats is None:
        return
    p = stats.peer
    role = GaugeMetricFamily(
        "lvsd_failover_role",
        "This director's role: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT (keepalived's numbering).",
        labels=("node",),
    )
    role.add_metric(["primary" if p.primary else "backup"], float(p.role))
    yield role
    yield _gauge(
        "lvsd_failover_peer_role",
        "The peer's last announced role, 0 INIT while it is not heard (keepalived's numbering).",
        float(p.peer_role),
    )
    yield _gauge(
        "lvsd_failover_peer_alive", "1 while the peer's heartbeats arrive.", float(p.peer_alive)
    )
    yield _counter(
        "lvsd_failover_transitions", "Role changes of this director.", float(p.transitions)
    )
    yield _counter(
        "lvsd_failover_heartbeats_sent", "Heartbeats sent to the peer.", float(p.heartbeats_sent)
    )
    yield _counter(
        "lvsd_failover_heartbeats_accepted",
        "Authentic, fresh heartbeats from the peer.",
        float(p.accepted),
    )
    yield _counter(
        "lvsd_failover_heartbeats_lost",
        "Heartbeats of the peer missing from its sequence numbers.",
        float(p.lost),
    )
    rejected = CounterMetricFamily(
        "lvsd_failover_heartbeats_rejected",
        "Heartbeat packets refused, by reason.",
        labels=("reason",),
    )
    for reason, n in sorted(p.rejected.items()):
        rejected.add_metric([reason], float(n))
    yield rejected
    if p.rtt_ms is not None:
        yield _gauge(
            "lvsd_failover_heartbeat_rtt_seconds",
            "Round trip of a heartbeat to the peer and its echo, recent mean.",
            p.rtt_ms / 1000.0,
        )
    if stats.sync_lag_ms is not None:
        yield _gauge(
            "lvsd_failover_sync_lag_seconds",
            "Age of the last connection sync message when it arrived (sender's clock to ours).",
            stats.sync_lag_ms / 1000.0,
        )
    yield _gauge(
        "lvsd_failover_config_mismatch",
        "1 while the active director's configuration differs from this one's.",
        float(p.config_mismatch),
    )
    yield _gauge(
        "lvsd_failover_table_synced",
        "1 once this standby holds the active director's connection table.",
        float(p.table_synced),
    )
    yield _gauge(
        "lvsd_failover_vips_claimed", "1 while this director holds the VIPs.", float(stats.claimed)
    )
    yield _sync_messages("lvsd_failover", stats)
    yield CounterMetricFamily(
        "lvsd_failover_sync_log_lost",
        "Sync log records lost to a full log; each loss makes the active resend the table.",
        value=float(stats.sync_log_lost),
    )
    yield CounterMetricFamily(
        "lvsd_failover_sync_dumps",
        "Full table dumps the active director finished sending to the standby.",
        value=float(stats.sync_dumps),
    )
    yield _gauge(
        "lvsd_failover_sync_dumping",
        "1 while the active director walks its table for a full dump.",
        float(stats.sync_dumping),
    )
    yield _gauge(
        "lvsd_failover_shadow_connections",
        "Connections a standby holds from sync, ready for a takeover.",
        float(stats.shadow_conns),
    )
    configs = CounterMetricFamily(
        "lvsd_failover_config_syncs",
        "Configurations received from the active director, by outcome.",
        labels=("outcome",),
    )
    configs.add_metric(["applied"], float(stats.config_applied))
    configs.add_metric(["refused"], float(stats.config_refused))
    yield configs


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def host_families(state_dir: Path, proc: str = "/proc") -> Iterator[Metric]:
    """The host's load, memory and network (of the director's namespace) and state_dir use."""
    load = GaugeMetricFamily(
        "lvsd_host_load_average", "The host's run-queue load average.", labels=("period",)
    )
    fields = _read(f"{proc}/loadavg").split()
    for period, value in zip(("1m", "5m", "15m"), fields[:3], strict=False):
        load.add_metric([period], float(value))
    yield load
    mem = GaugeMetricFamily(
        "lvsd_host_memory_bytes", "The host's memory (/proc/meminfo).", labels=("kind",)
    )
    for line in _read(f"{proc}/meminfo").splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable", "MemFree"):
            mem.add_metric([key.removeprefix("Mem").lower()], float(rest.split()[0]) * 1024)
    yield mem
    rx = CounterMetricFamily(
        "lvsd_host_network_receive_bytes",
        "Bytes received by each interface of the director's network namespace.",
        labels=("device",),
    )
    tx = CounterMetricFamily(
        "lvsd_host_network_transmit_bytes",
        "Bytes sent by each interface of the director's network namespace.",
        labels=("device",),
    )
    for dev, received, sent in _net_dev(_read(f"{proc}/net/dev")):
        rx.add_metric([dev], float(received))
        tx.add_metric([dev], float(sent))
    yield rx
    yield tx
    used = GaugeMetricFamily(
        "lvsd_state_dir_bytes", "Bytes in the files of lvsd's state directory."
    )
    used.add_metric([], float(_dir_bytes(state_dir)))
    yield used
    fs = GaugeMetricFamily(
        "lvsd_state_dir_filesystem_bytes",
        "Size and free space of the file system holding the state directory.",
        labels=("kind",),
    )
    with contextlib.suppress(OSError):
        st = os.statvfs(_existing_parent(state_dir))
        fs.add_metric(["size"], float(st.f_blocks * st.f_frsize))
        fs.add_metric(["available"], float(st.f_bavail * st.f_frsize))
    yield fs


def _net_dev(text: str) -> Iterable[tuple[str, int, int]]:
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        cols = rest.split()
        if len(cols) >= 9:
            yield name.strip(), int(cols[0]), int(cols[8])


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _dir_bytes(path: Path) -> int:
    total = 0
    seen = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            seen += 1
            if seen > STATE_DIR_MAX_FILES:
                return total
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def registry_for(director: Observed) -> CollectorRegistry:
    """A registry with the director's families and the process's (CPU seconds, memory)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DirectorCollector(director))
    ProcessCollector(registry=registry)
    return registry
