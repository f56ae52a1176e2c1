"""The operator's commands on a running director: ipvsadm's operations over the control socket.

``Admin`` wraps the live ``IPVS`` service layer of one director and applies what
``lvsadm`` (and a reload) asks: add, edit and delete services and destinations,
flush, zero the counters, set the protocol timeouts, and report the table with every
field ipvsadm prints. Every change applies at once to the running service layer. A
deleted destination goes to the trash with its connections, as in ip_vs_ctl.c, and is
no longer AVAILABLE: as in ip_vs_in, the client packets of those connections are
dropped from then on, so ``del_dest`` (``lvsadm -d``) cuts in-flight connections, as
``ipvsadm -d`` does. ``drain_dest`` is the graceful removal a reload uses: quiesce
(weight 0, no new connections) at once, delete when the destination has no active
connection left or its drain deadline passes, checked by ``expire_drains`` from the
director's expiry tick. State changes are logged at INFO. Event-loop thread only.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from director.dataplane import fastpath
from director.ipvs.estimator import RateEstimator
from director.ipvs.service import (
    FWD_NAMES,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPVS,
    MASQ,
    Destination,
    InvalidArgument,
    IPVSError,
    ServiceNotDefined,
    VirtualService,
    format_addr,
)
from director.ops.control import Sliced

log = logging.getLogger(__name__)

# The kernel's defaults (ip_vs_proto_tcp.c ESTABLISHED and FIN_WAIT, ip_vs_proto_udp.c).
DEFAULT_TIMEOUTS = (900, 120, 300)
# lvs.cf drain_timeout's default: the longest a reload lets a removed real finish.
DEFAULT_DRAIN_TIMEOUT_S = 60
PROTOCOL_NUMBERS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}
PROTOCOL_NAMES = {IPPROTO_TCP: "TCP", IPPROTO_UDP: "UDP"}
_STATE_NAMES = {
    fastpath.NONE: "NONE",
    fastpath.ESTABLISHED: "ESTABLISHED",
    fastpath.SYN_SENT: "SYN_SENT",
    fastpath.SYN_RECV: "SYN_RECV",
    fastpath.FIN_WAIT: "FIN_WAIT",
    fastpath.TIME_WAIT: "TIME_WAIT",
    fastpath.CLOSE: "CLOSE",
    fastpath.CLOSE_WAIT: "CLOSE_WAIT",
    fastpath.LAST_ACK: "LAST_ACK",
    fastpath.LISTEN: "LISTEN",
    fastpath.SYNACK: "SYNACK",
    fastpath.UDP: "UDP",
}
_COUNTERS = ("conns", "inpkts", "outpkts", "inbytes", "outbytes")
MAX_CONN_ENTRIES = 1 << 20
CONN_SLICE = 4096
LISTING_SIZE = 4096  # the "size" ipvsadm -L prints (the kernel's connection hash size)

Handler = Callable[[Mapping[str, Any]], object]
NowMs = Callable[[], int]


class FwmarkNotSteered(IPVSError):
    """A fwmark service for a mark whose packets never reach this director.

    No errno: lvsadm prints the message itself rather than ipvsadm's text for one.
    """

    reason = "Firewall mark not steered to lvsd"


class VipRefused(IPVSError):
    """A new VIP the data plane cannot serve (a local address of the director, ...).

    No errno: lvsadm prints the message itself.
    """

    reason = "VIP refused"


class VipHook(Protocol):
    """The data plane's side of a service's address: told when an address gets its first
    service and when its last one goes. ``vip_added`` refuses with VipRefused."""

    def vip_added(self, vaddr: int) -> None: ...

    def vip_removed(self, vaddr: int) -> None: ...


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A service's identity as a request names it: protocol number, vaddr, vport, fwmark."""

    protocol: int
    vaddr: int
    vport: int
    fwmark: int = 0

    @classmethod
    def from_request(cls, req: Mapping[str, Any]) -> ServiceSpec:
        """Reads ``proto`` ("tcp"/"udp"), ``addr`` (dotted quad), ``port`` and ``fwmark``."""
        proto = PROTOCOL_NUMBERS.get(str(req.get("proto", "tcp")).lower())
        if proto is None:
            raise InvalidArgument(f"proto: expected tcp or udp, got {req.get('proto')!r}")
        fwmark = _int(req, "fwmark", 0, 0, 0xFFFFFFFF)
        if fwmark:
            return cls(proto, 0, 0, fwmark)
        return cls(proto, _ipv4(req, "addr"), _int(req, "port", 0, 0, 65535))


