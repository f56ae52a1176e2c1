"""nanny for lvsd: builds the probes from lvs.cf and applies their events to the table.

``targets(cfg)`` turns every active server of every active virtual service into a
``healthcheck.Target`` (one per service port). ``Nanny`` owns the probe runner and the
queue it reports on; ``run()`` applies each event to the IPVS service layer, the only
writer: a server that fails is removed (``del_dest``), or quiesced to weight 0 when the
virtual has ``quiesce_server = 1`` so its connections go on; one that comes back is
added (or re-weighted) at the weight the tracker gives, which ramps from weight/32; a
``sorry_server`` is added as a destination while no real server of the service is in,
and removed when one returns. Every change is logged once at INFO. Semantics:
docs/nanny.md. Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address

from director.config import DirectorConfig, LoadMonitor, Protocol, VirtualConfig
from director.ipvs import IPVS, IPVSError, VirtualService, format_addr
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

log = logging.getLogger(__name__)

PROTOCOLS = {Protocol.TCP: 6, Protocol.UDP: 17}
# nanny adjusted weights from the load every 20 seconds.
LOAD_INTERVAL_S = 20.0
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
                host, port = str(s.address), s.dport(vport)
                probe = ProbeSpec(
                    kind=probe_kind(v, vport),
                    host=host,
                    port=port,
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
                    load = LoadSpec(load_argv(cfg, v.load_monitor, host), LOAD_INTERVAL_S, limit)
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


@dataclass(frozen=True, slots=True)
class NannyStats:
    """What nanny did since start: the runner's counts and the changes applied."""

    runner: RunnerStats
    taken_out: int
    put_back: int
    weight_changes: int
    sorry_added: int
    sorry_removed: int


@dataclass(slots=True)
class _ServiceState:
    svc: VirtualService
    virtual: VirtualConfig
    vport: int
    up: set[tuple[int, int]]
    sorry: tuple[int, int] | None = None


class Nanny:
    """The probes of ``cfg`` and the bridge that applies their events to ``ipvs``."""

    def __init__(self, cfg: DirectorConfig, ipvs: IPVS) -> None:
        self.cfg = cfg
        self.ipvs = ipvs
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.runner = Runner(targets(cfg), self.queue)
        self._services: dict[ServiceKey, _ServiceState] = {}
        for v in cfg.virtuals:
            if not v.active:
                continue
            for vport in v.ports:
                key = ServiceKey(PROTOCOLS[v.protocol], str(v.address), vport, v.fwmark)
                svc = ipvs.get_service(key.protocol, int(v.address), vport, v.fwmark)
                up = {(d.addr, d.port) for d in svc.dests}
                self._services[key] = _ServiceState(svc, v, vport, up)
        self._counts: Counter[str] = Counter()

    async def run(self) -> None:
        """Probe and apply until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.runner.run())
            tg.create_task(self._apply_events())

    async def _apply_events(self) -> None:
        while True:
            self.apply(await self.queue.get())

    def apply(self, event: Event) -> None:
        """Apply one event to the service layer (the single writer for health)."""
        state = self._services.get(event.key)
        if state is None:
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

    def statistics(self) -> NannyStats:
        c = self._counts
        return NannyStats(
            runner=self.runner.statistics(),
            taken_out=c["taken_out"],
            put_back=c["put_back"],
            weight_changes=c["weight_changes"],
            sorry_added=c["sorry_added"],
            sorry_removed=c["sorry_removed"],
        )

    def snapshot(self) -> list[dict[str, object]]:
        """Each watched (service, real) as plain data, for the control socket."""
        return [asdict(s) for s in self.runner.states()]
