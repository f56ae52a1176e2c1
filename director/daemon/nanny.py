"""nanny for lvsd: builds the probes from lvs.cf and applies their events to the table.

``targets(cfg)`` turns every active server of every active virtual service into a
``healthcheck.Target`` (one per service port). ``Nanny`` owns one probe runner per target
and the queue they report on; ``run()`` applies each event to the IPVS service layer,
the only writer for health: a server that fails is removed (``del_dest``: as in the
kernel, the client packets of its connections are dropped from then on, which costs
nothing when the server is dead), or quiesced to weight 0 when the virtual has
``quiesce_server = 1`` so its connections go on; one
that comes back is added (or re-weighted) at the weight the tracker gives, which ramps
from weight/32; a ``sorry_server`` is added as a destination while no real server of
the service is in, and removed when one returns. Every change is logged once at INFO.

After a reload has changed the service layer, ``reconfigure(cfg)`` brings the watch
list to the new configuration: new servers are probed (and start in, as the reload
added them), removed ones are no longer probed, and a server whose probe or tracker
settings changed keeps its health and gets the new settings; its configured weight is
nanny's to apply, since only nanny knows whether the server is out, quiesced or
ramping. Semantics: docs/nanny.md. Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from ipaddress import IPv4Address
from typing import Any

from director.config import DirectorConfig, LoadMonitor, Protocol, VirtualConfig
from director.ipvs.service import IPVS, IPVSError, VirtualService, format_addr
from director.stats import NannyStats, TargetHealth
from healthcheck.events import Event, HealthChanged, WeightChanged
from healthcheck.runner import Runner, RunnerStats
from healthcheck.specs import (
    AgentSpec,
    LoadSpec,
    ProbeKind,
    ProbeSpec,
    ServiceKey,
    Target,
    TrackerSpec,
)
from healthcheck.tracker import Health, Tracker

log = logging.getLogger(__name__)

PROTOCOLS = {Protocol.TCP: 6, Protocol.UDP: 17}
# nanny adjusted weights from the load every 20 seconds.
LOAD_INTERVAL_S = 20.0
# A reading (``ssh REAL uptime``: a connection, a key exchange, a command) may take this
# long; it is not a health probe, so the probe's short timeout does not bound it.
LOAD_TIMEOUT_S = 10.0
# nanny's own test when port 80 has no send, expect or program.
HTTP_PORT = 80


def probe_kind(v: VirtualConfig, vport: int) -> ProbeKind:
    """The probe ``probe = auto`` means for ``v`` on ``vport``: nanny's choice.

    A program if ``send_program`` is set; send/expect (over UDP for a UDP service) if
    ``send`` or ``expect`` is; an HTTP GET on port 80; else a UDP exchange for a UDP
    service and a TCP connect otherwise.
    """
    if v.probe != "auto":
        return ProbeKind(v.probe)
    udp = v.protocol is Protocol.UDP
    if v.send_program:
        return ProbeKind.PROGRAM
    if v.send is not None or v.expect is not None:
        return ProbeKind.UDP if udp else ProbeKind.SEND_EXPECT
    if vport == HTTP_PORT and not udp:
        return ProbeKind.HTTP
    return ProbeKind.UDP if udp else ProbeKind.TCP


def probe_interval(v: VirtualConfig) -> int:
    """Seconds between probes: ``probe_interval``, or ``timeout`` as nanny's was."""
    return v.probe_interval or v.timeout


def targets(cfg: DirectorConfig) -> list[Target]:
    """One target per (service, active real server) of every active virtual service."""
    out: dict[tuple[ServiceKey, str, int], Target] = {}
    for v in cfg.virtuals:
        if not v.active:
            continue
        interval = probe_interval(v)
        limit = float(min(v.timeout, interval))
        for vport in v.ports:
            key = ServiceKey(PROTOCOLS[v.protocol], str(v.address), vport, v.fwmark)
            for s in v.servers:
                if not s.active:
                    continue
                # The destination's port names it; the probe goes to the port it serves.
                host, port = str(s.address), s.dport(vport, v.fwmark)
                probe = ProbeSpec(
                    kind=probe_kind(v, vport),
                    host=host,
                    port=s.dport(vport),
                    timeout=limit,
                    send=v.send,
                    expect=v.expect,
                    use_regex=v.use_regex,
                    program=v.send_program,
                    http_path=v.http_path,
                    http_host=v.http_host,
                    http_status=v.http_status,
                    dns_query=v.dns_query,
                )
                load = None
                if v.load_monitor is not LoadMonitor.NONE:
                    load = LoadSpec(
                        load_argv(cfg, v.load_monitor, host), LOAD_INTERVAL_S, LOAD_TIMEOUT_S
                    )
                agent = None
                if v.agent_port:
                    agent = AgentSpec(
                        host, v.agent_port, float(v.agent_interval), float(v.agent_interval)
                    )
                tracker = TrackerSpec(timeout=v.timeout, reentry=v.reentry, weight=s.weight)
                out[(key, host, port)] = Target(
                    key, host, port, probe, tracker, float(interval), load, agent
                )
    return list(out.values())


