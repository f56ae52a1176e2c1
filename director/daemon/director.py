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
import logging
import os
import resource
import signal
import struct
import time
from collections import Counter
from dataclasses import asdict, replace
from ipaddress import IPv4Interface
from pathlib import Path

from director.config import MAX_DESTINATIONS, MAX_SERVICES, DirectorConfig, Protocol
from director.daemon import limits, reload
from director.daemon.nanny import Nanny, TargetId, wanted_targets
from director.daemon.pulse import Pulse, failover_settings, wants_failover
from director.daemon.reaper import Reaper
from director.daemon.reload import ConfigEvent
from director.dataplane import fastpath, icmp
from director.dataplane.ftp import FtpHelper
from director.dataplane.plumbing import Plumbing, PlumbingSpec
from director.dataplane.reassembly import Reassembler
from director.errors import ConfigError
from director.ipvs.estimator import INTERVAL_S, RateEstimator
from director.ipvs.service import IPVS, IPVSError, VirtualService, format_addr
from director.ops import control, metrics, watchdog
from director.ops.admin import Admin
from director.ops.console import Console, read_token
from director.ops.control import ControlServer
from director.ops.notify import Notifier
from director.stats import DirectorStats
from failover.events import Role
from healthcheck.specs import Target

log = logging.getLogger(__name__)

PROTOCOLS = {Protocol.TCP: 6, Protocol.UDP: 17}
_VNET_PLAIN = bytes(fastpath.VNET_HDR_LEN)  # no offload flags: a packet we built
# proto, saddr, daddr, sport, dport of a vnet-headed IPv4 packet without options.
_FLOW = struct.Struct("!9xB2xIIHH")
EXPIRY_INTERVAL_S = 1.0
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
                        )
            except IPVSError as e:
                raise ConfigError(f"virtual {v.name}: port {vport}: {e}") from e
    return ipvs


def plumbing_spec(cfg: DirectorConfig, tun: str = "lvs0") -> PlumbingSpec:
    """What the director's namespace needs for ``cfg`` (network = nat only: a servable
    configuration, ``load_config(..., serve=True)``)."""
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
    )


class Director:
    """Composes the fast path, the service layer and the plumbing; runs the loop.

    Event-loop thread only. ``run()`` returns after a stop signal (or ``stop()``)
    once everything it set up is removed.
    """

    def __init__(
        self, cfg: DirectorConfig, *, tun: str = "lvs0", config_path: Path | None = None
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        try:
            self.table = fastpath.ConnTable(cfg.max_connections, MAX_DESTINATIONS, MAX_SERVICES)
        except MemoryError:
            raise ConfigError(
                f"max_connections = {cfg.max_connections}: not enough memory for the "
                "connection table"
            ) from None
        self.ipvs = build_ipvs(cfg, self.table)
        self.budget = limits.budget(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        self.nanny = Nanny(cfg, self.ipvs, max_probes=self.budget.probes)
        failover = failover_settings(cfg) if wants_failover(cfg) else None
        # With failover, Pulse claims the VIPs when this director becomes active.
        spec = plumbing_spec(cfg, tun)
        self.plumbing = Plumbing(spec if failover is None else replace(spec, claim_on_setup=False))
        self.vips = {int(a).to_bytes(4, "big") for a in self.plumbing.spec.vips}
        self.reassembler = Reassembler()
        self.ftp = FtpHelper(self.table)
        self._icmp_limit = icmp.RateLimit()
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
                self.table,
                lambda: self.ipvs,
                self._take_cfg,
                settled=self.nanny.settled,
            )
        )

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        # Listening first, before the host is touched: a busy metrics port or a live
        # daemon's socket is a one-line DirectorError and changes nothing.
        control = ControlServer(
            self.cfg.control_socket,
            self,
            commands=self.admin.commands(),
            max_clients=self.budget.control_clients,
        )
        await control.start()
        scrapes = None
        try:
            if self.cfg.metrics_address is not None:
                scrapes = metrics.MetricsServer(
                    self,
                    self.cfg.metrics_address,
                    max_clients=self.budget.metrics_clients,
                    route=self.console.route,
                )
                await scrapes.start()
            await self._run(control, scrapes)
        finally:
            control.close()
            if scrapes is not None:
                scrapes.close()

    async def _run(self, control: ControlServer, scrapes: metrics.MetricsServer | None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        # pyroute2's synchronous API runs an event loop of its own: netlink work goes
        # to a thread, which has no running loop.
        await asyncio.to_thread(Plumbing.cleanup_stale, self.plumbing.spec)
        # From here on, if this process dies, the reaper removes its VIP claims.
        reaper = await asyncio.to_thread(Reaper.start, self.plumbing.spec)
        try:
            await asyncio.to_thread(self.plumbing.setup)
        except BaseException:
            await asyncio.to_thread(reaper.disarm)
            raise
        # ... and puts back the sysctls setup changed.
        await asyncio.to_thread(reaper.tell_sysctls, self.plumbing.sysctl_changes)
        try:
            self._fd = self.plumbing.tun.fd
            readers = [(self._fd, 0)]
            readers += [(t.fd, mark) for mark, t in self.plumbing.fwmark_tuns.items()]
            for fd, mark in readers:
                loop.add_reader(fd, self._on_readable, fd, mark)
            try:
                async with asyncio.TaskGroup() as tg:
                    self._tg = tg
                    tg.create_task(self._expiry())
                    tg.create_task(self._estimate())
                    tg.create_task(self.nanny.run())
                    tg.create_task(control.serve())
                    if self.pulse is not None:
                        tg.create_task(self.pulse.run())
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
                    self._notifier.ready(f"{len(self.ipvs.services)} services")
                    await self._stop.wait()
                    self._notifier.stopping()
                    control.close()
                    raise _Stopped
            except* _Stopped:
                pass
            finally:
                self._tg = None
                for fd, _ in readers:
                    loop.remove_reader(fd)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            try:
                await asyncio.to_thread(self.plumbing.teardown)
            finally:
                await asyncio.to_thread(reaper.disarm)
            log.info("stopped; plumbing removed")

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
            self.ipvs.expire(now)
            # A reload's removed reals: deleted once drained (or at their deadline).
            self.admin.expire_drains(now)

    async def _estimate(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL_S)
            self.estimator.sample(self._counter_sets())

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
        if verdict == fastpath.APP:
            verdict = fastpath.FORWARD
            buf = self.ftp.handle(buf, now)
        if verdict == fastpath.FORWARD:
            self._write(buf)

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
            "drops": stats.drops,
            "reassembly": self.reassembler.statistics().completed,
            "ftp": asdict(self.ftp.statistics()),
            "services": services,
            "failover": None if self.pulse is None else self.pulse.snapshot(),
            "health": self.nanny.snapshot(),
        }


def _plan(
    running: DirectorConfig, cfg: DirectorConfig
) -> tuple[list[ConfigEvent], dict[TargetId, Target]]:
    """A reload's events and nanny's targets: pure, so a worker thread computes them."""
    return reload.diff(running, cfg), wanted_targets(cfg)


class _Stopped(Exception):
    """Ends the TaskGroup after a stop signal."""


def _five(buf: memoryview, at: int) -> tuple[int, int, int, int, int]:
    """conns, inpkts, outpkts, inbytes, outbytes: consecutive in both buffers."""
    return (buf[at], buf[at + 1], buf[at + 2], buf[at + 3], buf[at + 4])
