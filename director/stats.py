"""What the daemon's parts report about themselves: immutable records the operator reads.

Statistics flow one way: the data plane, nanny and pulse fill these records
(``statistics()``), and ``director.ops`` (metrics, listings) only reads them. Keeping the
records here, below both, is what lets ``director.ops`` never import ``director.daemon``.
"""

from __future__ import annotations

from dataclasses import dataclass

from failover.peer import PeerStats
from healthcheck.runner import RunnerStats, TargetState
from healthcheck.specs import ServiceKey


@dataclass(frozen=True, slots=True)
class OffloadStats:
    """The data-plane mode chosen at start ("tun" or "tun+offload"), why, and the kernel
    map: connections it holds now, and installed, removed and cleared since start."""

    mode: str
    reason: str
    connections: int = 0
    installed: int = 0
    removed: int = 0
    cleared: int = 0


@dataclass(frozen=True, slots=True)
class FtpStats:
    """What the FTP helper did since start: packets seen, replies rewritten, expected data
    connections created, and replies or commands left alone as malformed or split."""

    packets: int = 0
    rewritten: int = 0
    expected: int = 0
    malformed: int = 0
    split: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotStats:
    """The connection table snapshots written since start (``director.daemon.snapshot``).

    ``failures`` by reason: ``error`` (an OSError), ``no_space`` (the file system, after
    pruning), ``over_budget`` (one snapshot larger than ``snapshot_budget``). ``last_*``
    describe the newest snapshot written (created: Unix ms, 0 if none yet).
    """

    written: int
    failures: dict[str, int]
    pruned_files: int
    pruned_bytes: int
    last_created_ms: int
    last_bytes: int
    last_entries: int
    last_write_s: float
    last_capture_s: float


@dataclass(frozen=True, slots=True)
class DirectorStats:
    """What the director did with the packets that came back from the fast path."""

    implementation: str
    connections: int
    max_connections: int
    decided: int
    no_service: int
    no_dest: int
    echo_replies: int
    drops: dict[str, int]
    table_full: int = 0
    evicted_half_open: int = 0
    icmp_suppressed: int = 0
    ftp: FtpStats = FtpStats()
    snapshot: SnapshotStats | None = None
    resets: int = 0  # TCP resets sent for segments that matched no connection
    offload: OffloadStats = OffloadStats("tun", "not started")


@dataclass(frozen=True, slots=True)
class NannyStats:
    """What nanny did since start: the runners' counts and the changes applied.

    ``runner`` sums every target's runner, those a reload stopped included, so its
    counts only grow; ``runner.targets`` is the number watched now.
    """

    runner: RunnerStats
    taken_out: int
    put_back: int
    weight_changes: int
    sorry_added: int
    sorry_removed: int


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """One watched (service, real server) as metrics see it: identity, state, counts."""

    key: ServiceKey
    addr: str
    port: int
    probe: str
    state: TargetState
    stats: RunnerStats


@dataclass(frozen=True, slots=True)
class PulseStats:
    """Failover as metrics see it: the peer's record plus sync and claim state."""

    peer: PeerStats
    claimed: bool
    sync_sent: int
    sync_received: int
    sync_applied: int
    sync_refused: int
    sync_lag_ms: int | None
    shadow_conns: int
    config_applied: int
    config_refused: int
    sync_log_lost: int = 0
    sync_dumps: int = 0
    sync_dumping: bool = False


@dataclass(frozen=True, slots=True)
class GroupPeerStats:
    """One peer of an active-active group: heard, and its table received."""

    address: str
    alive: bool
    table: bool


@dataclass(frozen=True, slots=True)
class GroupStats:
    """Active-active as metrics see it: the peers, the announcement, the drain and the sync.

    ``not_serving`` says why the VIPs are withdrawn (None while they are announced);
    ``rejected`` counts datagrams refused (unknown sender, bad key or envelope).
    """

    peers: tuple[GroupPeerStats, ...]
    announced: bool
    draining: bool
    not_serving: str | None
    announcements: int
    withdrawals: int
    sync_sent: int
    sync_received: int
    sync_applied: int
    sync_refused: int
    sync_lag_ms: int | None
    shadow_conns: int
    rejected: int