def load_argv(cfg: DirectorConfig, monitor: LoadMonitor, host: str) -> tuple[str, ...]:
    """nanny's load command: ``rsh|ssh HOST uptime``, ``rup HOST`` or ``ruptime HOST``."""
    if monitor is LoadMonitor.UPTIME:
        return (cfg.rsh_command.value, host, "uptime")
    return (monitor.value, host)


TargetId = tuple[ServiceKey, str, int]


def target_id(t: Target) -> TargetId:
    """What a target watches, whatever its settings: (service, real address, real port)."""
    return (t.key, t.addr, t.port)


def wanted_targets(cfg: DirectorConfig) -> dict[TargetId, Target]:
    """Every target ``cfg`` asks nanny to watch, by id. Pure: any thread."""
    return {target_id(t): t for t in targets(cfg)}


@dataclass(slots=True)
class _ServiceState:
    svc: VirtualService
    virtual: VirtualConfig
    vport: int
    up: set[tuple[int, int]]
    sorry: tuple[int, int] | None = None


@dataclass(slots=True)
class _Watch:
    """One target's runner and, while nanny runs, the task driving it."""

    target: Target
    runner: Runner
    task: asyncio.Task[None] | None = None

    @property
    def tracker(self) -> Tracker:
        return self.runner.trackers[self.target]


