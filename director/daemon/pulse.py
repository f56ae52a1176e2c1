"""Pulse: the director's side of failover; applies what the failover leaf reports.

``Pulse`` runs ``failover.peer.Peer`` (heartbeats, the state machine) and acts on its
events, the only code that does:

* MASTER: claim every VIP (proxy ARP entries) and the nat_router address, send spaced
  gratuitous ARPs on the public segment (VIPs) and the private one (nat_router), run
  ``active_cmd`` (its output logged). BACKUP or FAULT after MASTER: release them first,
  run ``inactive_cmd``. Only the MASTER forwards: the director drops (and counts) what
  reaches a standby (docs/failover.md says why).
* Re-announce whenever the network may hold the wrong picture: the peer yielded after a
  split brain, or came back after a silence (``PeerYielded``); and every
  ``garp_master_refresh`` seconds while MASTER when that is set.
* Readiness: a primary standby asks for the VIPs back only once its health checks have
  settled since it started or left FAULT (``settled(since)``: every real probed since,
  none about to come back) and every service that had a real when it went to FAULT has
  one again: a director that was cut off from the reals must not take the traffic
  before its probes have seen them again.
* Connection sync. As the active director, the table keeps a sync log (the fast path
  records inserts, state changes and removals as they happen); every ``SYNC_INTERVAL_S``
  ``failover.sync.Streamer`` turns the log, plus a bounded slice of a refresh walk, into
  sync messages for the standby, which inserts them into its own ``ConnTable`` (the
  shadow table): after a takeover, established connections find their entry and go on.
  A tick costs the changes since the previous one plus a slice, never a table scan. A
  standby without the table asks for a full dump, walked a slice per tick and ended
  with ``SYNC_DUMP_END``; a primary that comes back asks too, and takes the VIPs back
  only once the dump has ended (``fsm`` preemption rule).
* Configuration sync. Heartbeats carry the SHA-256 of the sender's normalized lvs.cf
  without the node-local keys (``LOCAL_KEYS``). A standby whose digest differs says so;
  the active sends its text; the standby validates it (``parse_config``), keeps its
  local keys, and applies it as a reload (``director.daemon.reload``) if its VIPs and director
  addresses are the same (the plumbing does not move), else logs that it cannot. The
  mismatch is in logs and in ``statistics()``.

Event-loop thread only; netlink work goes to a thread.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import fields, replace
from ipaddress import IPv4Address

from director.config import DirectorConfig, format_config, parse_config
from director.dataplane import fastpath
from director.dataplane.plumbing import Plumbing, announce, find_iface_for
from director.errors import ConfigError, TunError
from director.ipvs.service import IPVS, Destination, VirtualService
from director.stats import PulseStats
from failover import packet, sync
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
from failover.peer import FailoverSettings, HeartbeatPath, Peer

log = logging.getLogger(__name__)

SYNC_INTERVAL_S = 0.1
SYNC_LOG_CAPACITY = 1 << 16
"""Sync log records the active table holds between ticks; more means a full dump."""
GARP_COUNT = 5
GARP_INTERVAL_S = 0.2
LOCAL_KEYS = (
    "public_iface",
    "private_iface",
    "metrics_address",
    "control_socket",
    "heartbeat_key_file",
    "heartbeat_insecure",
    "console_token_file",
    "max_connections",
    "offload",
    "state_dir",
    "snapshot_interval",
    "snapshot_keep",
    "snapshot_max_age",
    "snapshot_budget",
)
"""lvs.cf keys that describe one director, not the cluster: never synced."""

_FTPPORT = 21


def wants_failover(cfg: DirectorConfig) -> bool:
    """Whether ``cfg`` asks for a backup director (heartbeat on, backup named and active)."""
    return cfg.heartbeat and cfg.backup_active and cfg.backup is not None


def is_local(addr: IPv4Address) -> bool:
    """Whether ``addr`` is an address of this host (it can be bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((str(addr), 0))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                return False
            raise
    return True


NO_KEY = (
    "heartbeat_key_file is not set; set it (the same key on both directors) or write "
    "heartbeat_insecure = 1 to run failover unauthenticated"
)


def read_key(cfg: DirectorConfig) -> bytes | None:
    """The heartbeat key from ``heartbeat_key_file``; b"" with ``heartbeat_insecure = 1``;
    None with neither. Raises ConfigError for an unreadable key or one under 16 bytes.
    """
    if cfg.heartbeat_key_file is None:
        if cfg.heartbeat_insecure:
            log.warning("failover: heartbeat_insecure = 1: heartbeats are not authenticated")
            return b""
        return None
    try:
        key = cfg.heartbeat_key_file.read_bytes().strip()
    except OSError as e:
        raise ConfigError(f"heartbeat_key_file {cfg.heartbeat_key_file}: {e.strerror}") from None
    if len(key) < packet.MIN_KEY_LEN:
        raise ConfigError(
            f"heartbeat_key_file {cfg.heartbeat_key_file}: need at least "
            f"{packet.MIN_KEY_LEN} bytes, got {len(key)}"
        )
    return key


def sync_path(cfg: DirectorConfig, paths: list[HeartbeatPath]) -> int | None:
    """The index of the heartbeat path on ``syncd_iface`` (None when unset).

    IPVS's sync daemon sends on the interface ``syncd_iface`` names; lvsd's sync rides
    the authenticated heartbeat channel, so it can honour the option when a heartbeat
    path runs over that interface, and refuses it (ConfigError) otherwise.
    """
    if cfg.syncd_iface is None:
        return None
    found = []
    for i, path in enumerate(paths):
        try:
            name = find_iface_for(path.local)
        except TunError:
            continue
        if name == cfg.syncd_iface:
            return i
        found.append(f"{path.name} on {name}")
    raise ConfigError(
        f"syncd_iface = {cfg.syncd_iface}: lvsd sends connection sync on a heartbeat path, "
        f"and none runs over {cfg.syncd_iface} ({', '.join(found) or 'no path found'}); "
        "name one of those interfaces, or set primary_private/backup_private on it"
    )


def sync_text(cfg: DirectorConfig) -> str:
    """The lvs.cf text the directors compare and send: normalized, local keys at defaults."""
    defaults = DirectorConfig()
    return format_config(replace(cfg, **{k: getattr(defaults, k) for k in LOCAL_KEYS}))


def config_digest(cfg: DirectorConfig) -> bytes:
    return hashlib.sha256(sync_text(cfg).encode()).digest()


def failover_settings(cfg: DirectorConfig) -> FailoverSettings | None:
    """The failover leaf's settings; which director we are is found by our own addresses.

    Without a key (and without ``heartbeat_insecure = 1``) lvsd refuses to run failover:
    the backup refuses to start (ConfigError), and the primary serves alone, claiming the
    VIPs, with an ERROR in the log. Neither then answers unauthenticated heartbeats, and
    no split brain can follow from a missing key.
    """
    if cfg.primary is None or cfg.backup is None:
        raise ConfigError("failover: needs both primary and backup addresses")
    if is_local(cfg.primary):
        primary, public = True, HeartbeatPath("public", cfg.primary, cfg.backup)
    elif is_local(cfg.backup):
        primary, public = False, HeartbeatPath("public", cfg.backup, cfg.primary)
    else:
        raise ConfigError(
            f"failover: neither primary {cfg.primary} nor backup {cfg.backup} is an address "
            "of this host"
        )
    key = read_key(cfg)
    if key is None:
        if not primary:
            raise ConfigError(f"failover: {NO_KEY}")
        log.error("failover: not running, serving alone as the primary: %s", NO_KEY)
        return None
    paths = [public]
    if cfg.primary_private is not None and cfg.backup_private is not None:
        mine, theirs = cfg.primary_private, cfg.backup_private
        if not primary:
            mine, theirs = theirs, mine
        paths.append(HeartbeatPath("private", mine, theirs))
    return FailoverSettings(
        sync=cfg.syncdaemon,
        sync_path=sync_path(cfg, paths),
        primary=primary,
        paths=tuple(paths),
        port=cfg.heartbeat_port,
        keepalive_s=cfg.keepalive,
        deadtime_s=cfg.deadtime,
        key=key,
        syncid=cfg.syncd_id,
        max_age_s=max(30.0, 2 * cfg.deadtime),
        config_digest=config_digest(cfg),
    )


class Pulse:
    """Drives failover for one director; see the module docstring.

    ``apply_config`` brings the director's services to a validated configuration
    (as a reload does, connections kept) and returns whether it could.
    """

    def __init__(
        self,
        cfg: DirectorConfig,
        settings: FailoverSettings,
        plumbing: Plumbing,
        table: fastpath.ConnTable,
        ipvs: Callable[[], IPVS],
        apply_config: Callable[[DirectorConfig], bool],
        settled: Callable[[float], bool] = lambda since: True,
    ) -> None:
        self.cfg = cfg
        self.settings = settings
        self.plumbing = plumbing
        self.table = table
        self._ipvs = ipvs
        self._apply_config = apply_config
        self._settled = settled
        self._had_dests: frozenset[tuple[int, int, int, int]] = frozenset()
        self.events: asyncio.Queue[FailoverEvent] = asyncio.Queue()
        self.peer = Peer(settings, self.events)
        self.streamer = sync.Streamer(fwmark_of=self._fwmark_of)
        self._shadow: dict[tuple[int, int, int, int, int, bool], int] = {}
        self._counts = dict.fromkeys(
            (
                "sync_sent",
                "sync_received",
                "sync_applied",
                "sync_refused",
                "config_applied",
                "config_refused",
                "sync_log_lost",
                "sync_dumps",
                "announcements",
            ),
            0,
        )
        self._lag_ms: int | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._announcing: asyncio.Task[None] | None = None

    @property
    def role(self) -> Role:
        return self.peer.role

    async def run(self) -> None:
        # FAULT follows the public link's carrier; with monitor_links the private one's too.
        links = [self.plumbing.public_iface]
        if self.cfg.monitor_links:
            links.append(self.plumbing.private_iface)
        self.peer.links = tuple(links)
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tg.create_task(self.peer.run())
            tg.create_task(self._consume())
            tg.create_task(self._stream())
            if self.cfg.garp_master_refresh > 0:
                tg.create_task(self._refresh(self.cfg.garp_master_refresh))

    # -- events ----------------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            event = await self.events.get()
            match event:
                case RoleChanged():
                    await self._role_changed(event)
                case SyncReceived():
                    self._sync_received(event)
                case PeerYielded():
                    # keepalived's vrrp_garp_lower_prio_repeat: after a split brain or a
                    # partition the clients and reals may still hold the peer's MAC.
                    log.info("failover: %s; announcing the VIPs and nat_router again", event.reason)
                    self._start_announce()
                case DumpRequested() if self.cfg.syncdaemon:
                    if not self.streamer.dumping:
                        log.info("failover: the standby asks for the whole table")
                    self.streamer.start_dump()
                case ConfigRequested():
                    text = sync_text(self.cfg).encode()
                    self.peer.send(packet.Kind.CONFIG, text)
                case ConfigReceived():
                    self._config_received(event.text)

    async def _role_changed(self, change: RoleChanged) -> None:
        if change.new is Role.MASTER:
            # From here every change is logged; the dump walk covers what came before.
            self.table.enable_sync_log(SYNC_LOG_CAPACITY)
            self.streamer.stop()
            self.streamer.start_dump()
            # Announce at once, while the claim's netlink work runs: the VIP routes and
            # reply steering are in place since setup, so traffic that follows the
            # gratuitous ARPs is served; the proxy entries only answer later requests.
            self._start_announce()
            await asyncio.to_thread(self.plumbing.claim)
            self._shadow.clear()
            self._spawn(run_hook(self.cfg.active_cmd, "active_cmd"))
            return
        # A director that stops serving stops announcing at once: the rounds left of its
        # takeover's announcement would pull the clients and reals back from the peer.
        self._stop_announce()
        self.table.enable_sync_log(0)
        self.streamer.stop()
        if change.new is Role.FAULT:
            self._had_dests = self._serving()
        if change.old is Role.MASTER or self.plumbing.claimed:
            await asyncio.to_thread(self.plumbing.release)
            self._spawn(run_hook(self.cfg.inactive_cmd, "inactive_cmd"))
        # A standby's table comes from the active director from now on.
        self.peer.send_heartbeat()

    def _spawn(self, coro: object) -> None:
        assert self._tg is not None
        assert asyncio.iscoroutine(coro)
        self._tg.create_task(coro)

    def _start_announce(self, count: int = GARP_COUNT) -> None:
        """Announce (see ``_announce``) instead of any announcement still running."""
        self._stop_announce()
        assert self._tg is not None
        self._announcing = self._tg.create_task(self._announce(count))

    def _stop_announce(self) -> None:
        if self._announcing is not None:
            self._announcing.cancel()
            self._announcing = None

    async def _announce(self, count: int = GARP_COUNT) -> None:
        """Gratuitous ARPs for the VIPs (public) and nat_router (private), while MASTER."""
        spec = self.plumbing.spec
        sends = [announce(self.plumbing.public_iface, spec.vips, count, GARP_INTERVAL_S)]
        if spec.nat_router is not None:
            router = [spec.nat_router.ip]
            sends.append(announce(self.plumbing.private_iface, router, count, GARP_INTERVAL_S))
        # A link that went down meanwhile fails the send: FAULT handles that, not a crash.
        for result in await asyncio.gather(*sends, return_exceptions=True):
            if isinstance(result, OSError | TunError):
                log.warning("failover: gratuitous ARP: %s", result)
            elif isinstance(result, BaseException):
                raise result
        self._counts["announcements"] += 1

    async def _refresh(self, interval_s: float) -> None:
        """garp_master_refresh: one round of gratuitous ARPs every ``interval_s`` as MASTER."""
        while True:
            await asyncio.sleep(interval_s)
            busy = self._announcing is not None and not self._announcing.done()
            if self.peer.role is Role.MASTER and self.plumbing.claimed and not busy:
                self._start_announce(count=1)

    # -- connection sync: the active side --------------------------------------------------

    async def _stream(self) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL_S)
            if self.peer.role is Role.MASTER:
                if self.cfg.syncdaemon:
                    self.stream_once(now_ms())
            else:
                self.peer.set_ready(self.ready())

    def ready(self) -> bool:
        """Whether this director could serve as well as before it left: its probes have
        settled since it rejoined, and every service that had a real to schedule to when
        it went to FAULT has one again (a link that came back later than the one FAULT
        watches fails probes that settle nothing)."""
        if not self._settled(self.peer.rejoined_s):
            return False
        return self._had_dests <= self._serving()

    def _serving(self) -> frozenset[tuple[int, int, int, int]]:
        """The services that have a destination they can schedule to."""
        return frozenset(
            (svc.protocol, svc.vaddr, svc.vport, svc.fwmark)
            for svc in self._ipvs().services.values()
            if any(d.weight > 0 for d in svc.dests)
        )

    def _fwmark_of(self, slot: int) -> int:
        return self._ipvs().fwmark_of(slot)

    def stream_once(self, now: int) -> int:
        """Send one sync tick: the logged changes and a walk slice; returns entries sent."""
        dumping = self.streamer.dumping
        tick = self.streamer.tick(self.table, now)
        self._counts["sync_log_lost"] += tick.lost
        self._counts["sync_dumps"] += tick.dump_end
        if tick.lost and not dumping:
            log.warning(
                "failover: the sync log lost %d changes; sending the whole table again", tick.lost
            )
        messages = sync.encode(tick.entries, self.cfg.syncd_id)
        if tick.dump_end and not messages:
            messages = [_empty(self.cfg.syncd_id)]
        for i, m in enumerate(messages):
            last = i == len(messages) - 1
            flags = packet.SYNC_DUMP_END if tick.dump_end and last else 0
            if self.peer.send(packet.Kind.SYNC, m, flags):
                self._counts["sync_sent"] += 1
        if tick.dump_end:
            log.info("failover: sent the whole table (%d entries) to the standby", len(self.table))
        return len(tick.entries)

    # -- connection sync: the standby side -------------------------------------------------

    def _sync_received(self, event: SyncReceived) -> None:
        if not self.cfg.syncdaemon or not self.apply_sync(event.payload, event.sent_ms, "failover"):
            return
        if event.dump_end:
            log.info("failover: holding the active director's table (%d entries)", len(self.table))
            self.peer.table_synced()

    def apply_sync(self, payload: bytes, sent_ms: int, where: str) -> bool:
        """Decode one sync message and mirror its entries (``apply_entry``), counting what
        was received, applied and refused; False if the message itself is refused (logged
        after ``where``)."""
        self._counts["sync_received"] += 1
        self._lag_ms = max(0, time.time_ns() // 1_000_000 - sent_ms)
        try:
            entries = sync.decode(payload, self.cfg.syncd_id)
        except sync.SyncError as err:
            self._counts["sync_refused"] += 1
            log.warning("%s: %s", where, err)
            return False
        now = now_ms()
        for entry in entries:
            if self.apply_entry(entry, now):
                self._counts["sync_applied"] += 1
            else:
                self._counts["sync_refused"] += 1
        return True

    def apply_entry(self, e: sync.ConnEntry, now: int) -> bool:
        """Mirror one synced entry into the table; False if no service or dest matches."""
        h = self._shadow_handle(e)
        if e.removed:
            if h >= 0 and self.table.conn_info(h)[CONN_INFO_N_CONTROL] == 0:
                self.table.remove(h)
                self._shadow.pop(e.key, None)
            return True
        found = self._find(e)
        if found is None:
            return False
        svc, dest = found
        if h >= 0 and self.table.conn_info(h)[CONN_INFO_DEST] != dest.slot:
            if self.table.conn_info(h)[CONN_INFO_N_CONTROL]:
                return False
            self.table.remove(h)
            h = -1
        if e.template:
            if h < 0:
                h = self.table.insert_template(
                    e.protocol, e.caddr, e.vaddr, e.vport, dest.slot, svc.timeout, now
                )
            else:
                self.table.touch_template(h, now)
        else:
            if h < 0:
                ctl = self._template_for(svc, e)
                h = self.table.insert(
                    e.protocol, e.caddr, e.cport, e.vaddr, e.vport, e.daddr, e.dport, dest.slot,
                    now, ctl,
                )  # fmt: skip
                if h >= 0:
                    self._ipvs().bind_app(h, e.protocol, e.vport)
                    # Scheduled by the active director, not here: counted there only.
                    self.table.uncount(h)
            if h >= 0 and e.protocol == sync.PROTO_TCP and e.state:
                # Also when unchanged: re-arms the shadow's timer, as a packet would.
                self.table.set_state(h, e.state, now)
            if h >= 0 and e.seq is not None:
                # The FTP helper's offsets: the control connection goes on after a takeover.
                self.table.set_seq_state(h, *e.seq)
        if h < 0:
            return False
        self._shadow[e.key] = h
        return True

    def _shadow_handle(self, e: sync.ConnEntry) -> int:
        """The handle mirroring ``e``, checked: expiry may have freed and reused it."""
        h = self._shadow.get(e.key, -1)
        if h < 0:
            return -1
        try:
            info = self.table.conn_info(h)
        except ValueError:
            info = ()
        if (
            info[:5] != (e.protocol, e.caddr, e.cport, e.vaddr, e.vport)
            or bool(info[CONN_INFO_FLAGS] & fastpath.CONN_F_TEMPLATE) != e.template
        ):
            del self._shadow[e.key]
            return -1
        return h

    def _find(self, e: sync.ConnEntry) -> tuple[VirtualService, Destination] | None:
        """The service and dest a synced entry binds to (kernel ip_vs_find_dest).

        A marked entry: the fwmark service of its mark that ``IPVS.find_service`` gives
        a packet of its protocol (a template's protocol is IPPROTO_IP: the one holding its
        dest); a dest of the same port, else of port 0 (a fwmark dest without a port: each
        connection keeps its client's port). Like ip_vs_service_find, an entry whose mark
        no service has falls back to its address. An unmarked entry: by address only.
        """
        ipvs = self._ipvs()
        if e.fwmark:
            first = e.protocol if e.protocol == sync.PROTO_UDP else sync.PROTO_TCP
            other = sync.PROTO_TCP if first == sync.PROTO_UDP else sync.PROTO_UDP
            found = (ipvs.services.get((p, 0, 0, e.fwmark)) for p in (first, other))
            marked = [svc for svc in found if svc is not None]
            if marked:
                for svc in marked if e.template else marked[:1]:
                    dest = svc.find_dest(e.daddr, e.dport) or svc.find_dest(e.daddr, 0)
                    if dest is not None:
                        return svc, dest
                return None
        for svc in ipvs.services.values():
            if svc.fwmark:
                continue
            if svc.protocol != e.protocol or svc.vaddr != e.vaddr:
                continue
            # The service's own port; else a port-zero or FTP service (whose data
            # connections use other ports), or a template of port 0.
            if svc.vport not in (e.vport, 0, _FTPPORT, *ipvs.app_ports) and not (
                e.template and e.vport == 0
            ):
                continue
            dest = svc.find_dest(e.daddr, e.dport) or svc.find_dest(e.daddr, 0)
            if dest is None and svc.vport in ipvs.app_ports:
                # An FTP data connection: on its control connection's real, another port.
                dest = next((d for d in svc.dests if d.addr == e.daddr), None)
            if dest is not None:
                return svc, dest
        return None

    def _template_for(self, svc: VirtualService, e: sync.ConnEntry) -> int:
        """The template a synced connection hangs on: the key ip_vs_sched_persist gave it."""
        if not svc.persistent:
            return -1
        if svc.fwmark and e.vport != svc.vport:
            return int(self.table.lookup_template(0, e.caddr & svc.netmask, svc.fwmark, 0))
        tvport = e.vport if e.vport == svc.vport and svc.vport != _FTPPORT else 0
        return int(self.table.lookup_template(e.protocol, e.caddr & svc.netmask, e.vaddr, tvport))

    # -- configuration sync ----------------------------------------------------------------

    def _config_received(self, text: str) -> None:
        try:
            received = parse_config(text, "<active director>")
        except ConfigError as e:
            self._counts["config_refused"] += 1
            log.error("failover: the active director's configuration is invalid here: %s", e)
            return
        new = replace(received, **{k: getattr(self.cfg, k) for k in LOCAL_KEYS})
        if config_digest(new) == config_digest(self.cfg):
            self.peer.set_config_digest(config_digest(new))
            return
        moved = [
            f.name
            for f in fields(DirectorConfig)
            if f.name in ("primary", "backup", "primary_private", "backup_private", "nat_router")
            and getattr(new, f.name) != getattr(self.cfg, f.name)
        ]
        vips = {v.address for v in new.virtuals if v.active}
        if moved or vips != set(self.plumbing.spec.vips):
            self._counts["config_refused"] += 1
            log.error(
                "failover: cannot apply the active director's configuration: "
                "it changes %s; restart this director with it",
                ", ".join(moved or ["the VIPs"]),
            )
            return
        if not self._apply_config(new):
            self._counts["config_refused"] += 1
            return
        self.cfg = new
        self._counts["config_applied"] += 1
        log.info(
            "failover: applied the active director's configuration (serial_no %d)", new.serial_no
        )
        self.peer.set_config_digest(config_digest(new))

    # -- reporting -------------------------------------------------------------------------

    def statistics(self) -> PulseStats:
        c = self._counts
        return PulseStats(
            peer=self.peer.statistics(),
            claimed=self.plumbing.claimed,
            sync_sent=c["sync_sent"],
            sync_received=c["sync_received"],
            sync_applied=c["sync_applied"],
            sync_refused=c["sync_refused"],
            sync_lag_ms=self._lag_ms,
            shadow_conns=len(self._shadow),
            config_applied=c["config_applied"],
            config_refused=c["config_refused"],
            sync_log_lost=c["sync_log_lost"],
            sync_dumps=c["sync_dumps"],
            sync_dumping=self.streamer.dumping,
        )

    def snapshot(self) -> dict[str, object]:
        """Plain data for ``Director.snapshot()["failover"]``."""
        s = self.statistics()
        p = s.peer
        return {
            "role": Role(p.role).name,
            "role_code": p.role,
            "node": "primary" if p.primary else "backup",
            "peer_role": Role(p.peer_role).name,
            "peer_alive": p.peer_alive,
            "claimed": s.claimed,
            "transitions": p.transitions,
            "heartbeats_sent": p.heartbeats_sent,
            "accepted": p.accepted,
            "lost": p.lost,
            "rejected": p.rejected,
            "rtt_ms": p.rtt_ms,
            "config_mismatch": p.config_mismatch,
            "table_synced": p.table_synced,
            "sync_sent": s.sync_sent,
            "sync_received": s.sync_received,
            "sync_applied": s.sync_applied,
            "sync_refused": s.sync_refused,
            "sync_lag_ms": s.sync_lag_ms,
            "shadow_conns": s.shadow_conns,
            "config_applied": s.config_applied,
            "config_refused": s.config_refused,
            "announcements": self._counts["announcements"],
        }


async def run_hook(cmd: str | None, what: str) -> int | None:
    """Run ``active_cmd``/``inactive_cmd`` through the shell; log its output line by line
    and its exit status. Returns the status (None when unset)."""
    if not cmd:
        return None
    log.info("failover: running %s %r", what, cmd)
    proc = await asyncio.create_subprocess_shell(
        cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    async for raw in proc.stdout:
        log.info("failover: %s: %s", what, raw.decode(errors="replace").rstrip())
    rc = await proc.wait()
    (log.info if rc == 0 else log.warning)("failover: %s %r exited with %d", what, cmd, rc)
    return rc


CONN_INFO_DEST = 7
CONN_INFO_FLAGS = 9
CONN_INFO_N_CONTROL = 11


def now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _empty(syncid: int) -> bytes:
    return sync.HEADER.pack(0, syncid, sync.HEADER.size, 0, sync.VERSION, 0)