def _bool(req: Mapping[str, Any], key: str) -> bool:
    value = req.get(key, False)
    if not isinstance(value, bool):
        raise InvalidArgument(f"{key}: expected true or false, got {value!r}")
    return value


def _int(req: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = req.get(key, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise InvalidArgument(f"{key}: expected an integer from {lo} to {hi}, got {value!r}")
    return value


# The protocol's names of the forwarding methods (ipvsadm -m, -g, -i).
FWD_BY_NAME = {name.lower(): fwd for fwd, name in FWD_NAMES.items()}


def _fwd(req: Mapping[str, Any], default: int | None) -> int | None:
    value = req.get("fwd")
    if value is None:
        return default
    if value not in FWD_BY_NAME:
        raise InvalidArgument(f"fwd: expected one of {', '.join(FWD_BY_NAME)}, got {value!r}")
    return FWD_BY_NAME[value]


def _ipv4(req: Mapping[str, Any], key: str, default: str | None = None) -> int:
    text = req.get(key, default)
    try:
        return int(ipaddress.IPv4Address(str(text)))
    except ValueError:
        raise InvalidArgument(f"{key}: expected an IPv4 address, got {text!r}") from None


def _flags(req: Mapping[str, Any]) -> frozenset[str]:
    flags = req.get("flags") or []
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise InvalidArgument(f"flags: expected a list of names, got {flags!r}")
    return frozenset(flags)


class Admin:
    """ipvsadm's operations on one director's live service layer.

    ``timeouts`` are the (tcp, tcpfin, udp) seconds in force; ``now_ms`` the data
    plane's monotonic clock (connection expiry and drain deadlines use it).
    ``drain_timeout`` is the longest ``drain_dest`` waits, in seconds (lvs.cf
    drain_timeout; 0 deletes at once). ``fwmarks`` are the firewall marks the
    plumbing steers into the director; a fwmark service for another mark is refused
    (None: every mark, for a service layer without plumbing). ``vips`` is told when an
    address gets its first service (``lvsadm -A``) and loses its last one (None: no
    plumbing to tell).
    """

    def __init__(
        self,
        ipvs: IPVS,
        estimator: RateEstimator,
        now_ms: NowMs,
        timeouts: tuple[int, int, int] = (0, 0, 0),
        drain_timeout: int = DEFAULT_DRAIN_TIMEOUT_S,
        fwmarks: frozenset[int] | None = None,
        vips: VipHook | None = None,
    ) -> None:
        self.ipvs = ipvs
        self.fwmarks = fwmarks
        self.vips = vips
        self.estimator = estimator
        self._now_ms = now_ms
        self.drain_timeout = drain_timeout
        # (service, addr, port) -> deadline (ms) of a destination being drained.
        self._draining: dict[tuple[ServiceSpec, int, int], int] = {}
        self.timeouts = DEFAULT_TIMEOUTS
        self.set_timeouts(*timeouts, quiet=True)

    def commands(self) -> dict[str, Handler]:
        """The control protocol's commands this object answers (see docs/control.md)."""
        return {
            "list": lambda req: Sliced(
                f'{{"size": {LISTING_SIZE}, "services": [', self.iter_services(), "]}"
            ),
            "add_service": self._add_service,
            "edit_service": self._edit_service,
            "del_service": self._del_service,
            "add_dest": self._add_dest,
            "edit_dest": self._edit_dest,
            "del_dest": self._del_dest,
            "flush": lambda req: self.flush(),
            "zero": self._zero_cmd,
            "set_timeouts": self._set_timeouts_cmd,
            "timeouts": lambda req: list(self.timeouts),
            "connections": lambda req: Sliced("[", self.iter_connections(), "]"),
        }

    # --- services --------------------------------------------------------------------

    def add_service(
        self,
        spec: ServiceSpec,
        scheduler: str = "wlc",
        flags: frozenset[str] = frozenset(),
        timeout: int = 0,
        netmask: int = 0xFFFFFFFF,
        one_packet: bool = False,
    ) -> VirtualService:
        if spec.fwmark and self.fwmarks is not None and spec.fwmark not in self.fwmarks:
            # Marked packets reach lvsd through a TUN per mark, made at start-up with its
            # routing table and rule; a mark without one would be a service no packet
            # ever reaches.
            steered = ", ".join(map(str, sorted(self.fwmarks))) or "none"
            raise FwmarkNotSteered(
                f"FWM {spec.fwmark}: lvsd receives marked packets only for the marks of "
                f"lvs.cf's virtual servers, given TUNs at start-up (steered: {steered}); "
                f"add a virtual with fwmark = {spec.fwmark} to lvs.cf and restart lvsd"
            )
        new_vip = self.vips is not None and not spec.fwmark and not self._vaddr_served(spec.vaddr)
        if new_vip:
            assert self.vips is not None
            self.vips.vip_added(spec.vaddr)
        try:
            svc = self.ipvs.add_service(
                spec.protocol,
                spec.vaddr,
                spec.vport,
                scheduler,
                flags,
                timeout=timeout,
                netmask=netmask,
                fwmark=spec.fwmark,
            )
        except IPVSError:
            if new_vip:
                assert self.vips is not None
                self.vips.vip_removed(spec.vaddr)
            raise
        svc.one_packet = one_packet
        log.info("%s: service added (%s%s)", svc, scheduler, _persist_text(timeout))
        return svc

    def edit_service(
        self,
        spec: ServiceSpec,
        scheduler: str,
        flags: frozenset[str] = frozenset(),
        timeout: int = 0,
        netmask: int = 0xFFFFFFFF,
        one_packet: bool = False,
    ) -> VirtualService:
        """ip_vs_edit_service: scheduler, flags, persistence and one-packet scheduling all
        take the new values."""
        svc = self.get(spec)
        if one_packet != svc.one_packet:
            svc.one_packet = one_packet
            log.info("%s: one-packet scheduling %s", svc, "on" if one_packet else "off")
        if scheduler != svc.sched_name or flags != svc.sched_flags:
            svc.set_scheduler(scheduler, flags)
            log.info("%s: scheduler %s%s", svc, scheduler, _flags_text(flags))
        if timeout != svc.timeout or netmask != svc.netmask:
            svc.set_persistence(timeout, netmask)
            log.info("%s: persistence%s", svc, _persist_text(timeout) or " off")
        return svc

    def del_service(self, spec: ServiceSpec) -> None:
        svc = self.get(spec)
        name = str(svc)
        self.ipvs.del_service(spec.protocol, spec.vaddr, spec.vport, spec.fwmark)
        self._vip_gone(spec.vaddr)
        for dkey in [k for k in self._draining if k[0] == spec]:
            del self._draining[dkey]
        log.info("%s: service deleted", name)

    def get(self, spec: ServiceSpec) -> VirtualService:
        return self.ipvs.get_service(spec.protocol, spec.vaddr, spec.vport, spec.fwmark)

    def _vaddr_served(self, vaddr: int) -> bool:
        return any(not s.fwmark and s.vaddr == vaddr for s in self.ipvs.services.values())

    def _vip_gone(self, vaddr: int) -> None:
        if self.vips is not None and vaddr and not self._vaddr_served(vaddr):
            self.vips.vip_removed(vaddr)

    def flush(self) -> None:
        """ipvsadm -C: delete every service; connections live on until they expire."""
        for svc in list(self.ipvs.services.values()):
            self.ipvs.del_service(svc.protocol, svc.vaddr, svc.vport, svc.fwmark)
            self._vip_gone(svc.vaddr)
        self._draining.clear()
        log.info("all services deleted")

    # --- destinations ----------------------------------------------------------------

    def add_dest(
        self,
        spec: ServiceSpec,
        addr: int,
        port: int,
        weight: int = 1,
        u: int = 0,
        lo: int = 0,
        fwd: int = MASQ,
    ) -> Destination:
        svc = self.get(spec)
        dest = svc.add_dest(addr, port, weight, u, lo, fwd=fwd)
        log.info("%s: dest %s added (%s, weight %d)", svc, dest, FWD_NAMES[fwd], weight)
        return dest

    def undrain_dest(
        self, spec: ServiceSpec, addr: int, port: int, weight: int, u: int = 0, lo: int = 0
    ) -> Destination | None:
        """Take back a destination being drained (configured again): its weight and
        thresholds return, it stays linked. None if it was not being drained."""
        if self._draining.pop((spec, addr, port), None) is None:
            return None
        svc = self.get(spec)
        dest = svc.edit_dest(addr, port, weight=weight, u_threshold=u, l_threshold=lo)
        log.info("%s: dest %s kept (weight %d), no longer draining", svc, dest, weight)
        return dest

    def edit_dest(
        self,
        spec: ServiceSpec,
        addr: int,
        port: int,
        weight: int | None = None,
        u: int | None = None,
        lo: int | None = None,
        fwd: int | None = None,
    ) -> Destination:
        svc = self.get(spec)
        before = svc.find_dest(addr, port)
        old = None if before is None else (before.weight, before.u_threshold, before.l_threshold)
        dest = svc.edit_dest(addr, port, weight=weight, u_threshold=u, l_threshold=lo, fwd=fwd)
        # An operator's edit takes the destination back from a drain.
        self._draining.pop((spec, addr, port), None)
        if old != (dest.weight, dest.u_threshold, dest.l_threshold):
            log.info(
                "%s: dest %s weight %d thresholds %d/%d",
                svc,
                dest,
                dest.weight,
                dest.u_threshold,
                dest.l_threshold,
            )
        return dest

    def del_dest(self, spec: ServiceSpec, addr: int, port: int) -> None:
        """ipvsadm -d: at once; the client packets of its connections are dropped from now."""
        svc = self.get(spec)
        dest = svc.del_dest(addr, port)
        self._draining.pop((spec, addr, port), None)
        log.info("%s: dest %s deleted (%d connections still bound)", svc, dest, dest.refs)

    def drain_dest(self, spec: ServiceSpec, addr: int, port: int) -> None:
        """Remove a destination gracefully: quiesce it now, delete it once drained.

        Weight 0 at once (no new connections; persistence templates may still send some,
        as in IPVS); deleted by ``expire_drains`` when it has no active connection left
        or ``drain_timeout`` seconds from now, whichever comes first. With no active
        connection (or drain_timeout 0) it is deleted here. Refuses an unknown addr:port.
        """
        svc = self.get(spec)
        dest = svc.find_dest(addr, port)
        if dest is None or self.drain_timeout == 0 or dest.active_conns == 0:
            self.del_dest(spec, addr, port)
            return
        if dest.weight != 0:
            svc.edit_dest(addr, port, weight=0)
        self._draining[(spec, addr, port)] = self._now_ms() + self.drain_timeout * 1000
        log.info(
            "%s: dest %s quiesced, draining %d active connections (at most %d s)",
            svc,
            dest,
            dest.active_conns,
            self.drain_timeout,
        )

    def draining(self) -> dict[tuple[ServiceSpec, int, int], int]:
        """The destinations being drained and their deadlines (ms, ``now_ms`` clock)."""
        return dict(self._draining)

    def expire_drains(self, now: int) -> int:
        """Delete each draining destination with no active connection or past its
        deadline (``now`` in ms); returns how many were deleted."""
        deleted = 0
        for (spec, addr, port), deadline in list(self._draining.items()):
            try:
                svc = self.get(spec)
            except ServiceNotDefined:
                del self._draining[(spec, addr, port)]
                continue
            dest = svc.find_dest(addr, port)
            if dest is None:
                del self._draining[(spec, addr, port)]
                continue
            if dest.active_conns and now < deadline:
                continue
            if dest.active_conns:
                log.warning(
                    "%s: dest %s drain timeout, %d active connections cut off",
                    svc,
                    dest,
                    dest.active_conns,
                )
            self.del_dest(spec, addr, port)
            deleted += 1
        return deleted

    # --- counters and timeouts -------------------------------------------------------

    def zero(self, spec: ServiceSpec | None = None) -> None:
        """ipvsadm -Z: the listed counters of one service (and its dests), or of all
        (then the totals too, as ip_vs_zero_all zeroes tot_stats).

        The data plane's counters only grow, so zeroing records a baseline in each
        service and destination object, which the listings subtract: a destination
        deleted and revived from the trash keeps it, a new object starts at zero.
        """
        services = [self.get(spec)] if spec is not None else list(self.ipvs.services.values())
        for svc in services:
            svc.zero_base = svc.stats
            for d in svc.dests:
                d.zero_base = d.stats
        if spec is None:
            self.ipvs.zero_totals()

    def set_timeouts(self, tcp: int, tcpfin: int, udp: int, *, quiet: bool = False) -> None:
        """ipvsadm --set: seconds; 0 leaves a value unchanged."""
        self.ipvs.set_timeouts(tcp, tcpfin, udp)
        new = tuple(v or old for v, old in zip((tcp, tcpfin, udp), self.timeouts, strict=True))
        if new != self.timeouts and not quiet:
            log.info("timeouts (tcp tcpfin udp): %d %d %d", *new)
        self.timeouts = (new[0], new[1], new[2])

    # --- reporting -------------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        """The director's totals (/proc/net/ip_vs_stats): they never go down, bar ``zero``
        of every service."""
        return dict(zip(_COUNTERS, self.ipvs.totals(), strict=True))

    def listing(self, *, raw: bool = False) -> dict[str, object]:
        """Every service and destination with all that ipvsadm lists, as plain data.

        Counters are net of the last ``zero`` unless ``raw`` (metrics: counters never
        go back); rates are the estimator's. Services and destinations come in the
        kernel's list order (listings sort them).
        """
        return {"size": LISTING_SIZE, "services": list(self.iter_services(raw=raw))}

    def iter_services(self, *, raw: bool = False) -> Iterator[dict[str, object]]:
        """``listing()``'s services one at a time, so that a caller can build a big
        listing in slices; services removed meanwhile are skipped, added ones are not
        seen. Event-loop thread only."""
        for svc in list(self.ipvs.services.values()):
            if self.ipvs.services.get(svc.key) is not svc:
                continue  # removed since the walk began
            dests: list[dict[str, object]] = []
            for d in svc.dests:
                dests.append(
                    {
                        "addr": format_addr(d.addr, d.port),
                        "fwd": FWD_NAMES[d.fwd],
                        "weight": d.weight,
                        "u_threshold": d.u_threshold,
                        "l_threshold": d.l_threshold,
                        "active": d.active_conns,
                        "inactive": d.inactive_conns,
                        "persist": d.persist_conns,
                        **self._counters(d.stats, None if raw else d.zero_base),
                        "rates": asdict(self.estimator.rates(("dest", d.slot))),
                    }
                )
            yield {
                "proto": PROTOCOL_NAMES.get(svc.protocol, str(svc.protocol)),
                "addr": format_addr(svc.vaddr, svc.vport),
                "fwmark": svc.fwmark,
                "scheduler": svc.sched_name,
                "flags": sorted(svc.sched_flags),
                "ops": svc.one_packet,
                "persistent": svc.timeout,
                "netmask": str(ipaddress.IPv4Address(svc.netmask)),
                **self._counters(svc.stats, None if raw else svc.zero_base),
                "rates": asdict(self.estimator.rates(("svc", svc.index))),
                "dests": dests,
            }

    @staticmethod
    def _counters(now: tuple[int, ...], base: tuple[int, ...] | None) -> dict[str, int]:
        if base is None:
            return dict(zip(_COUNTERS, now, strict=True))
        return {f: max(0, v - b) for f, v, b in zip(_COUNTERS, now, base, strict=True)}

    def connections(self) -> list[dict[str, object]]:
        """The connection table as ``ipvsadm -lnc`` lists it, templates included."""
        return list(self.iter_connections())

    def iter_connections(self) -> Iterator[dict[str, object]]:
        """``connections()`` one entry at a time, read from the table in slices of
        ``CONN_SLICE`` entries: a caller may yield to the event loop between entries, and
        sees once every entry that lives throughout the walk. At most
        ``MAX_CONN_ENTRIES``. Event-loop thread only."""
        table = self.ipvs.table
        start, n = 0, 0
        while start >= 0 and n < MAX_CONN_ENTRIES:
            now = self._now_ms()
            rows, start = table.entries_from(start, min(CONN_SLICE, MAX_CONN_ENTRIES - n))
            n += len(rows)
            for e in rows:
                _, proto, caddr, cport, vaddr, vport, daddr, dport, _d, state, flags = e[:11]
                expires = e[11]
                template = bool(flags & fastpath.CONN_F_TEMPLATE)
                yield {
                    "proto": PROTOCOL_NAMES.get(proto, "IP"),
                    "expire": max(0, (expires - now) // 1000),
                    "state": "NONE" if template else _STATE_NAMES.get(state, "ERR!"),
                    "source": format_addr(caddr, cport),
                    "virtual": format_addr(vaddr, vport),
                    "destination": format_addr(daddr, dport),
                }

    # --- the protocol's argument handling --------------------------------------------

    def _service_args(
        self, req: Mapping[str, Any]
    ) -> tuple[ServiceSpec, str, frozenset[str], int, int]:
        spec = ServiceSpec.from_request(req)
        scheduler = str(req.get("scheduler") or "wlc")
        timeout = _int(req, "persistent", 0, 0, 86400 * 31)
        netmask = _ipv4(req, "netmask", "255.255.255.255")
        return spec, scheduler, _flags(req), timeout, netmask

    def _add_service(self, req: Mapping[str, Any]) -> None:
        spec, scheduler, flags, timeout, netmask = self._service_args(req)
        self.add_service(spec, scheduler, flags, timeout, netmask, _bool(req, "ops"))

    def _edit_service(self, req: Mapping[str, Any]) -> None:
        spec, scheduler, flags, timeout, netmask = self._service_args(req)
        self.edit_service(spec, scheduler, flags, timeout, netmask, _bool(req, "ops"))

    def _del_service(self, req: Mapping[str, Any]) -> None:
        self.del_service(ServiceSpec.from_request(req))

    def _dest_args(self, req: Mapping[str, Any]) -> tuple[ServiceSpec, int, int]:
        spec = ServiceSpec.from_request(req)
        return spec, _ipv4(req, "daddr"), _int(req, "dport", spec.vport, 0, 65535)

    def _add_dest(self, req: Mapping[str, Any]) -> None:
        spec, addr, port = self._dest_args(req)
        self.add_dest(
            spec,
            addr,
            port,
            _int(req, "weight", 1, 0, 65535),
            _int(req, "u_threshold", 0, 0, 2**31 - 1),
            _int(req, "l_threshold", 0, 0, 2**31 - 1),
            _fwd(req, MASQ) or MASQ,
        )

    def _edit_dest(self, req: Mapping[str, Any]) -> None:
        spec, addr, port = self._dest_args(req)
        optional = {}
        for key in ("weight", "u_threshold", "l_threshold"):
            if req.get(key) is not None:
                optional[key] = _int(req, key, 0, 0, 65535 if key == "weight" else 2**31 - 1)
        self.edit_dest(
            spec,
            addr,
            port,
            optional.get("weight"),
            optional.get("u_threshold"),
            optional.get("l_threshold"),
            _fwd(req, None),
        )

    def _del_dest(self, req: Mapping[str, Any]) -> None:
        spec, addr, port = self._dest_args(req)
        self.del_dest(spec, addr, port)

    def _zero_cmd(self, req: Mapping[str, Any]) -> None:
        has_service = req.get("addr") is not None or req.get("fwmark")
        self.zero(ServiceSpec.from_request(req) if has_service else None)

    def _set_timeouts_cmd(self, req: Mapping[str, Any]) -> None:
        limit = 86400 * 31
        self.set_timeouts(
            _int(req, "tcp", 0, 0, limit),
            _int(req, "tcpfin", 0, 0, limit),
            _int(req, "udp", 0, 0, limit),
        )


def _persist_text(timeout: int) -> str:
    return f", persistent {timeout}" if timeout else ""


def _flags_text(flags: frozenset[str]) -> str:
    return f" ({','.join(sorted(flags))})" if flags else ""