class Nanny:
    """The probes of ``cfg`` and the bridge that applies their events to ``ipvs``."""

    def __init__(self, cfg: DirectorConfig, ipvs: IPVS, *, max_probes: int = 1024) -> None:
        self.cfg = cfg
        self.ipvs = ipvs
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        # Shared by every target's runner: at most this many probes at once.
        self._limit = asyncio.Semaphore(max_probes)
        self._watches = {target_id(t): self._watch(t) for t in targets(cfg)}
        self._services: dict[ServiceKey, _ServiceState] = {}
        for key, v, vport, svc in self._configured(cfg):
            self._services[key] = _ServiceState(
                svc, v, vport, {(d.addr, d.port) for d in svc.dests}
            )
        self._counts: Counter[str] = Counter()
        self._retired: Counter[str] = Counter()
        self._tg: asyncio.TaskGroup | None = None

    def _watch(self, target: Target) -> _Watch:
        return _Watch(target, Runner([target], self.queue, limit=self._limit))

    def _configured(
        self, cfg: DirectorConfig
    ) -> Iterator[tuple[ServiceKey, VirtualConfig, int, VirtualService]]:
        for v in cfg.virtuals:
            if not v.active:
                continue
            for vport in v.ports:
                key = ServiceKey(PROTOCOLS[v.protocol], str(v.address), vport, v.fwmark)
                svc = self.ipvs.get_service(key.protocol, int(v.address), vport, v.fwmark)
                yield key, v, vport, svc

    async def run(self) -> None:
        """Probe and apply until cancelled."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for w in self._watches.values():
                    self._start(w)
                tg.create_task(self._apply_events())
        finally:
            self._tg = None

    def _start(self, w: _Watch) -> None:
        if self._tg is not None:
            w.task = self._tg.create_task(w.runner.run(), name=f"nanny {w.target}")

    def _stop(self, w: _Watch) -> None:
        # A cancelled child ends alone: the TaskGroup goes on with the others.
        if w.task is not None:
            w.task.cancel()
            w.task = None
        self._retired.update(
            {k: v for k, v in asdict(w.runner.statistics()).items() if k != "targets"}
        )

    def reconfigure(self, cfg: DirectorConfig) -> None:
        """Watch what ``cfg`` asks for; the service layer already holds its services.

        Called once per reload, after the director applied the configuration's
        differences. Targets no longer configured stop; new ones start, in service at
        their configured weight; a target whose settings changed keeps its tracker
        (health, ramp, agent state) with the new settings, and a new configured weight
        reaches the table at once when the server is in and not ramping.
        """
        for _ in self.reconfigure_steps(cfg, wanted_targets(cfg)):
            pass

    def reconfigure_steps(
        self, cfg: DirectorConfig, wanted: dict[TargetId, Target]
    ) -> Iterator[None]:
        """``reconfigure`` as steps (a yield per target started or changed) for a caller
        that lets the event loop run between them; ``wanted`` is ``wanted_targets(cfg)``,
        which any thread may compute. The steps must be run to the end."""
        for tid in [tid for tid in self._watches if tid not in wanted]:
            self._stop(self._watches.pop(tid))
        added: set[TargetId] = set()
        retuned: list[_Watch] = []
        for tid, t in wanted.items():
            old = self._watches.get(tid)
            if old is None:
                added.add(tid)
                self._watches[tid] = w = self._watch(t)
                self._start(w)
                yield
            elif old.target != t:
                tracker = old.tracker
                _retune(tracker, old.target, t)
                self._stop(old)
                self._watches[tid] = w = self._watch(t)
                w.runner.trackers = {t: tracker}
                self._start(w)
                retuned.append(w)
                yield
        before, self._services = self._services, {}
        # Grouped once: a lookup per service, not a walk of every added target.
        added_to: dict[ServiceKey, set[tuple[int, int]]] = {}
        for k, addr, port in added:
            added_to.setdefault(k, set()).add((int(IPv4Address(addr)), port))
        for key, v, vport, svc in self._configured(cfg):
            old_state = before.get(key)
            new_here = added_to.get(key, set())
            if old_state is None:
                self._services[key] = _ServiceState(svc, v, vport, new_here)
                continue
            keep = {(a, p) for a, p in old_state.up if (key, str(IPv4Address(a)), p) in wanted}
            self._services[key] = _ServiceState(svc, v, vport, keep | new_here, old_state.sorry)
        self.cfg = cfg
        for w in retuned:
            self._reweigh(w)
        for state in self._services.values():
            self._sorry(state)
        log.info("nanny: watching %d real servers", len(self._watches))

    def _reweigh(self, w: _Watch) -> None:
        state = self._services.get(w.target.key)
        tracker = w.tracker
        if state is None or not tracker.in_service:
            return
        addr = int(IPv4Address(w.target.addr))
        weight = tracker.wanted_weight
        if weight == tracker.weight:
            return
        tracker.weight = weight
        if (addr, w.target.port) in state.up and state.svc.find_dest(addr, w.target.port):
            state.svc.edit_dest(addr, w.target.port, weight=weight)
            self._counts["weight_changes"] += 1
            log.info("nanny: %s weight %d: configured weight changed", w.target, weight)

    async def _apply_events(self) -> None:
        while True:
            self.apply(await self.queue.get())

    def apply(self, event: Event) -> None:
        """Apply one event to the service layer (the single writer for health).

        An event of a target no longer watched (queued before a reload) is dropped.
        """
        state = self._services.get(event.key)
        if state is None or (event.key, event.addr, event.port) not in self._watches:
            return
        addr = int(IPv4Address(event.addr))
        name = f"{state.svc} -> {format_addr(addr, event.port)}"
        match event:
            case HealthChanged(up=False):
                self._take_out(state, addr, event.port)
                how = "quiesced (weight 0)" if state.virtual.quiesce_server else "removed"
                log.info(
                    "nanny: %s down, %s: %s probe: %s (after %.1fs)",
                    name,
                    how,
                    event.probe,
                    event.reason,
                    event.duration,
                )
            case HealthChanged(up=True):
                self._put_back(state, addr, event.port, event.weight)
                log.info(
                    "nanny: %s up at weight %d: %s probe: %s (after %.1fs)",
                    name,
                    event.weight,
                    event.probe,
                    event.reason,
                    event.duration,
                )
            case WeightChanged():
                if (addr, event.port) in state.up and state.svc.find_dest(addr, event.port):
                    state.svc.edit_dest(addr, event.port, weight=event.weight)
                    self._counts["weight_changes"] += 1
                    log.info("nanny: %s weight %d: %s", name, event.weight, event.reason)
        self._sorry(state)

    def _take_out(self, state: _ServiceState, addr: int, port: int) -> None:
        state.up.discard((addr, port))
        self._counts["taken_out"] += 1
        if state.svc.find_dest(addr, port) is None:
            return
        if state.virtual.quiesce_server:
            state.svc.edit_dest(addr, port, weight=0)
        else:
            state.svc.del_dest(addr, port)

    def _put_back(self, state: _ServiceState, addr: int, port: int, weight: int) -> None:
        state.up.add((addr, port))
        self._counts["put_back"] += 1
        if state.sorry == (addr, port):
            state.sorry = None  # the sorry server is also a real: it stays, as a real
        if state.svc.find_dest(addr, port) is not None:
            state.svc.edit_dest(addr, port, weight=weight)
            return
        server = next((s for s in state.virtual.servers if int(s.address) == addr), None)
        u, lo = (server.u_threshold, server.l_threshold) if server else (0, 0)
        state.svc.add_dest(addr, port, weight, u, lo)

    def _sorry(self, state: _ServiceState) -> None:
        sorry = state.virtual.sorry_server
        if sorry is None:
            return
        if not state.up and state.sorry is None:
            dest = (int(sorry), state.vport)
            if state.svc.find_dest(*dest) is not None:
                return
            try:
                state.svc.add_dest(dest[0], dest[1], 1)
            except IPVSError as e:
                log.warning("nanny: %s: cannot add sorry server %s: %s", state.svc, sorry, e)
                return
            state.sorry = dest
            self._counts["sorry_added"] += 1
            log.info("nanny: %s: no real server up, sorry server %s in", state.svc, sorry)
        elif state.up and state.sorry is not None:
            if state.svc.find_dest(*state.sorry) is not None:
                state.svc.del_dest(*state.sorry)
            state.sorry = None
            self._counts["sorry_removed"] += 1
            log.info("nanny: %s: a real server is back, sorry server %s out", state.svc, sorry)

    def settled(self, since: float) -> bool:
        """Whether every watched real has been probed from ``since`` (monotonic s) on and
        none is passing probes while out, waiting out its reentry: the services are as
        they will stay. A director that rejoins asks for the VIPs only then."""
        return all(w.tracker.settled(since) for w in self._watches.values())

    def statistics(self) -> NannyStats:
        c = self._counts
        runs: Counter[str] = Counter(self._retired)
        for w in self._watches.values():
            runs.update(w.runner.counts)  # raw counts: asdict() per target is too slow
        runs["targets"] = len(self._watches)
        return NannyStats(
            runner=RunnerStats(**{f.name: runs[f.name] for f in fields(RunnerStats)}),
            taken_out=c["taken_out"],
            put_back=c["put_back"],
            weight_changes=c["weight_changes"],
            sorry_added=c["sorry_added"],
            sorry_removed=c["sorry_removed"],
        )

    def health(self) -> tuple[TargetHealth, ...]:
        """Every watched (service, real server): its state and its runner's counts."""
        return tuple(self.iter_health())

    def iter_health(self) -> Iterator[TargetHealth]:
        """``health()`` one target at a time (a caller may yield to the loop between
        them); targets a reload stops meanwhile are skipped."""
        for tid, w in list(self._watches.items()):
            if self._watches.get(tid) is not w:
                continue
            (state,) = w.runner.states()
            t = w.target
            yield TargetHealth(
                t.key, t.addr, t.port, str(t.probe.kind), state, w.runner.statistics()
            )

    def export_health(self) -> list[list[object]]:
        """Each watched target's verdict, for a daemon taking over (``adopt_health``):
        [protocol, vaddr, vport, fwmark, addr, port, health, in service, weight]."""
        out: list[list[object]] = []
        for (key, addr, port), w in self._watches.items():
            t = w.tracker
            k = [key.protocol, key.vaddr, key.vport, key.fwmark]
            out.append([*k, addr, port, str(t.health), t.in_service, t.weight])
        return out

    def adopt_health(self, rows: list[list[Any]]) -> int:
        """Start from the verdicts another daemon had reached (``export_health``), so that
        a real it had taken out stays out until its probes bring it back; returns how many
        targets were taken out. Rows for targets this configuration does not watch are
        ignored."""
        out = 0
        for proto, vaddr, vport, fwmark, addr, port, health, in_service, weight in rows:
            key = ServiceKey(int(proto), str(vaddr), int(vport), int(fwmark))
            w = self._watches.get((key, str(addr), int(port)))
            state = self._services.get(key)
            if w is None or state is None:
                continue
            t = w.tracker
            t.health = Health(str(health))
            t.weight = int(weight)
            t.in_service = bool(in_service)
            if not in_service:
                self._take_out(state, int(IPv4Address(str(addr))), int(port))
                self._sorry(state)
                out += 1
        return out

    def snapshot(self) -> list[dict[str, object]]:
        """Each watched (service, real) as plain data, for the control socket."""
        return [asdict(h.state) for h in self.health()]


def _retune(tracker: Tracker, old: Target, new: Target) -> None:
    """Give ``tracker`` ``new``'s settings, keeping its health and ramp.

    A base weight at or above the old configured weight (ramp done, or raised by the
    load monitor) becomes the new configured weight; a ramp in progress goes on from
    where it is, capped at the new weight.
    """
    tracker.spec = new.tracker
    tracker.probe = str(new.probe.kind)
    was, now = old.tracker.weight, new.tracker.weight
    if was != now:
        tracker.base = now if tracker.base >= was else min(tracker.base, now)
