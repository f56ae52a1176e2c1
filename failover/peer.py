"""The asyncio driver of failover: heartbeats over UDP on every path, the FSM, the peer's messages.

``Peer(settings, events).run()`` binds one UDP socket per path (public, and private when
both private addresses are set) on ``heartbeat_port``, announces this director's role
every ``keepalive`` seconds on each, and feeds what the peer sends through
``packet.Guard`` (authentication, replay, age) into ``fsm.Failover``. Role changes and the
peer's sync and configuration messages go on ``events`` for the director to act on; the
driver itself never touches the network configuration.

FAULT: when a heartbeat cannot be sent on the public path (its link is down, its address
gone), or a watched link (``links``: the public interface, and with lvs.cf's
``monitor_links`` the private one) has lost its carrier, this director cannot serve, so it
reports FAULT and releases the VIPs. A pulled cable makes no send fail (the kernel drops
what it cannot transmit), hence the carrier watch. Once every watched link has its
carrier and a send succeeds, it recovers to BACKUP and rejoins as a standby.

Re-announcing: an active director whose peer yields (a healed split brain) or is heard
again after a silence of ``deadtime`` (a healed partition) reports ``PeerYielded``: the
clients and the reals may still hold the peer's MAC for the VIPs and nat_router.
Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import socket
import struct
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from failover import packet
from failover.events import (
    ConfigReceived,
    ConfigRequested,
    DumpRequested,
    FailoverEvent,
    PeerYielded,
    Role,
    RoleChanged,
    SyncReceived,
)
from failover.fsm import Failover

log = logging.getLogger(__name__)

TICK_S = 0.05
RTT_SAMPLES = 16
_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1
_IFF_RUNNING = 0x40


def link_state(name: str) -> str | None:
    """None if interface ``name`` is up with its carrier, else what is wrong with it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            ifr = fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack("16sH", name.encode()[:15], 0))
        except OSError as e:
            return "gone" if e.errno == errno.ENODEV else f"unreadable ({e.strerror})"
    flags = struct.unpack_from("16sH", ifr)[1]
    if not flags & _IFF_UP:
        return "down"
    if not flags & _IFF_RUNNING:
        return "without carrier"
    return None


@dataclass(frozen=True, slots=True)
class HeartbeatPath:
    """One network the heartbeat crosses: our address on it and the peer's."""

    name: str
    local: IPv4Address
    peer: IPv4Address


@dataclass(frozen=True, slots=True)
class FailoverSettings:
    """Everything the failover leaf needs, built by the director from lvs.cf.

    ``paths[0]`` is the public path (FAULT follows it). ``key`` empty means
    unauthenticated. ``max_age_s`` bounds the wall-clock skew/age of a datagram.
    ``links`` are the interfaces whose carrier FAULT follows too. ``sync`` False: no
    connection sync (the standby asks for no table, the primary preempts without one).
    ``sync_path`` is the index of the path sync and configuration messages go on (None:
    the last path that works, the private one first).
    """

    primary: bool
    paths: tuple[HeartbeatPath, ...]
    port: int
    keepalive_s: float
    deadtime_s: float
    key: bytes
    syncid: int = 0
    max_age_s: float = 30.0
    config_digest: bytes = field(default=bytes(32))
    links: tuple[str, ...] = ()
    sync: bool = True
    sync_path: int | None = None

    def __post_init__(self) -> None:
        if not self.paths:
            raise ValueError("FailoverSettings.paths: need at least the public path")
        if self.sync_path is not None and not 0 <= self.sync_path < len(self.paths):
            raise ValueError(f"FailoverSettings.sync_path: no path {self.sync_path}")
        if not 0 < self.keepalive_s < self.deadtime_s:
            raise ValueError(
                f"FailoverSettings: need 0 < keepalive < deadtime, "
                f"got {self.keepalive_s}, {self.deadtime_s}"
            )


