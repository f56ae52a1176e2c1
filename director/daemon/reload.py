"""Reloading lvs.cf in a running director (SIGHUP, ``systemctl reload``) without dropping anything.

``reload_file`` reads and validates the file, refuses it whole when it is broken or
needs a restart (a different set of VIPs, interfaces or nat_router: the plumbing),
checks that the new service table can be built at all on a scratch service layer,
and only then hands the new configuration to the director. ``diff(old, new)`` turns two
configurations into events (services added, removed and edited; destinations added,
removed and edited), and the director applies each once (``Director.apply``, through
``apply_event`` and ``Admin``), then tells nanny (``Nanny.reconfigure``), which owns
the destinations' weights. Established connections keep their destination throughout.
A removed destination is drained, not deleted at once: IPVS drops the client packets of
connections bound to a deleted destination (ip_vs_in: no longer AVAILABLE), so it is
quiesced (weight 0) now and deleted when it has no active connection left or after the
configuration's drain_timeout (``Admin.drain_dest``, ``Admin.expire_drains`` on the
director's expiry tick). A removed service is deleted at once. In a changed service new
destinations are linked before old ones are unlinked, so the scheduler never sees an
empty list. Event-loop thread only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from director import logsetup
from director.config import DirectorConfig, Protocol, load_config
from director.dataplane import fastpath
from director.dataplane.plumbing import PlumbingSpec
from director.errors import ConfigError
from director.ipvs.service import FWD_OF_NETWORK, IPVS, MASQ, IPVSError, format_addr
from director.ops.admin import Admin, ServiceSpec

log = logging.getLogger(__name__)

_PROTOCOLS = {Protocol.TCP: 6, Protocol.UDP: 17}
# Settings read only at start-up: a change is noted and waits for a restart.
_RESTART_FIELDS = (
    "max_connections",
    "offload",
    "control_socket",
    "metrics_address",
    "console_token_file",
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
    fwd: int = MASQ  # the forwarding method (ipvs.service MASQ, DROUTE)


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
                DestSpec(
                    int(s.address),
                    s.dport(vport, v.fwmark),
                    s.weight,
                    s.u_threshold,
                    s.l_threshold,
                    FWD_OF_NETWORK[cfg.forwarding(s)],
                )
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
        svc.add_dest(d.addr, d.port, d.weight, d.u_threshold, d.l_threshold, fwd=d.fwd)


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


@dataclass(frozen=True, slots=True)
class ServiceAdded:
    """A service new to the configuration, with its destinations."""

    state: ServiceState


@dataclass(frozen=True, slots=True)
class ServiceRemoved:
    spec: ServiceSpec


@dataclass(frozen=True, slots=True)
class ServiceEdited:
    """A service's scheduler, flags or persistence changed."""

    state: ServiceState


@dataclass(frozen=True, slots=True)
class DestAdded:
    spec: ServiceSpec
    dest: DestSpec


@dataclass(frozen=True, slots=True)
class DestRemoved:
    spec: ServiceSpec
    addr: int
    port: int


@dataclass(frozen=True, slots=True)
class DestEdited:
    """A destination's configured weight or thresholds changed."""

    spec: ServiceSpec
    dest: DestSpec


ConfigEvent = ServiceAdded | ServiceRemoved | ServiceEdited | DestAdded | DestRemoved | DestEdited


def diff(old: DirectorConfig, new: DirectorConfig) -> list[ConfigEvent]:
    """The changes that take ``old``'s services to ``new``'s, in the order to apply them.

    Pure: compares two configurations, never the live table, so what nanny did to it
    (servers out, quiesced, ramping) and the operator's lvsadm changes that the new file
    does not touch survive a reload. Within a service, destinations are added before
    others are removed, so its scheduler never sees an empty list; removed services go
    last.
    """
    before = desired(old)
    after = desired(new)
    events: list[ConfigEvent] = []
    for spec, state in after.items():
        was = before.get(spec)
        if was is None:
            events.append(ServiceAdded(state))
            continue
        had = {(d.addr, d.port): d for d in was.dests}
        has = {(d.addr, d.port): d for d in state.dests}
        events += [DestAdded(spec, d) for key, d in has.items() if key not in had]
        events += [DestEdited(spec, d) for key, d in has.items() if key in had and had[key] != d]
        events += [DestRemoved(spec, *key) for key in had if key not in has]
        if (was.scheduler, was.flags, was.timeout, was.netmask) != (
            state.scheduler,
            state.flags,
            state.timeout,
            state.netmask,
        ):
            events.append(ServiceEdited(state))
    events += [ServiceRemoved(spec) for spec in before if spec not in after]
    return events


