"""Reloading lvs.cf in a running director (SIGHUP, ``systemctl reload``) without dropping anything.

``reload_file`` reads and validates the file, refuses it whole when it is broken or
needs a restart (a different set of VIPs, interfaces or nat_router: the plumbing),
checks that the new service table can be built at all on a scratch service layer,
and only then applies the difference to the live one through ``Admin``: services
added and removed, destinations added, re-weighted and removed, scheduler and
persistence changes. Established connections keep their destination throughout: a
removed destination goes to the trash with its connections (ip_vs_ctl.c), and in a
changed service new destinations are linked before old ones are unlinked, so the
scheduler never sees an empty list. Event-loop thread only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from director import fastpath, logsetup
from director.admin import Admin, ServiceSpec
from director.config import DirectorConfig, Protocol, load_config
from director.errors import ConfigError
from director.ipvs import IPVS, IPVSError, format_addr
from director.plumbing import PlumbingSpec

log = logging.getLogger(__name__)

_PROTOCOLS = {Protocol.TCP: 6, Protocol.UDP: 17}
# Settings read only at start-up: a change is noted and waits for a restart.
_RESTART_FIELDS = (
    "max_connections",
    "control_socket",
    "metrics_address",
    "state_dir",
    "heartbeat",
    "heartbeat_port",
    "keepalive",
    "deadtime",
    "primary",
    "backup",
    "backup_active",
)


@dataclass(frozen=True, slots=True)
class DestSpec:
    addr: int
    port: int
    weight: int
    u_threshold: int
    l_threshold: int


@dataclass(frozen=True, slots=True)
class ServiceState:
    """What one service should be: its settings and its destinations in file order."""

    spec: ServiceSpec
    scheduler: str
    flags: frozenset[str]
    timeout: int
    netmask: int
    dests: tuple[DestSpec, ...]


def desired(cfg: DirectorConfig) -> dict[ServiceSpec, ServiceState]:
    """The services ``cfg`` asks for: one per port of each active virtual, active servers only."""
    out: dict[ServiceSpec, ServiceState] = {}
    for v in cfg.virtuals:
        if not v.active:
            continue
        proto = _PROTOCOLS[v.protocol]
        for vport in v.ports:
            spec = (
                ServiceSpec(proto, 0, 0, v.fwmark)
                if v.fwmark
                else ServiceSpec(proto, int(v.address), vport)
            )
            dests = tuple(
                DestSpec(int(s.address), s.dport(vport), s.weight, s.u_threshold, s.l_threshold)
                for s in v.servers
                if s.active
            )
            out[spec] = ServiceState(
                spec,
                v.scheduler,
                frozenset(v.sched_flags),
                v.persistent,
                int(v.pmask),
                dests,
            )
    return out


def _build(ipvs: IPVS, state: ServiceState) -> None:
    s = state.spec
    svc = ipvs.add_service(
        s.protocol,
        s.vaddr,
        s.vport,
        state.scheduler,
        state.flags,
        timeout=state.timeout,
        netmask=state.netmask,
        fwmark=s.fwmark,
    )
    for d in state.dests:
        svc.add_dest(d.addr, d.port, d.weight, d.u_threshold, d.l_threshold)


def check_buildable(cfg: DirectorConfig) -> None:
    """Build ``cfg``'s services on a scratch table; raises ConfigError as a start would."""
    scratch = IPVS(fastpath.ConnTable(16))
    for state in desired(cfg).values():
        try:
            _build(scratch, state)
        except IPVSError as e:
            raise ConfigError(f"{_name(state.spec)}: {e}") from e


def _name(spec: ServiceSpec) -> str:
    if spec.fwmark:
        return f"FWM {spec.fwmark}"
    proto = "TCP" if spec.protocol == 6 else "UDP"
    return f"{proto} {format_addr(spec.vaddr, spec.vport)}"


def apply(admin: Admin, cfg: DirectorConfig) -> int:
    """Bring the live service layer to ``cfg``'s services; returns the number of changes."""
    want = desired(cfg)
    have = {
        ServiceSpec(svc.protocol, svc.vaddr, svc.vport, svc.fwmark): svc
        for svc in admin.ipvs.services.values()
    }
    changes = 0
    for spec, state in want.items():
        svc = have.get(spec)
        if svc is None:
            admin.add_service(spec, state.scheduler, state.flags, state.timeout, state.netmask)
            for d in state.dests:
                admin.add_dest(spec, d.addr, d.port, d.weight, d.u_threshold, d.l_threshold)
            changes += 1
            continue
        wanted = {(d.addr, d.port): d for d in state.dests}
        current = {(d.addr, d.port): d for d in svc.dests}
        for key, d in wanted.items():
            if key not in current:
                admin.add_dest(spec, d.addr, d.port, d.weight, d.u_threshold, d.l_threshold)
                changes += 1
        for key, d in wanted.items():
            cur = current.get(key)
            if cur is not None and (cur.weight, cur.u_threshold, cur.l_threshold) != (
                d.weight,
                d.u_threshold,
                d.l_threshold,
            ):
                admin.edit_dest(spec, d.addr, d.port, d.weight, d.u_threshold, d.l_threshold)
                changes += 1
        for key in current:
            if key not in wanted:
                admin.del_dest(spec, *key)
                changes += 1
        if (svc.sched_name, svc.sched_flags, svc.timeout, svc.netmask) != (
            state.scheduler,
            state.flags,
            state.timeout,
            state.netmask,
        ):
            admin.edit_service(spec, state.scheduler, state.flags, state.timeout, state.netmask)
            changes += 1
    for spec in have:
        if spec not in want:
            admin.del_service(spec)
            changes += 1
    return changes


def _plumbing_key(spec: PlumbingSpec) -> PlumbingSpec:
    # The reals only help find the private interface; new reals on it need nothing.
    return dataclasses.replace(spec, reals=())


def reload_file(
    path: Path,
    running: DirectorConfig,
    admin: Admin,
    running_spec: PlumbingSpec,
    spec_of: Callable[[DirectorConfig], PlumbingSpec],
) -> DirectorConfig:
    """Apply the file at ``path``; returns the configuration now running.

    A file that cannot be read, parsed or built, or that needs new plumbing, is
    refused with an ERROR log line and ``running`` is returned unchanged.
    """
    try:
        cfg = load_config(path)
        if _plumbing_key(spec_of(cfg)) != _plumbing_key(running_spec):
            raise ConfigError(
                f"{path}: the VIPs, interfaces or nat_router changed; that needs a restart"
            )
        check_buildable(cfg)
    except ConfigError as e:
        log.error("reload refused, running configuration kept: %s", e)
        return running
    changes = apply(admin, cfg)
    admin.set_timeouts(cfg.tcp_timeout, cfg.tcpfin_timeout, cfg.udp_timeout)
    if cfg.debug_level != running.debug_level:
        logsetup.set_debug_level(cfg.debug_level)
    later = [f for f in _RESTART_FIELDS if getattr(cfg, f) != getattr(running, f)]
    if later:
        log.warning("reload: %s changed; takes effect at the next start", ", ".join(later))
    log.info("reloaded %s: %d changes, %d services", path, changes, len(admin.ipvs.services))
    return cfg