@dataclass(frozen=True, slots=True)
class PeerStats:
    """Failover metrics: roles in keepalived's numbering, loss and rejections as counters."""

    role: int
    peer_role: int
    peer_alive: bool
    primary: bool
    transitions: int
    heartbeats_sent: int
    accepted: int
    lost: int
    rejected: dict[str, int]
    rtt_ms: float | None
    config_mismatch: bool
    table_synced: bool


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class _Endpoint:
    """One path's UDP socket, non-blocking, read from the loop with ``add_reader``."""

    def __init__(self, peer: Peer, path: HeartbeatPath, port: int) -> None:
        self.peer = peer
        self.path = path
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((str(path.local), port))
        except OSError:
            self.sock.close()
            raise

    def readable(self) -> None:
        for _ in range(64):  # bounded per wake-up; the loop calls again if more wait
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # ICMP errors of earlier sends surface here
                self.peer.send_failed(self.path, e)
                return
            self.peer.received(self.path, data, str(addr[0]))


class Peer:
    """Runs the heartbeat of this director against its one peer; see the module docstring."""

    def __init__(
        self,
        settings: FailoverSettings,
        events: asyncio.Queue[FailoverEvent],
        *,
        incarnation: int | None = None,
    ) -> None:
        self.settings = settings
        self.events = events
        node = packet.PRIMARY if settings.primary else packet.BACKUP
        inc = time.time_ns() if incarnation is None else incarnation
        self.sealer = packet.Sealer(settings.key, node, inc)
        self.guard = packet.Guard(settings.key, node, int(settings.max_age_s * 1000))
        self.fsm = Failover(
            primary=settings.primary,
            deadtime_ms=int(settings.deadtime_s * 1000),
            sync=settings.sync,
        )
        self.config_digest = settings.config_digest
        self.config_mismatch = False
        # The role to start in (fsm.start): MASTER for a process taking over an active one.
        self.resume: Role | None = None
        self._endpoints: list[_Endpoint] = []
        self._sent_at: dict[int, int] = {}
        self._rtts: deque[int] = deque(maxlen=RTT_SAMPLES)
        self._peer_seq = 0
        self._peer_seq_ms = 0
        self._last_dump_ms = -(10**12)
        self._last_config_ms = -(10**12)
        self._counts: Counter[str] = Counter()
        self._faults: dict[str, str] = {}
        self.links = settings.links
        self.rejoined_s = time.monotonic()
        """When this director started or last left FAULT (monotonic s)."""
        self._wake = asyncio.Event()

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Bind, then heartbeat and watch the peer until cancelled."""
        loop = asyncio.get_running_loop()
        try:
            for path in self.settings.paths:
                ep = _Endpoint(self, path, self.settings.port)
                self._endpoints.append(ep)
                loop.add_reader(ep.sock.fileno(), ep.readable)
            log.info(
                "failover: %s director, heartbeat on %s, port %d, keepalive %g s, deadtime %g s%s",
                "primary" if self.settings.primary else "backup",
                ", ".join(f"{p.name} {p.local}->{p.peer}" for p in self.settings.paths),
                self.settings.port,
                self.settings.keepalive_s,
                self.settings.deadtime_s,
                "" if self.settings.key else " (UNAUTHENTICATED)",
            )
            self._apply(self.fsm.start(_now_ms(), self.resume))
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._heartbeat())
                tg.create_task(self._watch())
        finally:
            for ep in self._endpoints:
                loop.remove_reader(ep.sock.fileno())
                ep.sock.close()
            self._endpoints.clear()

    async def _heartbeat(self) -> None:
        while True:
            self.send_heartbeat()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.keepalive_s)

    async def _watch(self) -> None:
        interval = min(TICK_S, self.settings.keepalive_s / 4)
        while True:
            self.check_links()
            await asyncio.sleep(interval)
            self._apply(self.fsm.tick(_now_ms()))

    def check_links(self) -> None:
        """FAULT while a watched link is down or without carrier; recover once all are back."""
        for name in self.links:
            state = link_state(name)
            key = f"link {name}"
            if state is None:
                if self._faults.pop(key, None) is not None:
                    log.info("failover: link %s is up again", name)
            elif key not in self._faults:
                log.warning("failover: link %s is %s", name, state)
                self._set_fault(key, f"link {name} is {state}")
        self._set_fault(None, "")

    # -- inputs from the director ----------------------------------------------------------

    @property
    def role(self) -> Role:
        return self.fsm.role

    def table_synced(self) -> None:
        """The director applied the end of a full dump: the standby holds the table."""
        self._apply(self.fsm.table_synced(_now_ms()))
        self._wake.set()

    def set_ready(self, ready: bool) -> None:
        """Whether the director could serve now; a primary standby asks for the VIPs only then."""
        if ready != self.fsm.ready:
            self._apply(self.fsm.set_ready(_now_ms(), ready))
            self._wake.set()

    def table_lost(self) -> None:
        """The director dropped its shadow table (a configuration was applied): ask again."""
        self.fsm.synced = False
        self._wake.set()

    def set_config_digest(self, digest: bytes) -> None:
        self.config_digest = digest
        self.config_mismatch = False

    def send(self, kind: packet.Kind, payload: bytes, flags: int = 0) -> bool:
        """Send a sync or config message on ``sync_path``, else on the last working path
        (private first)."""
        if self.settings.sync_path is not None:
            if self.settings.sync_path >= len(self._endpoints):
                return False
            return self._send_on(self._endpoints[self.settings.sync_path], kind, payload, flags)
        return any(self._send_on(ep, kind, payload, flags) for ep in reversed(self._endpoints))

    def send_heartbeat(self) -> None:
        now = _now_ms()
        hb = packet.Heartbeat(
            role=self.fsm.role,
            wants_active=self.fsm.wants_active,
            need_dump=self.fsm.need_dump and self.fsm.peer_role is Role.MASTER,
            need_config=self.config_mismatch,
            echo_seq=self._peer_seq,
            echo_held_ms=now - self._peer_seq_ms if self._peer_seq else 0,
            config_digest=self.config_digest,
        )
        payload = packet.encode_heartbeat(hb)
        for i, ep in enumerate(self._endpoints):
            ok = self._send_on(ep, packet.Kind.HEARTBEAT, payload, hb.flags, now)
            if i == 0:
                self._public_sent(ok, ep.path)
        if len(self._sent_at) > 4 * RTT_SAMPLES:
            for seq in sorted(self._sent_at)[: -2 * RTT_SAMPLES]:
                del self._sent_at[seq]

    def _send_on(
        self, ep: _Endpoint, kind: packet.Kind, payload: bytes, flags: int, now: int | None = None
    ) -> bool:
        seq, data = self.sealer.seal(kind, payload, _wall_ms(), flags)
        try:
            # Reports ENETUNREACH/ENETDOWN at once: that is how FAULT is noticed.
            ep.sock.sendto(data, (str(ep.path.peer), self.settings.port))
        except BlockingIOError:
            self._counts["send_dropped"] += 1
            return True
        except OSError as e:
            self.send_failed(ep.path, e)
            return False
        if kind is packet.Kind.HEARTBEAT:
            self._counts["heartbeats_sent"] += 1
            self._sent_at[seq] = _now_ms() if now is None else now
        return True

    def send_failed(self, path: HeartbeatPath, exc: Exception) -> None:
        self._counts[f"send_errors_{path.name}"] += 1

    def _public_sent(self, ok: bool, path: HeartbeatPath) -> None:
        key = f"{path.name} path"
        if not ok and key not in self._faults:
            self._set_fault(key, f"cannot send on the {path.name} path")
        elif ok and key in self._faults:
            del self._faults[key]
            self._set_fault(None, f"the {path.name} path works again")

    def _set_fault(self, key: str | None, reason: str) -> None:
        """Record a fault (``key``) or, with None, recover if none is left."""
        now = _now_ms()
        if key is not None:
            self._faults[key] = reason
            if self.fsm.role is not Role.FAULT:
                self._apply(self.fsm.fault(now, reason))
        elif not self._faults and self.fsm.role is Role.FAULT:
            self.rejoined_s = time.monotonic()
            self._apply(self.fsm.recover(now, reason or "every watched link is up again"))

    # -- inputs from the network -----------------------------------------------------------

    def received(self, path: HeartbeatPath, data: bytes, src: str) -> None:
        if src not in {str(p.peer) for p in self.settings.paths}:
            self._counts["foreign"] += 1
            return
        env = self.guard.check(data, _wall_ms())
        if isinstance(env, packet.Verdict):
            self._log_rejected(env, path, src)
            return
        now = _now_ms()
        match env.kind:
            case packet.Kind.HEARTBEAT:
                hb = packet.decode_heartbeat(env.payload, env.flags)
                if hb is None:
                    self.guard.rejected[packet.Verdict.MALFORMED.value] += 1
                    return
                self._heartbeat_received(now, env.seq, hb)
            case packet.Kind.SYNC:
                if self.fsm.role is not Role.MASTER:
                    dump_end = bool(env.flags & packet.SYNC_DUMP_END)
                    self.events.put_nowait(SyncReceived(env.payload, dump_end, env.sent_ms))
            case packet.Kind.CONFIG:
                if self.fsm.role is not Role.MASTER:
                    text = env.payload.decode("utf-8", errors="replace")
                    self.events.put_nowait(ConfigReceived(text))

    def _heartbeat_received(self, now: int, seq: int, hb: packet.Heartbeat) -> None:
        if seq > self._peer_seq or hb.role != self.fsm.peer_role:
            self._peer_seq, self._peer_seq_ms = seq, now
        sent = self._sent_at.pop(hb.echo_seq, None)
        if sent is not None and now - sent >= hb.echo_held_ms:
            self._rtts.append(now - sent - hb.echo_held_ms)
        before = self.fsm.role
        peer_before = self.fsm.peer(now)
        self._apply(self.fsm.heard(now, Role(hb.role), hb.wants_active))
        role = self.fsm.role
        if role is Role.MASTER and before is Role.MASTER:
            if hb.role != Role.MASTER and (
                peer_before.role is Role.MASTER or not peer_before.alive
            ):
                was = "active" if peer_before.role is Role.MASTER else "silent"
                self.events.put_nowait(PeerYielded(f"the peer was {was} and is now standby"))
            keepalive_ms = int(self.settings.keepalive_s * 1000)
            if hb.need_dump and now - self._last_dump_ms > 2 * keepalive_ms:
                self._last_dump_ms = now
                self.events.put_nowait(DumpRequested())
            if hb.need_config and now - self._last_config_ms > 2 * keepalive_ms:
                self._last_config_ms = now
                self.events.put_nowait(ConfigRequested())
        elif role is Role.BACKUP and hb.role == Role.MASTER:
            mismatch = hb.config_digest != self.config_digest
            if mismatch != self.config_mismatch:
                self.config_mismatch = mismatch
                if mismatch:
                    log.warning("failover: configuration differs from the active director's")
                else:
                    log.info("failover: configuration matches the active director's")
                self._wake.set()
            if self.fsm.wants_active:
                self._wake.set()

    def _log_rejected(self, verdict: packet.Verdict, path: HeartbeatPath, src: str) -> None:
        n = self.guard.rejected[verdict.value]
        if n & (n - 1) == 0:  # 1, 2, 4, 8...: rate-limited
            log.warning(
                "failover: %s datagram from %s on the %s path refused (%d so far)",
                verdict.value,
                src,
                path.name,
                n,
            )

    def _apply(self, changes: list[RoleChanged]) -> None:
        for change in changes:
            self._counts["transitions"] += 1
            log.info("failover: %s -> %s: %s", change.old.name, change.new.name, change.reason)
            self.events.put_nowait(change)
            self._wake.set()

    # -- reporting -------------------------------------------------------------------------

    def statistics(self) -> PeerStats:
        now = _now_ms()
        peer = self.fsm.peer(now)
        g = self.guard.statistics()
        rtt = sum(self._rtts) / len(self._rtts) if self._rtts else None
        return PeerStats(
            role=int(self.fsm.role),
            peer_role=int(peer.role) if peer.alive else int(Role.INIT),
            peer_alive=peer.alive,
            primary=self.settings.primary,
            transitions=self._counts["transitions"],
            heartbeats_sent=self._counts["heartbeats_sent"],
            accepted=g.accepted,
            lost=g.lost,
            rejected={**g.rejected, "foreign": self._counts["foreign"]},
            rtt_ms=rtt,
            config_mismatch=self.config_mismatch,
            table_synced=self.fsm.synced,
        )
