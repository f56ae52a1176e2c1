"""Active-active: this director serves, announces its VIPs, and syncs with the group.

With ``active_active = 1`` (docs/scale-out.md) every director of ``directors`` serves at
once behind a router that spreads the VIPs' packets over them by ECMP. ``Group`` runs:

* the group channel (``failover.group.GroupLink``): heartbeats to every peer and
  connection sync, authenticated as failover's;
* connection sync both ways. Every ``SYNC_INTERVAL_S`` the sync log and a refresh slice
  (``failover.sync.Streamer``) go to every peer: the connections this director scheduled,
  not the copies it holds of the peers' (no echo), except in a full dump, which carries
  the whole table so that a director that joins holds every flow the router may hand it.
  A received entry becomes a copy in the one connection table (the standby's shadow
  entry, ``Pulse.apply_entry``), unless this director holds that connection itself.
* the announcement (``director.daemon.announce``: BIRD as a child process). The VIPs are
  announced while this director can serve: it holds the table of every live peer (once,
  after it starts), its public link (and with ``monitor_links = 1`` its private link) is
  up with its carrier, it is not draining, and a service has a real to schedule to.
  Otherwise they are withdrawn.
* the drain (SIGTERM): withdraw, then go on forwarding until no connection in the table
  is active (the peers' copies count, as the kernel counts synced connections in its
  dests' active connections) or no packet has come for ``quiet`` seconds (the router
  moved every flow to the others, which hold them by sync), at most ``drain_timeout``.

Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from director.config import DirectorConfig
from director.daemon.announce import AnnounceError, Announcer, BgpSpec, vips_of
from director.daemon.pulse import (
    NO_KEY,
    SYNC_INTERVAL_S,
    SYNC_LOG_CAPACITY,
    Pulse,
    _empty,
    is_local,
    now_ms,
    read_key,
)
from director.dataplane import fastpath
from director.dataplane.plumbing import Plumbing
from director.errors import ConfigError
from director.ipvs.service import IPVS
from director.stats import GroupPeerStats, GroupStats
from failover import packet, sync
from failover.group import GroupDumpRequested, GroupEvent, GroupLink, GroupSettings, GroupSync
from failover.peer import link_state

log = logging.getLogger(__name__)

QUIET_MIN_S = 1.0
"""A drain ends after at least this long without a packet (and two keepalives)."""


def group_settings(cfg: DirectorConfig) -> GroupSettings:
    """This director's place in ``directors`` (found by its own address) and the channel's
    parameters; ConfigError if none of them is an address here, or without a key."""
    mine = [a for a in cfg.directors if is_local(a)]
    if len(mine) != 1:
        raise ConfigError(
            f"directors = {' '.join(map(str, cfg.directors))}: "
            + ("none is" if not mine else f"{len(mine)} are")
            + " an address of this host (exactly one must be)"
        )
    key = read_key(cfg)
    if key is None:
        raise ConfigError(f"active_active: {NO_KEY}")
    return GroupSettings(
        local=mine[0],
        peers=tuple(a for a in cfg.directors if a != mine[0]),
        port=cfg.heartbeat_port,
        key=key,
        keepalive_s=cfg.keepalive,
        deadtime_s=cfg.deadtime,
        max_age_s=max(30.0, 2 * cfg.deadtime),
    )


class Group(Pulse):
    """One director of an active-active group; see the module docstring.

    It shares ``Pulse``'s way of mirroring a synced entry into the table
    (``apply_entry``), and nothing of its roles: there is no peer to take over from.
    """

    def __init__(
        self,
        cfg: DirectorConfig,
        settings: GroupSettings,
        plumbing: Plumbing,
        table: fastpath.ConnTable,
        ipvs: Callable[[], IPVS],
        packets: Callable[[], int],
    ) -> None:
        # Pulse.__init__ would build a two-node Peer; the group has GroupLink instead.
        self.cfg = cfg
        self.settings_group = settings
        self.plumbing = plumbing
        self.table = table
        self._ipvs = ipvs
        self._packets = packets
        self.streamer = sync.Streamer(fwmark_of=self._fwmark_of)
        self._shadow: dict[tuple[int, int, int, int, int, bool], int] = {}
        self._counts = dict.fromkeys(
            (
                "sync_sent",
                "sync_received",
                "sync_applied",
                "sync_refused",
                "sync_own",
                "sync_log_lost",
                "sync_dumps",
                "announcements",
                "withdrawals",
            ),
            0,
        )
        self._lag_ms: int | None = None
        self.group_events: asyncio.Queue[GroupEvent] = asyncio.Queue()
        self.link = GroupLink(settings, self.group_events)
        if not cfg.syncdaemon:
            self.link.need_dump.clear()  # no tables to wait for
        assert cfg.bgp_neighbor is not None
        self.announcer = Announcer(
            BgpSpec(
                local=settings.local,
                asn=cfg.bgp_asn,
                neighbor=cfg.bgp_neighbor,
                neighbor_asn=cfg.bgp_neighbor_asn,
                hold_time=cfg.bgp_hold_time,
                vips=vips_of(plumbing.spec.vips),
            ),
            # Beside the control socket: one per director, also with several on one host.
            run_dir=cfg.control_socket.with_name(f"{cfg.control_socket.stem}-bird"),
        )
        self.draining = False
        self._why_not: str | None = "starting"

    async def run(self) -> None:
        self.table.enable_sync_log(SYNC_LOG_CAPACITY)
        await self.announcer.start()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.link.run())
                tg.create_task(self._consume_group())
                tg.create_task(self._tick())
        finally:
            await self.announcer.close()

    # -- announcing ------------------------------------------------------------------------

    def why_not_serving(self) -> str | None:
        """None when this director should announce its VIPs; otherwise why not."""
        if self.draining:
            return "draining"
        # As pulse's FAULT: the public link always; with monitor_links the reals' side too.
        links = [("public", self.plumbing.public_iface)]
        if self.cfg.monitor_links:
            links.append(("private", self.plumbing.private_iface))
        for role, name in links:
            broken = link_state(name)
            if broken is not None:
                return f"{role} interface {name} {broken}"
        if not self.link.synced():
            return "waiting for the peers' tables"
        if not self._serving():
            return "no service has a real to schedule to"
        return None

    async def _set_announced(self) -> None:
        why = self.why_not_serving()
        try:
            if why is None and not self.announcer.announced:
                await self.announcer.announce()
                self._counts["announcements"] += 1
            elif why is not None and self.announcer.announced:
                log.warning("group: withdrawing the VIPs: %s", why)
                await self.announcer.withdraw()
                self._counts["withdrawals"] += 1
        except AnnounceError as e:
            log.error("group: %s", e)
        if why != self._why_not:
            log.info("group: %s", why or "serving and announced")
            self._why_not = why

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL_S)
            if self.cfg.syncdaemon:
                self.stream_once(now_ms())
            await self._set_announced()

    async def drain(self, timeout_s: float) -> None:
        """Withdraw the VIPs and forward until no connection is active or the flows have
        moved (no packet for ``quiet`` seconds), at most ``timeout_s``."""
        self.draining = True
        await self._set_announced()
        quiet_s = max(QUIET_MIN_S, 2 * self.cfg.keepalive)
        start = last_change = time.monotonic()
        seen = self._packets()
        why = "timeout"
        while time.monotonic() - start < timeout_s:
            if self._active() == 0:
                why = "no active connection left"
                break
            now = time.monotonic()
            if (count := self._packets()) != seen:
                seen, last_change = count, now
            elif now - last_change >= quiet_s:
                why = f"no packet for {quiet_s:g} s"
                break
            await asyncio.sleep(SYNC_INTERVAL_S)
        # The last changes reach the peers before this director goes.
        if self.cfg.syncdaemon:
            self.stream_once(now_ms())
        log.info(
            "group: drained in %.1f s (%s); %d active connections left (the peers hold them)",
            time.monotonic() - start,
            why,
            self._active(),
        )

    def _active(self) -> int:
        return sum(d.active_conns for s in self._ipvs().services.values() for d in s.dests)

    # -- connection sync -------------------------------------------------------------------

    async def _consume_group(self) -> None:
        while True:
            event = await self.group_events.get()
            match event:
                case GroupSync():
                    self._group_sync(event)
                case GroupDumpRequested() if self.cfg.syncdaemon:
                    if not self.streamer.dumping:
                        log.info("group: %s asks for the whole table", event.peer)
                    self.streamer.start_dump()

    def stream_once(self, now: int) -> int:
        """One tick to every peer: our own connections' changes and refresh slice; the
        whole table (copies too) while a dump runs."""
        dumping = self.streamer.dumping
        tick = self.streamer.tick(self.table, now)
        self._counts["sync_log_lost"] += tick.lost
        self._counts["sync_dumps"] += tick.dump_end
        entries = tick.entries
        if not (dumping or tick.dump_end):
            entries = [e for e in entries if e.key not in self._shadow]
        messages = sync.encode(entries, self.cfg.syncd_id)
        if tick.dump_end and not messages:
            messages = [_empty(self.cfg.syncd_id)]
        for i, m in enumerate(messages):
            last = i == len(messages) - 1
            flags = packet.SYNC_DUMP_END if tick.dump_end and last else 0
            self._counts["sync_sent"] += self.link.broadcast(packet.Kind.SYNC, m, flags)
        return len(entries)

    def _group_sync(self, event: GroupSync) -> None:
        if self.cfg.syncdaemon:
            self.apply_sync(event.payload, event.sent_ms, f"group: from {event.peer}")

    def apply_entry(self, e: sync.ConnEntry, now: int) -> bool:
        """As ``Pulse.apply_entry``, but a connection this director holds itself (it
        scheduled it) is its own to keep: a peer's copy of it changes nothing."""
        if not e.template and e.key not in self._shadow:
            h = self.table.lookup(e.protocol, e.caddr, e.cport, e.vaddr, e.vport)
            if h >= 0:
                self._counts["sync_own"] += 1
                return True
        return super().apply_entry(e, now)

    # -- reporting -------------------------------------------------------------------------

    def group_statistics(self) -> GroupStats:
        c = self._counts
        return GroupStats(
            peers=tuple(
                GroupPeerStats(str(p), self.link.alive(p), p not in self.link.need_dump)
                for p in self.settings_group.peers
            ),
            announced=self.announcer.announced,
            draining=self.draining,
            not_serving=self._why_not,
            announcements=c["announcements"],
            withdrawals=c["withdrawals"],
            sync_sent=c["sync_sent"],
            sync_received=c["sync_received"],
            sync_applied=c["sync_applied"],
            sync_refused=c["sync_refused"],
            sync_lag_ms=self._lag_ms,
            shadow_conns=len(self._shadow),
            rejected=sum(
                n for k, n in self.link.counts.items() if k.startswith(("rejected", "unknown"))
            ),
        )

    def snapshot(self) -> dict[str, object]:
        """Plain data for ``Director.snapshot()["group"]``."""
        c = self._counts
        return {
            "local": str(self.settings_group.local),
            "peers": {
                str(p): {"alive": self.link.alive(p), "table": p not in self.link.need_dump}
                for p in self.settings_group.peers
            },
            "synced": self.link.synced(),
            "announced": self.announcer.announced,
            "not_serving": self._why_not,
            "draining": self.draining,
            "shadow_conns": len(self._shadow),
            "sync_lag_ms": self._lag_ms,
            **c,
            **{k: v for k, v in self.link.counts.items()},
        }