def apply_event(admin: Admin, event: ConfigEvent) -> None:
    """Apply one configuration change to the live service layer through ``admin``.

    A removed destination is drained (``Admin.drain_dest``), not deleted at once.
    A destination's weight is set when it is added; an edited one keeps its live weight
    here, because nanny owns it (the server may be out, quiesced or ramping) and applies
    the new configured weight in ``Nanny.reconfigure``. A change the live table refuses
    (an operator removed or added the same thing with lvsadm, nanny removed a server
    that was down) is logged and skipped: the rest of the reload still applies.
    """
    try:
        match event:
            case ServiceAdded(state):
                s = state.spec
                admin.add_service(s, state.scheduler, state.flags, state.timeout, state.netmask)
                for d in state.dests:
                    admin.add_dest(s, d.addr, d.port, d.weight, d.u_threshold, d.l_threshold, d.fwd)
            case ServiceRemoved(spec):
                admin.del_service(spec)
            case ServiceEdited(state):
                admin.edit_service(
                    state.spec, state.scheduler, state.flags, state.timeout, state.netmask
                )
            case DestAdded(spec, d):
                settings = (d.weight, d.u_threshold, d.l_threshold)
                # Configured again while draining: it stays, with its weight back.
                if admin.undrain_dest(spec, d.addr, d.port, *settings) is None:
                    admin.add_dest(spec, d.addr, d.port, *settings, d.fwd)
            case DestRemoved(spec, addr, port):
                if admin.get(spec).find_dest(addr, port) is not None:
                    admin.drain_dest(spec, addr, port)
            case DestEdited(spec, d):
                if admin.get(spec).find_dest(d.addr, d.port) is not None:
                    admin.edit_dest(spec, d.addr, d.port, None, d.u_threshold, d.l_threshold, d.fwd)
    except IPVSError as e:
        log.warning("reload: %s: %s skipped: %s", _name(event_spec(event)), type(event).__name__, e)


def event_spec(event: ConfigEvent) -> ServiceSpec:
    """The service an event is about."""
    match event:
        case ServiceAdded(state) | ServiceEdited(state):
            return state.spec
        case ServiceRemoved(spec) | DestAdded(spec) | DestRemoved(spec) | DestEdited(spec):
            return spec


def _plumbing_key(spec: PlumbingSpec) -> PlumbingSpec:
    # The reals only help find the private interface; new reals on it need nothing.
    return dataclasses.replace(spec, reals=())


def reload_file(
    path: Path,
    running: DirectorConfig,
    running_spec: PlumbingSpec,
    spec_of: Callable[[DirectorConfig], PlumbingSpec],
    apply_config: Callable[[DirectorConfig], int],
) -> DirectorConfig:
    """Apply the file at ``path``; returns the configuration now running.

    A file that cannot be read, parsed or built, or that needs new plumbing, is
    refused with an ERROR log line and ``running`` is returned unchanged. Otherwise
    ``apply_config`` (the director's) applies the differences and returns how many.
    """
    cfg = prepare(path, running_spec, spec_of)
    if cfg is None:
        return running
    finish(path, running, cfg, apply_config(cfg))
    return cfg


def prepare(
    path: Path, running_spec: PlumbingSpec, spec_of: Callable[[DirectorConfig], PlumbingSpec]
) -> DirectorConfig | None:
    """The configuration at ``path`` if a running director can take it, else None (with
    an ERROR log line): read, parsed, the same plumbing, buildable. Touches no live
    state, so it may run in a worker thread while the event loop forwards packets."""
    try:
        cfg = load_config(path, serve=True)
        for warning in cfg.warnings:
            log.warning("reload: %s", warning)
        if _plumbing_key(spec_of(cfg)) != _plumbing_key(running_spec):
            raise ConfigError(
                f"{path}: the VIPs, interfaces, nat_router or firewall marks changed; "
                "that needs a restart"
            )
        check_buildable(cfg)
    except ConfigError as e:
        log.error("reload refused, running configuration kept: %s", e)
        return None
    return cfg


def finish(path: Path, running: DirectorConfig, cfg: DirectorConfig, changes: int) -> None:
    """After ``changes`` were applied: the new debug level, and what waits for a restart."""
    if cfg.debug_level != running.debug_level:
        logsetup.set_debug_level(cfg.debug_level)
    later = [f for f in _RESTART_FIELDS if getattr(cfg, f) != getattr(running, f)]
    if later:
        log.warning("reload: %s changed; takes effect at the next start", ", ".join(later))
    log.info("reloaded %s: %d changes", path, changes)
