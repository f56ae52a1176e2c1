"""The director daemon: builds the parts from one configuration, runs the packet loop.

``Director(cfg).run()`` sets up the namespace plumbing (TUN, VIP routes, proxy ARP,
reply steering, nat_router), loads the services of every active ``virtual`` into
the IPVS service layer, and serves until SIGTERM or SIGINT, after which the host is
left exactly as it was. The packet loop is one ``add_reader`` callback per TUN: one
call into the fast path drains it and forwards every packet of a known connection;
only packets that need a decision come back here (``_decide``), each with the verdict
the fast path gave it, so none is classified twice. Besides the address TUN there is
one TUN per firewall mark of a fwmark virtual: a packet read from it carries that mark
into the service lookup. Every write goes to the address TUN.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import logging
import os
import resource
import signal
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, replace
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import TYPE_CHECKING

from director.config import MAX_DESTINATIONS, MAX_SERVICES, DirectorConfig, Network, Protocol
from director.daemon import limits, reload, snapshot
from director.daemon.group import Group, group_settings
from director.daemon.nanny import Nanny, TargetId, wanted_targets
from director.daemon.pulse import Pulse, failover_settings, wants_failover
from director.daemon.reaper import Reaper
from director.daemon.reload import ConfigEvent
from director.dataplane import fastpath, icmp
from director.dataplane.ftp import FtpHelper
from director.dataplane.links import Links
from director.dataplane.offload import Offload
from director.dataplane.plumbing import Plumbing, PlumbingSpec
from director.dataplane.reassembly import Reassembler
from director.errors import ConfigError, DirectorError, TunError
from director.ipvs.estimator import INTERVAL_S, RateEstimator
from director.ipvs.service import (
    DROUTE,
    FWD_NAMES,
    FWD_OF_NETWORK,
    IPVS,
    TUNNEL,
    IPVSError,
    VirtualService,
    format_addr,
)
from director.ops import control, exporter, watchdog
from director.ops.admin import Admin, VipRefused
from director.ops.console import Console, read_token
from director.ops.control import ControlServer
from director.ops.notify import Notifier
from director.stats import DirectorStats
from failover.events import Role
from healthcheck.specs import Target

if TYPE_CHECKING:
    from director.daemon import takeover

log = logging.getLogger(__name__)

PROTOCOLS = {Protocol.TCP: 6, Protocol.UDP: 17}
_VNET_PLAIN = bytes(fastpath.VNET_HDR_LEN)  # no offload flags: a packet we built
# proto, saddr, daddr, sport, dport of a vnet-headed IPv4 packet without options.
_FLOW = struct.Struct("!9xB2xIIHH")
EXPIRY_INTERVAL_S = 1.0
DEFAULT_TUNNEL_MTU = 1500  # until the real's route is read
IP_MTU_DISCOVER = 10  # <linux/in.h>
IP_PMTUDISC_DONT = 0
TUNSETOFFLOAD = 0x400454D0
# How often the direct-routing reals' link addresses are read again from the kernel.
LINK_REFRESH_S = 1.0
# At start, how long to wait for the kernel to resolve them before serving anyway.
LINK_START_WAIT_S = 2.0
# Seconds of work per slice when a reload is applied on the event loop.
SLICE_S = 0.005
_DISCARD_BATCH = 256


def now_ms() -> int:
    """Monotonic milliseconds: the only clock of the data plane."""
    return time.monotonic_ns() // 1_000_000


def build_ipvs(cfg: DirectorConfig, table: fastpath.ConnTable) -> IPVS:
    """The service layer for every active virtual service of ``cfg``.

    Each port of a ``virtual`` block is one service. Servers enter in file order,
    as Piranha's lvs daemon added them with ipvsadm, so the kernel's list (and every
    scheduler's iteration) is the reverse. Inactive virtuals and servers are skipped.
    """
    ipvs = IPVS(table, app_ports=frozenset(cfg.ftp_ports))
    ipvs.set_timeouts(cfg.tcp_timeout, cfg.tcpfin_timeout, cfg.udp_timeout)
    for v in cfg.virtuals:
        if not v.active:
            continue
        proto = PROTOCOLS[v.protocol]
        for vport in v.ports:
            try:
                svc = ipvs.add_service(
                    proto,
                    int(v.address),
                    vport,
                    v.scheduler,
                    frozenset(v.sched_flags),
                    timeout=v.persistent,
                    netmask=int(v.pmask),
                    fwmark=v.fwmark,
                )
                for s in v.servers:
                    if s.active:
                        svc.add_dest(
                            int(s.address),
                            s.dport(vport, v.fwmark),
                            s.weight,
                            s.u_threshold,
                            s.l_threshold,
                            fwd=FWD_OF_NETWORK[cfg.forwarding(s)],
                        )
            except IPVSError as e:
                raise ConfigError(f"virtual {v.name}: port {vport}: {e}") from e
    return ipvs


def plumbing_spec(cfg: DirectorConfig, tun: str = "lvs0") -> PlumbingSpec:
    """What the director's namespace needs for ``cfg``.

    Every real, whatever its method, locates the private interface; replies are steered
    from that interface into the TUN. A direct-routing real answers the client itself,
    from the VIP, by a path that does not cross the director (its own gateway). With a
    tunnelled real the TUN has no offloads (``Director`` turns them off, too, when lvsadm
    adds the first one).
    """
    # A tunnelled packet is encapsulated whole: the TUN must hand over segments with
    # complete checksums, not offloaded super-packets.
    tunnels = any(
        cfg.forwarding(s) is Network.TUNNEL
        for v in cfg.virtuals
        if v.active
        for s in v.servers
        if s.active
    )
    # None is fine: kernel IPVS starts empty too, and lvsadm fills it (Plumbing.add_vip).
    vips = tuple(dict.fromkeys(v.address for v in cfg.virtuals if v.active))
    reals = tuple(
        dict.fromkeys(s.address for v in cfg.virtuals if v.active for s in v.servers if s.active)
    )
    # Sorted: the marks' tables follow this order, and a reordered file is the same plumbing.
    fwmarks = tuple(sorted({v.fwmark for v in cfg.virtuals if v.active and v.fwmark}))
    nat_router = None
    label = None
    private = cfg.private_iface
    if cfg.nat_router is not None:
        nat_router = IPv4Interface(f"{cfg.nat_router}/{cfg.nat_nmask}")
        if cfg.nat_router_device:
            label = cfg.nat_router_device
            private = private or cfg.nat_router_device.split(":", 1)[0]
    return PlumbingSpec(
        vips=vips,
        tun=tun,
        public_iface=cfg.public_iface,
        private_iface=private,
        reals=reals,
        nat_router=nat_router,
        nat_router_label=label,
        fwmarks=fwmarks,
        tun_offloads=not tunnels,
    )


class Director:
    """Composes the fast path, the service layer and the plumbing; runs the loop.

    Event-loop thread only. ``run()`` returns after a stop signal (or ``stop()``)
    once everything it set up is removed.
    """

    def __init__(
        self,
        cfg: DirectorConfig,
        *,
        tun: str = "lvs0",
        config_path: Path | None = None,
        take_over: bool = False,
    ) -> None:
        if take_over and cfg.active_active:
            # The successor's BIRD would open a second session from the same address.
            raise DirectorError(
                "--takeover is not offered with active_active = 1: restart the director "
                "instead; it withdraws its routes and its flows go on through the group"
            )
        self.cfg = cfg
        self._take_over = take_over
        self._received: takeover.Received | None = None
        self._handed_over = False
        self._readers: list[tuple[int, int]] = []
        self._listeners: list[tuple[str, int]] = []
        self.config_path = config_path
        try:
            self.table = fastpath.ConnTable(cfg.max_connections, MAX_DESTINATIONS, MAX_SERVICES)
        except MemoryError:
            raise ConfigError(
                f"max_connections = {cfg.max_connections}: not enough memory for the "
                "connection table"
            ) from None
        # The service layer and sync edit the table through the offload's view, which
        # keeps the kernel's map in step (see director.dataplane.offload).
        self.offload = Offload(self.table)
        self.ipvs = build_ipvs(cfg, self.offload.table_view())
        self.budget = limits.budget(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        self.nanny = Nanny(cfg, self.ipvs, max_probes=self.budget.probes)
        failover = failover_settings(cfg) if wants_failover(cfg) else None
        # With failover, Pulse claims the VIPs when this director becomes active.
        spec = plumbing_spec(cfg, tun)
        self.plumbing = Plumbing(spec if failover is None else replace(spec, claim_on_setup=False))
        self.vips = {int(a).to_bytes(4, "big") for a in self.plumbing.spec.vips}
        self.reassembler = Reassembler()
        self.links = Links()
        self._linked: dict[int, tuple[int, int, int]] = {}
        # Tunnelled dests: slot -> the MTU their encapsulated packets must fit.
        self._tunnel_mtu: dict[int, int] = {}
        self._tunnel_sock: socket.socket | None = None
        self.ftp = FtpHelper(self.table)
        self._icmp_limit = icmp.RateLimit()
        self._reset_limit = icmp.RateLimit()
        self.estimator = RateEstimator()
        self._notifier = Notifier.from_environment()
        self._stop = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._reloading = False
        self._reload_again = False
        self._fd = -1
        self._pending: list[tuple[int, bytearray]] = []
        self._counts: Counter[str] = Counter()
        self._no_dest: Counter[str] = Counter()
        timeouts = (cfg.tcp_timeout, cfg.tcpfin_timeout, cfg.udp_timeout)
        self.admin = Admin(
            self.ipvs,
            self.estimator,
            now_ms,
            timeouts,
            cfg.drain_timeout,
            fwmarks=frozenset(spec.fwmarks),
            vips=self,
        )
        self._reaper: Reaper | None = None
        self.snapshots = snapshot.SnapshotWriter(
            self.table, lambda: self.ipvs, lambda: self.cfg, now_ms
        )
        self.console = Console(
            self, self.admin.commands(), self.reload, read_token(cfg.console_token_file)
        )
        self.pulse = (
            None
            if failover is None
            else Pulse(
                cfg,
                failover,
                self.plumbing,
                self.offload.table_view(),
                lambda: self.ipvs,
                self._take_cfg,
                settled=self.nanny.settled,
            )
        )
        # Active-active: serves at once, announces its VIPs over BGP, syncs with the group.
        self.group: Group | None = None
        if cfg.active_active:
            settings = group_settings(cfg)
            # Through the offload's view, as pulse: the table's change log has one reader.
            self.group = Group(
                cfg,
                settings,
                self.plumbing,
                self.offload.table_view(),
                lambda: self.ipvs,
                self._packets_in,
            )

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        # Listening first, before the host is touched: a busy metrics port or a live
        # daemon's socket is a one-line DirectorError and changes nothing. Taking over,
        # the running daemon's listeners are served instead.
        control = ControlServer(
            self.cfg.control_socket,
            self,
            commands=self.admin.commands(),
            max_clients=self.budget.control_clients,
        )
        control.takeover = self._hand_over
        got = None
        if self._take_over:
            from director.daemon import takeover  # noqa: PLC0415  (only when used: footprint)

            got = await asyncio.to_thread(takeover.request, self.cfg.control_socket)
            self._received = got
        scrapes = None
        try:
            await control.start(None if got is None else got.listeners.pop("control", None))
            if self.cfg.metrics_address is not None:
                scrapes = exporter.MetricsServer(
                    self,
                    self.cfg.metrics_address,
                    max_clients=self.budget.metrics_clients,
                    route=self.console.route,
                )
                await scrapes.start(None if got is None else got.listeners.pop("metrics", None))
            self._listeners = [("control", control.listener_fd())]
            if scrapes is not None:
                self._listeners.append(("metrics", scrapes.listener_fd()))
            await self._run(control, scrapes)
        finally:
            if self._received is not None:  # never confirmed: the old daemon serves on
                self._received.close()
            control.close(unlink=not self._handed_over)
            if scrapes is not None:
                scrapes.close()

    async def _run(self, control: ControlServer, scrapes: exporter.MetricsServer | None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        got = self._received
        if got is None:
            # pyroute2's synchronous API runs an event loop of its own: netlink work goes
            # to a thread, which has no running loop.
            await asyncio.to_thread(Plumbing.cleanup_stale, self.plumbing.spec)
        else:
            from director.daemon import takeover  # noqa: PLC0415  (only when used: footprint)

            takeover.adopt_plumbing(self.plumbing, got)
        # From here on, if this process dies, the reaper removes its VIP claims.
        reaper = await asyncio.to_thread(Reaper.start, self.plumbing.spec)
        self._reaper = reaper
        try:
            if got is None:
                await asyncio.to_thread(self.plumbing.setup)
        except BaseException:
            await asyncio.to_thread(reaper.disarm)
            raise
        # ... and puts back the sysctls setup changed.
        await asyncio.to_thread(reaper.tell_sysctls, self.plumbing.sysctl_changes)
        if got is not None and self.plumbing.vips != self.plumbing.spec.vips:
            # VIPs lvsadm added to the daemon taken over from: guarded too.
            await asyncio.to_thread(reaper.tell_vips, self.plumbing.vips)
        try:
            self.offload.start(
                self.cfg.offload,
                self.plumbing.public_iface,
                self.plumbing.private_iface,
                self.table.max_conns,
                serving=self._serving,
            )
            await self._wait_links_resolved(LINK_START_WAIT_S)
            # Before the first packet is read: a restored connection is never seen as new.
            if got is None and self.pulse is None:
                await asyncio.to_thread(
                    snapshot.restore_latest, self.table, self.ipvs, self.cfg, now_ms()
                )
            elif got is None:
                # With a peer, the active director's sync is the table's source: this one
                # starts as standby and is sent the whole table (a snapshot is older).
                log.info("failover: not restoring a snapshot; the table comes by sync")
            else:
                from director.daemon import takeover  # noqa: PLC0415

                takeover.restore_handed(self.table, self.ipvs, self.nanny, self.pulse, got)
            self._fd = self.plumbing.tun.fd
            readers = [(self._fd, 0)]
            readers += [(t.fd, mark) for mark, t in self.plumbing.fwmark_tuns.items()]
            self._readers = readers
            # A segment of a connection this director does not hold (lost in a restart
            # without a snapshot, or expired): a reset, as the kernel's stack would send.
            self.table.set_report_no_conn(True)
            self.resume_packets()
            try:
                async with asyncio.TaskGroup() as tg:
                    self._tg = tg
                    tg.create_task(self._expiry())
                    tg.create_task(self._refresh_links())
                    tg.create_task(self._estimate())
                    tg.create_task(self.nanny.run())
                    tg.create_task(control.serve())
                    tg.create_task(self.snapshots.run())
                    if self.pulse is not None:
                        tg.create_task(self.pulse.run())
                    if self.group is not None:
                        tg.create_task(self.group.run())
                    if scrapes is not None:
                        tg.create_task(self.console.sample_forever())
                        tg.create_task(scrapes.serve())
                    if (interval := watchdog.interval_from_environment()) is not None:
                        tg.create_task(watchdog.keep_alive(self._notifier, interval))
                    log.info(
                        "serving %d services with the %s fast path (table limit %d, "
                        "%d descriptors: %d probes, %d scrapers, %d control clients at once)",
                        len(self.ipvs.services),
                        fastpath.IMPLEMENTATION,
                        self.table.max_conns,
                        self.budget.nofile,
                        self.budget.probes,
                        self.budget.metrics_clients,
                        self.budget.control_clients,
                    )
                    if got is not None:
                        self._received = None
                        from director.daemon import takeover  # noqa: PLC0415

                        await asyncio.to_thread(takeover.confirm, got)
                    self._notifier.ready(f"{len(self.ipvs.services)} services")
                    await self._stop.wait()
                    if not self._handed_over:  # else the successor is the service now
                        self._notifier.stopping()
                        if self.group is not None:  # withdraw, let the flows move, then stop
                            await self.group.drain(self.cfg.drain_timeout)
                    control.close(unlink=not self._handed_over)
                    raise _Stopped
            except* _Stopped:
                pass
            finally:
                self._tg = None
                self.pause_packets()
                if self.cfg.snapshot_interval and not self._handed_over:
                    # The freshest state for the next start (a restart, an upgrade).
                    try:
                        await self.snapshots.write_once()
                    except Exception:
                        log.exception("the last snapshot failed")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.offload.stop(detach=not self._handed_over)
            try:
                if not self._handed_over:
                    await asyncio.to_thread(self.plumbing.teardown)
            finally:
                await asyncio.to_thread(reaper.disarm)
                self.links.close()
                if self._tunnel_sock is not None:
                    self._tunnel_sock.close()
            log.info("stopped; %s", "handed over" if self._handed_over else "plumbing removed")

    # --- hot takeover (director.daemon.takeover) ----------------------------------------

    async def _hand_over(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: dict[str, object]
    ) -> None:
        from director.daemon import takeover  # noqa: PLC0415  (only when asked: footprint)

        await takeover.hand_over(self, reader, writer, req)

    @property
    def serving_packets(self) -> bool:
        return bool(self._readers) and not self._handed_over and self._tg is not None

    def clock(self) -> int:
        return now_ms()

    def pause_packets(self) -> None:
        """Stop reading the TUNs: packets wait in their queues."""
        loop = asyncio.get_running_loop()
        for fd, _ in self._readers:
            loop.remove_reader(fd)

    def resume_packets(self) -> None:
        loop = asyncio.get_running_loop()
        for fd, mark in self._readers:
            loop.add_reader(fd, self._on_readable, fd, mark)

    def listener_fds(self) -> list[tuple[str, int]]:
        return [(name, fd) for name, fd in self._listeners if fd >= 0]

    def failover_role(self) -> str | None:
        return None if self.pulse is None else self.pulse.role.name

    def handed_over(self, pid: int) -> None:
        """Daemon ``pid`` serves now: stop, leaving the plumbing and the socket to it (and
        telling systemd, when it runs us, that ``pid`` is the service's main process)."""
        if pid > 0:
            self._notifier.send(f"MAINPID={pid}")
        self._handed_over = True
        self._readers = []
        self._stop.set()

    def reload(self) -> None:
        """SIGHUP: apply the configuration file's changes (director.daemon.reload); a broken
        file changes nothing. While the daemon runs, the file is read and checked in a
        worker thread and the changes applied in slices (``_reload``), so that a big reload
        never holds up the packets; a SIGHUP during a reload runs another after it."""
        if self.config_path is None:
            log.warning("reload: no configuration file to re-read")
            return
        if self._tg is None:
            self._notifier.reloading()
            reload.reload_file(
                self.config_path,
                self.cfg,
                self.plumbing.spec,
                lambda cfg: plumbing_spec(cfg, self.plumbing.spec.tun),
                self._apply_config,
            )
            self._notifier.ready(f"{len(self.ipvs.services)} services")
            return
        if self._reloading:
            self._reload_again = True
            return
        self._reloading = True
        self._tg.create_task(self._reload(self.config_path))

    async def _reload(self, path: Path) -> None:
        tun = self.plumbing.spec.tun
        try:
            while True:
                self._reload_again = False
                self._notifier.reloading()
                running = self.cfg
                cfg = await asyncio.to_thread(
                    reload.prepare, path, self.plumbing.spec, lambda c: plumbing_spec(c, tun)
                )
                if cfg is not None:
                    # Pure work on immutable configurations: off the loop too.
                    events, wanted = await asyncio.to_thread(_plan, running, cfg)
                    if self.cfg is not running:  # a failover sync got in meanwhile
                        events = reload.diff(self.cfg, cfg)
                    changes = await self._apply_config_sliced(cfg, wanted, events)
                    reload.finish(path, running, cfg, changes)
                self._notifier.ready(f"{len(self.ipvs.services)} services")
                if not self._reload_again:
                    return
        finally:
            self._reloading = False

    def _apply_config(self, cfg: DirectorConfig) -> int:
        """Run ``cfg`` from now on: its differences from ``self.cfg`` applied as events,
        then nanny's watch list; connections kept. Returns the number of events."""
        events = reload.diff(self.cfg, cfg)
        self.admin.drain_timeout = cfg.drain_timeout
        self.ipvs.app_ports = frozenset(cfg.ftp_ports)
        for event in events:
            self.apply(event)
        self._configured(cfg)
        return len(events)

    async def _apply_config_sliced(
        self,
        cfg: DirectorConfig,
        wanted: dict[TargetId, Target] | None = None,
        events: list[ConfigEvent] | None = None,
    ) -> int:
        """``_apply_config`` letting the event loop run every ``SLICE_S`` seconds of work
        (a step is one service with its destinations, or one probe target); ``wanted``
        and ``events`` may come precomputed (``wanted_targets(cfg)``,
        ``reload.diff(self.cfg, cfg)``)."""
        if events is None:
            events = reload.diff(self.cfg, cfg)
        self.admin.drain_timeout = cfg.drain_timeout
        deadline = time.perf_counter() + SLICE_S

        async def pace() -> None:
            nonlocal deadline
            if time.perf_counter() >= deadline:
                await asyncio.sleep(control.PAUSE_S)
                deadline = time.perf_counter() + SLICE_S

        for event in events:
            self.apply(event)
            await pace()
        self.admin.set_timeouts(cfg.tcp_timeout, cfg.tcpfin_timeout, cfg.udp_timeout)
        for _ in self.nanny.reconfigure_steps(cfg, wanted or wanted_targets(cfg)):
            await pace()
        self.cfg = cfg
        return len(events)

    def _configured(self, cfg: DirectorConfig) -> None:
        self.admin.set_timeouts(cfg.tcp_timeout, cfg.tcpfin_timeout, cfg.udp_timeout)
        self.nanny.reconfigure(cfg)
        self.cfg = cfg

    def apply(self, event: ConfigEvent) -> None:
        """The single writer of configuration changes to the service layer."""
        reload.apply_event(self.admin, event)

    def _take_cfg(self, cfg: DirectorConfig) -> bool:
        """Serve the active director's services (a standby's configuration sync).

        Applied as a reload is (connections kept); False, logged, if they do not build
        or need a firewall mark this director's plumbing does not steer.
        """
        try:
            reload.check_buildable(cfg)
            missing = set(plumbing_spec(cfg).fwmarks) - set(self.plumbing.spec.fwmarks)
            if missing:
                raise ConfigError(
                    f"firewall marks {', '.join(map(str, sorted(missing)))} have no TUN here; "
                    "that needs a restart"
                )
        except ConfigError as e:
            log.error("failover: the active director's services do not build here: %s", e)
            return False
        self._apply_config(cfg)
        return True

    async def _expiry(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_INTERVAL_S)
            now = now_ms()
            self.offload.fold(now)
            self.ipvs.expire(now)
            # A reload's removed reals: deleted once drained (or at their deadline).
            self.admin.expire_drains(now)

    # --- VIPs added and removed by lvsadm (Admin's VipHook) ------------------------------

    def vip_added(self, vaddr: int) -> None:
        """An address gets its first service: route it into the TUN (and answer ARP for it
        when it is on the public subnet); refuses a local address of this director.

        Called by a control command on the loop's thread; the netlink work runs in a
        worker thread, which the loop waits for (a few milliseconds, once per VIP).
        """
        vip = IPv4Address(vaddr)
        if vip in self.plumbing.vips:
            return
        try:
            _blocking(self.plumbing.add_vip, vip)
        except TunError as e:
            raise VipRefused(str(e)) from None
        self.vips.add(vip.packed)
        if self._reaper is not None:
            self._reaper.tell_vips(self.plumbing.vips)

    def vip_removed(self, vaddr: int) -> None:
        """An address lost its last service: stop routing and answering ARP for it (only
        for an address lvsadm added; the configuration's stay until the daemon stops)."""
        vip = IPv4Address(vaddr)
        if vip in self.plumbing.spec.vips or vip not in self.plumbing.vips:
            return
        _blocking(self.plumbing.remove_vip, vip)
        self.vips.discard(vip.packed)
        if self._reaper is not None:
            self._reaper.tell_vips(self.plumbing.vips)

    def _routed_addrs(self) -> dict[int, IPv4Address]:
        """Dest slot -> address of every linked direct-routing destination."""
        return {d.slot: IPv4Address(d.addr) for d in self.ipvs.iter_dests() if d.fwd == DROUTE}

    def _tunnelled_addrs(self) -> dict[int, IPv4Address]:
        return {d.slot: IPv4Address(d.addr) for d in self.ipvs.iter_dests() if d.fwd == TUNNEL}

    async def _update_links(self) -> bool:
        """Read the direct-routing reals' links from the kernel (in a thread) and hand them
        to the fast path; True when every one is known."""
        tunnelled = self._tunnelled_addrs()
        if tunnelled:
            mtus = await asyncio.to_thread(
                lambda: {slot: self.links.mtu(addr) for slot, addr in tunnelled.items()}
            )
            self._tunnel_mtu = {slot: mtu for slot, mtu in mtus.items() if mtu is not None}
            self._tunnels_ready()
        wanted = self._routed_addrs()
        if not wanted and not self._linked:
            return True
        found = await asyncio.to_thread(
            lambda: {slot: self.links.resolve(addr) for slot, addr in wanted.items()}
        )
        for slot, link in found.items():
            value = (-1, 0, 0) if link is None else (link.fd, link.mac, link.src_mac)
            if self._linked.get(slot) != value:
                self.table.set_dest_link(slot, *value)
                self._linked[slot] = value
                if link is not None:
                    log.info(
                        "direct routing: %s is %s on %s",
                        wanted[slot],
                        _mac_text(link.mac),
                        link.iface,
                    )
        for slot in set(self._linked) - set(found):
            del self._linked[slot]
        return all(link is not None for link in found.values())

    def _tunnels_ready(self) -> None:
        """The raw IPIP socket, and a TUN without offloads (segments, full checksums)."""
        if self._tunnel_sock is not None:
            return
        self._tunnel_sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IPIP)
        # The outer header may be fragmented (a DF packet that does not fit is answered
        # with frag-needed before it gets here).
        self._tunnel_sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
        self._tunnel_sock.setblocking(False)
        if self.plumbing.tun.offloads:
            for t in (self.plumbing.tun, *self.plumbing.fwmark_tuns.values()):
                fcntl.ioctl(t.fd, TUNSETOFFLOAD, 0)
            log.info("tunnel: TUN offloads off (tunnelled packets are sent whole)")

    def _tunnel(self, buf: bytearray) -> None:
        """Encapsulate a TUNNEL packet to its real's address (ip_vs_tunnel_xmit): IPIP
        through the kernel's raw socket, or frag-needed to the client when it has DF and
        would not fit the real's link once encapsulated."""
        sock = self._tunnel_sock
        slot = self.table.dest_of(buf, fastpath.VNET_HDR_LEN)
        if sock is None or slot < 0 or buf[1] != 0:  # buf[1]: a GSO super-packet
            self._counts["tunnel_drops"] += 1
            return
        pkt = memoryview(buf)[fastpath.VNET_HDR_LEN :]
        mtu = self._tunnel_mtu.get(slot, DEFAULT_TUNNEL_MTU)
        if pkt[6] & 0x40 and len(pkt) + 20 > mtu:
            err = icmp.frag_needed(bytes(pkt[:28]), mtu - 20)
            if err is not None:
                self._counts["frag_needed"] += 1
                self._write(bytearray(_VNET_PLAIN + err))
            return
        if buf[0] & fastpath.VNET_F_NEEDS_CSUM:
            _complete_checksum(buf)
        daddr = self.table.dest_buffer()[slot * fastpath.DEST_FIELDS + fastpath.DEST_ADDR]
        try:
            sock.sendto(pkt, (str(IPv4Address(daddr)), 0))
        except OSError:
            self._counts["tx_errors"] += 1

    async def _wait_links_resolved(self, limit_s: float) -> None:
        # Polled: the kernel's neighbour table has no event this loop could wait on cheaply.
        for _ in range(max(1, int(limit_s / 0.05))):
            if await self._update_links():
                return
            await asyncio.sleep(0.05)

    async def _refresh_links(self) -> None:
        while True:
            await asyncio.sleep(LINK_REFRESH_S)
            await self._update_links()

    async def _estimate(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL_S)
            self.estimator.sample(self._counter_sets())

    def _packets_in(self) -> int:
        """Packets forwarded to the reals so far, over every service."""
        return sum(five[1] for key, five in self._counter_sets() if key[0] == "svc")

    def _counter_sets(self) -> list[tuple[tuple[str, int], tuple[int, int, int, int, int]]]:
        sbuf = self.table.svc_buffer()
        dbuf = self.table.dest_buffer()
        sets = []
        for svc in self.ipvs.services.values():
            b = svc.index * fastpath.SVC_FIELDS + fastpath.SVC_CONNS
            sets.append((("svc", svc.index), _five(sbuf, b)))
            for d in svc.dests:
                b = d.slot * fastpath.DEST_FIELDS + fastpath.DEST_CONNS
                sets.append((("dest", d.slot), _five(dbuf, b)))
        return sets

    # --- the packet loop -------------------------------------------------------------

    def _on_readable(self, fd: int, fwmark: int) -> None:
        """Drain TUN ``fd``, whose packets carry firewall mark ``fwmark`` (0: none)."""
        if self.pulse is not None and self.pulse.role is not Role.MASTER:
            self._discard(fd)
            return
        now = now_ms()
        pending = self._pending
        self.table.drain(fd, now, pending, write_fd=self._fd)
        if pending:
            counts = self._counts
            decided = counts["decided"]
            for verdict, buf in pending:
                # drain's verdicts hold until a connection is inserted; from then on a NEW
                # packet may belong to it (a retransmitted SYN), so it is classified again.
                if verdict == fastpath.NEW and counts["decided"] != decided:
                    verdict = self.table.process_vnet(buf, now)
                self._decide(verdict, buf, now, fwmark)
            pending.clear()
        self.offload.pump()

    def _serving(self) -> bool:
        return self.pulse is None or self.pulse.role is Role.MASTER

    def _discard(self, fd: int) -> None:
        """A standby forwards nothing: what reaches its TUNs (a client or a real that still
        holds its MAC for a VIP or nat_router) is dropped and counted; the active
        director's gratuitous ARPs move the sender (docs/failover.md)."""
        for _ in range(_DISCARD_BATCH):
            try:
                os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                return
            self._counts["standby"] += 1

    def _decide(self, verdict: int, buf: bytearray, now: int, fwmark: int = 0) -> None:
        """A packet the fast path could not forward alone, with its current verdict: schedule,
        answer, reassemble, or write it out (FORWARD)."""
        if verdict == fastpath.NEW:
            verdict = self._new_connection(buf, now, fwmark)
        elif verdict == fastpath.FRAGMENT:
            whole = self.reassembler.add(bytes(buf[fastpath.VNET_HDR_LEN :]), now)
            if whole is None:
                return
            buf = bytearray(_VNET_PLAIN + whole)
            verdict = self.table.process_vnet(buf, now)
            if verdict == fastpath.NEW:
                verdict = self._new_connection(buf, now, fwmark)
            elif verdict == fastpath.LOCAL:  # a fragmented echo request to a VIP
                self._local(buf)
                return
        elif verdict == fastpath.LOCAL:
            self._local(buf)
            return
        elif verdict == fastpath.DROP_NO_CONN:
            self._reset(buf, fwmark)
            return
        # ROUTE: the fast path already sent it to a direct-routing real's link.
        if verdict == fastpath.APP:
            verdict = fastpath.FORWARD
            buf = self.ftp.handle(buf, now)
        if verdict == fastpath.FORWARD:
            self._write(buf)
        elif verdict == fastpath.TUNNEL:
            self._tunnel(buf)

    def _new_connection(self, buf: bytearray, now: int, fwmark: int) -> int:
        """Schedule and insert the connection of a packet the table answered NEW, then
        rewrite the packet; the verdict to act on."""
        proto, saddr, daddr, sport, dport = _FLOW.unpack_from(buf, fastpath.VNET_HDR_LEN)
        self._counts["decided"] += 1
        svc = self.ipvs.find_service(proto, daddr, dport, fwmark)
        if svc is None:
            self._counts["no_service"] += 1
            self._unreachable(buf)
            return fastpath.DROP_NO_CONN
        full = self.ipvs.no_memory
        handle = self.ipvs.new_connection(proto, saddr, sport, daddr, dport, now, svc)
        if handle is None:
            if self.ipvs.no_memory != full:
                # The table is full of entries past their handshake: dropped silently, as
                # the kernel does, and counted once (DROP_TABLE_FULL, by the table).
                self._counts["table_full"] += 1
                return fastpath.DROP_TABLE_FULL
            self._counts["no_dest"] += 1
            self._log_no_dest(svc)
            self._unreachable(buf)
            return fastpath.DROP_NO_CONN
        verdict = int(self.table.process_vnet(buf, now))
        self.ipvs.one_packet_done(svc, proto, handle)
        return verdict

    def _log_no_dest(self, svc: VirtualService) -> None:
        # Rate-limited (1, 2, 4, 8... times): a service without destinations would
        # otherwise log once per SYN.
        n = self._no_dest[str(svc)] = self._no_dest[str(svc)] + 1
        if n & (n - 1) == 0:
            log.warning("%s: %s - no destination available (%d times)", svc.sched_name, svc, n)

    def _local(self, buf: bytearray) -> None:
        pkt = buf[fastpath.VNET_HDR_LEN :]
        if bytes(pkt[16:20]) in self.vips:
            reply = icmp.echo_reply(pkt)
            if reply is not None:
                self._counts["echo_replies"] += 1
                self._write(bytearray(_VNET_PLAIN + reply))

    def _reset(self, buf: bytearray, fwmark: int) -> None:
        """Answer a TCP segment to a service that matched no connection with a reset.

        The kernel's ip_vs_in lets such a segment (not a SYN, no entry) through to the local
        stack, where the VIP is a local address and no socket has it: the stack answers
        RST and the client learns at once that its connection is gone (docs/operations.md).
        Rate-limited like the ICMP errors; a segment to no service, or from a real, is
        left dropped."""
        proto, _saddr, daddr, _sport, dport = _FLOW.unpack_from(buf, fastpath.VNET_HDR_LEN)
        if proto != 6 or self.ipvs.find_service(proto, daddr, dport, fwmark) is None:
            return
        if not self._reset_limit.allow(now_ms()):
            return
        reply = icmp.tcp_reset(buf[fastpath.VNET_HDR_LEN :])
        if reply is not None:
            self._counts["resets"] += 1
            self._write(bytearray(_VNET_PLAIN + reply))

    def _unreachable(self, buf: bytearray) -> None:
        if not self._icmp_limit.allow(now_ms()):
            return
        err = icmp.port_unreachable(buf[fastpath.VNET_HDR_LEN :])
        if err is not None:
            self._write(bytearray(_VNET_PLAIN + err))

    def _write(self, buf: bytearray) -> None:
        try:
            os.write(self._fd, buf)
        except OSError:
            self._counts["tx_errors"] += 1

    # --- reporting -------------------------------------------------------------------

    def statistics(self) -> DirectorStats:
        drops = dict(self.table.drops())
        for reason, n in self.reassembler.statistics().drops.items():
            drops[f"fragment_{reason}"] = n
        drops["standby"] = self._counts["standby"]
        return DirectorStats(
            implementation=fastpath.IMPLEMENTATION,
            connections=len(self.table),
            max_connections=self.table.max_conns,
            decided=self._counts["decided"],
            no_service=self._counts["no_service"],
            no_dest=self._counts["no_dest"],
            echo_replies=self._counts["echo_replies"],
            drops=dict(drops),
            table_full=self._counts["table_full"],
            evicted_half_open=int(self.table.evictions()),
            icmp_suppressed=self._icmp_limit.suppressed,
            ftp=self.ftp.statistics(),
            snapshot=self.snapshots.statistics(),
            resets=self._counts["resets"],
            offload=self.offload.statistics(),
        )

    def snapshot(self) -> dict[str, object]:
        """Services, destinations and counters as plain data, for the control socket."""
        sbuf = self.table.svc_buffer()
        dbuf = self.table.dest_buffer()
        services = []
        for svc in self.ipvs.services.values():
            base = svc.index * fastpath.SVC_FIELDS
            dests = []
            for d in svc.dests:
                db = d.slot * fastpath.DEST_FIELDS
                dests.append(
                    {
                        "addr": format_addr(d.addr, d.port),
                        "fwd": FWD_NAMES[d.fwd],
                        "weight": d.weight,
                        "active": d.active_conns,
                        "inactive": d.inactive_conns,
                        "persist": d.persist_conns,
                        "conns": dbuf[db + fastpath.DEST_CONNS],
                        "inpkts": dbuf[db + fastpath.DEST_INPKTS],
                        "outpkts": dbuf[db + fastpath.DEST_OUTPKTS],
                        "inbytes": dbuf[db + fastpath.DEST_INBYTES],
                        "outbytes": dbuf[db + fastpath.DEST_OUTBYTES],
                        "rates": asdict(self.estimator.rates(("dest", d.slot))),
                    }
                )
            services.append(
                {
                    "proto": "TCP" if svc.protocol == 6 else "UDP",
                    "addr": format_addr(svc.vaddr, svc.vport),
                    "fwmark": svc.fwmark,
                    "scheduler": svc.sched_name,
                    "flags": sorted(svc.sched_flags),
                    "persistent": svc.timeout,
                    "conns": sbuf[base + fastpath.SVC_CONNS],
                    "inpkts": sbuf[base + fastpath.SVC_INPKTS],
                    "outpkts": sbuf[base + fastpath.SVC_OUTPKTS],
                    "inbytes": sbuf[base + fastpath.SVC_INBYTES],
                    "outbytes": sbuf[base + fastpath.SVC_OUTBYTES],
                    "rates": asdict(self.estimator.rates(("svc", svc.index))),
                    "dests": dests,
                }
            )
        stats = self.statistics()
        return {
            "fastpath": stats.implementation,
            "connections": stats.connections,
            "max_connections": stats.max_connections,
            "decided": stats.decided,
            "no_service": stats.no_service,
            "no_dest": stats.no_dest,
            "echo_replies": stats.echo_replies,
            "table_full": stats.table_full,
            "evicted_half_open": stats.evicted_half_open,
            "icmp_suppressed": stats.icmp_suppressed,
            "resets": stats.resets,
            "drops": stats.drops,
            "reassembly": self.reassembler.statistics().completed,
            "ftp": asdict(self.ftp.statistics()),
            "offload": asdict(stats.offload),
            "services": services,
            "failover": None if self.pulse is None else self.pulse.snapshot(),
            "group": None if self.group is None else self.group.snapshot(),
            "health": self.nanny.snapshot(),
            "snapshots": asdict(self.snapshots.statistics()),
        }


def _plan(
    running: DirectorConfig, cfg: DirectorConfig
) -> tuple[list[ConfigEvent], dict[TargetId, Target]]:
    """A reload's events and nanny's targets: pure, so a worker thread computes them."""
    return reload.diff(running, cfg), wanted_targets(cfg)


class _Stopped(Exception):
    """Ends the TaskGroup after a stop signal."""


def _complete_checksum(buf: bytearray) -> None:
    """Finish a VIRTIO_NET_HDR_F_NEEDS_CSUM packet's L4 checksum (the field holds the
    pseudo-header sum): the packet leaves whole, through a socket with no offload."""
    start = fastpath.VNET_HDR_LEN + int.from_bytes(buf[6:8], "little")
    at = start + int.from_bytes(buf[8:10], "little")
    if at + 2 > len(buf):
        return
    struct.pack_into("!H", buf, at, icmp.checksum(buf[start:]) or 0xFFFF)
    buf[0] &= ~fastpath.VNET_F_NEEDS_CSUM & 0xFF


def _blocking(fn: Callable[[IPv4Address], None], arg: IPv4Address) -> None:
    """Run ``fn(arg)`` in a worker thread and wait: pyroute2's synchronous API runs an
    event loop of its own and cannot run on the loop's thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(fn, arg).result()


def _mac_text(mac: int) -> str:
    return ":".join(f"{b:02x}" for b in mac.to_bytes(6, "big"))


def _five(buf: memoryview, at: int) -> tuple[int, int, int, int, int]:
    """conns, inpkts, outpkts, inbytes, outbytes: consecutive in both buffers."""
    return (buf[at], buf[at + 1], buf[at + 2], buf[at + 3], buf[at + 4])
