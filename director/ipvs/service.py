"""The IPVS service layer: virtual services, their destinations and persistence.

The control-plane decisions of the kernel's ip_vs_ctl.c (add/edit/delete a destination,
the trash, changing the scheduler) and the scheduling decisions of ip_vs_core.c
(ip_vs_schedule, ip_vs_sched_persist), over the shared ``ConnTable`` of the fast path.
A destination's connection counters live in the table's dest buffer, which the data
plane updates as connections bind, change state and expire; this module only reads them
(``ConnTable.set_dest`` applies ip_vs_ctl.c's OVERLOAD rule on an edit). The slot's
AVAILABLE flag follows the destination: set by every add (or revival) and edit, cleared
by a delete, after which the fast path drops client packets of the connections still bound
to it (ip_vs_in, expire_nodest_conn=0) until it is added back. Event-loop thread only.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
from collections.abc import Callable, Iterator
from errno import EEXIST, EINVAL, ENOENT, ENOMEM, ERANGE, ESRCH
from typing import ClassVar

from director.dataplane import fastpath
from director.errors import DirectorError
from scheduling import SCHEDULERS, get_scheduler
from scheduling.base import SCHED_FLAGS, FlowKey, Scheduler
from scheduling.errors import SchedulerError, UnknownSchedulerError

log = logging.getLogger(__name__)

IPPROTO_TCP = 6
IPPROTO_UDP = 17
PROTO_NAMES = {IPPROTO_TCP: "TCP", IPPROTO_UDP: "UDP"}
FTPPORT = 21
FTPDATA = 20
# ip_vs_ctl.c IP_VS_DEST_TRASH_PERIOD: an unreferenced dest stays revivable this long.
TRASH_PERIOD_MS = 120_000
# inet_port_requires_bind_service() with the default ip_unprivileged_port_start.
_UNPRIVILEGED_PORT_START = 1024

Rand = Callable[[int], int]

_ACTIVE = fastpath.DEST_ACTIVE
_INACTIVE = fastpath.DEST_INACTIVE
_PERSIST = fastpath.DEST_PERSIST
_OVERLOAD = fastpath.DEST_OVERLOAD
_FIELDS = fastpath.DEST_FIELDS
_DEST_STATS = fastpath.DEST_CONNS
_SVC_STATS = fastpath.SVC_CONNS
Stats = tuple[int, int, int, int, int]
#: conns, inpkts, outpkts, inbytes, outbytes: the counters of struct ip_vs_stats.
ZERO_STATS: Stats = (0, 0, 0, 0, 0)
#: Every scheduler flag a service takes: IP_VS_SVC_F_SCHED1..3 by number, and the names
#: sh and mh give the first two.
KNOWN_FLAGS = SCHED_FLAGS | {"flag-1", "flag-2", "flag-3"}
# The dest slot's position in ConnTable.conn_info()'s tuple.
CONN_INFO_DEST = 7
# Forwarding methods (ipvsadm -m, -g, -i) and how ipvsadm -L names them.
MASQ = fastpath.CONN_F_MASQ
DROUTE = fastpath.CONN_F_DROUTE
TUNNEL = fastpath.CONN_F_TUNNEL
FWD_NAMES = {MASQ: "Masq", DROUTE: "Route", TUNNEL: "Tunnel"}
# lvs.cf's ``network`` values.
FWD_OF_NETWORK = {"nat": MASQ, "direct": DROUTE, "tunnel": TUNNEL}
# The methods lvsd forwards with.
SUPPORTED_FWD = frozenset((MASQ, DROUTE, TUNNEL))


class IPVSError(DirectorError):
    """A refused control operation; ``reason`` is what ipvsadm prints for the kernel's errno."""

    errno: ClassVar[int] = 0
    reason: ClassVar[str] = ""

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)


class ServiceNotDefined(IPVSError):
    errno = ESRCH
    reason = "Service not defined"


class ServiceExists(IPVSError):
    errno = EEXIST
    reason = "Service already exists"


class NoSuchDestination(IPVSError):
    errno = ENOENT
    reason = "No such destination"


class DestinationExists(IPVSError):
    errno = EEXIST
    reason = "Destination already exists"


class SchedulerNotFound(IPVSError):
    errno = ENOENT
    reason = "Scheduler or persistence engine not found"


class InvalidArgument(IPVSError):
    errno = EINVAL
    reason = "Invalid argument"


class OutOfRange(IPVSError):
    errno = ERANGE
    reason = "Numerical result out of range"


class OutOfMemory(IPVSError):
    errno = ENOMEM
    reason = "Memory allocation problem"


def format_addr(addr: int, port: int) -> str:
    """``a.b.c.d:port`` for a host-order address, as ipvsadm -n prints it."""
    return f"{ipaddress.IPv4Address(addr)}:{port}"


class Destination:
    """A real server of one virtual service (kernel ``struct ip_vs_dest``); a ``DestView``.

    ``addr``/``port`` are host-order ints and, with the service, the identity.
    ``slot`` is the destination's index in the ConnTable's dest buffer, where the data
    plane keeps ``active_conns``, ``inactive_conns``, ``persist_conns`` and the OVERLOAD
    flag; the properties read that buffer directly. ``available`` is the kernel's
    IP_VS_DEST_F_AVAILABLE: true while linked in its service's list.
    """

    __slots__ = (
        "_base",
        "_buf",
        "addr",
        "available",
        "fwd",
        "fwmark",
        "l_threshold",
        "last_weight",
        "port",
        "slot",
        "u_threshold",
        "weight",
        "zero_base",
    )

    def __init__(self, buf: memoryview, slot: int, addr: int, port: int, fwmark: int = 0) -> None:
        self._buf = buf
        self._base = slot * _FIELDS
        self.slot = slot
        self.fwmark = fwmark  # its service's: what a connection through it syncs with
        self.addr = addr
        self.port = port
        self.weight = 0
        self.last_weight = 0
        self.u_threshold = 0
        self.l_threshold = 0
        self.available = False
        self.fwd = MASQ  # the forwarding method: MASQ, DROUTE or TUNNEL
        # The counters at the last ``ipvsadm -Z``: they belong to the object, so a
        # destination deleted and revived from the trash stays zeroed (the kernel's
        # dest->stats survive in the trash too).
        self.zero_base: Stats = ZERO_STATS

    @property
    def stats(self) -> Stats:
        """conns, inpkts, outpkts, inbytes, outbytes since the slot was given to this dest."""
        b = self._base + _DEST_STATS
        v = self._buf
        return (int(v[b]), int(v[b + 1]), int(v[b + 2]), int(v[b + 3]), int(v[b + 4]))

    @property
    def active_conns(self) -> int:
        return int(self._buf[self._base + _ACTIVE])

    @property
    def inactive_conns(self) -> int:
        return int(self._buf[self._base + _INACTIVE])

    @property
    def persist_conns(self) -> int:
        return int(self._buf[self._base + _PERSIST])

    @property
    def overloaded(self) -> bool:
        return self._buf[self._base + _OVERLOAD] != 0

    @property
    def refs(self) -> int:
        """Connections and templates still bound to this destination."""
        b = self._base
        return int(self._buf[b + _ACTIVE] + self._buf[b + _INACTIVE] + self._buf[b + _PERSIST])

    def __str__(self) -> str:
        return format_addr(self.addr, self.port)

    def __repr__(self) -> str:
        return (
            f"Destination({self}, weight={self.weight}, active={self.active_conns}, "
            f"inactive={self.inactive_conns}, persist={self.persist_conns})"
        )


class VirtualService:
    """One virtual service (kernel ``struct ip_vs_service``); made by ``IPVS.add_service``.

    ``dests`` is the kernel's list order: every add (or revival) goes to the head, and
    every scheduler iterates from the head. ``timeout`` is the persistence timeout in
    seconds (0: not persistent); ``netmask`` the persistence granularity (host order).
    A ``fwmark`` service has ``vaddr`` 0 and ``vport`` 0. ``one_packet`` is
    IP_VS_SVC_F_ONEPACKET (``ipvsadm -o``): each UDP datagram is scheduled on its own and
    its connection entry is removed once the datagram is forwarded (``IPVS.one_packet_done``).
    ``sched_flags`` are the flags as given (the kernel keeps every flag bit); the
    scheduler gets those it reads and the rest are ignored, as the kernel's schedulers do.
    """

    def __init__(
        self,
        ipvs: IPVS,
        index: int,
        protocol: int,
        vaddr: int,
        vport: int,
        fwmark: int,
        scheduler: str,
        flags: frozenset[str],
        timeout: int,
        netmask: int,
    ) -> None:
        self._ipvs = ipvs
        self.index = index
        self.protocol = protocol
        self.vaddr = vaddr
        self.vport = vport
        self.fwmark = fwmark
        self.timeout = timeout
        self.netmask = netmask
        self.dests: list[Destination] = []
        self.sched_name = scheduler
        self.sched_flags = flags
        self.one_packet = False
        self.scheduler: Scheduler = ipvs.make_scheduler(scheduler, flags)
        self._warned_port_zero = False
        self.scheduler.update([], "init")
        # The service slot's counters may still hold a deleted service's: a new service
        # starts at zero, as the kernel allocates it new stats.
        self.created_base: Stats = ipvs.svc_stats_raw(index)
        self.zero_base: Stats = ZERO_STATS

    @property
    def key(self) -> tuple[int, int, int, int]:
        return (self.protocol, self.vaddr, self.vport, self.fwmark)

    @property
    def stats(self) -> Stats:
        """conns, inpkts, outpkts, inbytes, outbytes since the service was created."""
        return sub_stats(self._ipvs.svc_stats_raw(self.index), self.created_base)

    @property
    def persistent(self) -> bool:
        return self.timeout > 0

    def __str__(self) -> str:
        return _svc_name(self.protocol, self.vaddr, self.vport, self.fwmark)

    def find_dest(self, addr: int, port: int) -> Destination | None:
        """The linked destination addr:port, or None."""
        for d in self.dests:
            if d.addr == addr and d.port == port:
                return d
        return None

    def __iter__(self) -> Iterator[Destination]:
        return iter(self.dests)

    # --- control (ip_vs_ctl.c) -------------------------------------------------------

    def add_dest(
        self,
        addr: int,
        port: int,
        weight: int = 1,
        u_threshold: int = 0,
        l_threshold: int = 0,
        *,
        fwd: int = MASQ,
    ) -> Destination:
        """Link addr:port at the head of the list (``ipvsadm -a``), forwarding by ``fwd``.

        Refuses an existing addr:port (DestinationExists), a negative weight or
        ``l_threshold > u_threshold`` (OutOfRange), an unknown method (InvalidArgument),
        no free dest slot (OutOfMemory). A
        destination of the same identity still in the trash is revived with its counters,
        which belong to its still-living connections.
        """
        _check_dest_args(weight, u_threshold, l_threshold)
        _check_fwd(fwd)
        if self.find_dest(addr, port) is not None:
            raise DestinationExists(f"{self} -> {format_addr(addr, port)}")
        dest = self._ipvs.revive_dest(self, addr, port)
        if dest is None:
            dest = self._ipvs.new_dest(self, addr, port)
        else:
            log.debug("%s: dest %s revived from the trash", self, dest)
        self._update_dest(dest, weight, u_threshold, l_threshold, add=True, fwd=fwd)
        self.dests.insert(0, dest)
        self.scheduler.update(self.dests, "add", dest)
        return dest

    def edit_dest(
        self,
        addr: int,
        port: int,
        *,
        weight: int | None = None,
        u_threshold: int | None = None,
        l_threshold: int | None = None,
        fwd: int | None = None,
    ) -> Destination:
        """Change a linked destination's weight, thresholds and method (``ipvsadm -e``).

        A new method applies to new connections; those already made keep theirs.

        Unspecified values stay. Refuses an unknown addr:port (NoSuchDestination) and the
        same ranges as ``add_dest``. The destination keeps its list position.
        """
        dest = self.find_dest(addr, port)
        if dest is None:
            raise NoSuchDestination(f"{self} -> {format_addr(addr, port)}")
        w = dest.weight if weight is None else weight
        u = dest.u_threshold if u_threshold is None else u_threshold
        lo = dest.l_threshold if l_threshold is None else l_threshold
        _check_dest_args(w, u, lo)
        f = dest.fwd if fwd is None else fwd
        _check_fwd(f)
        self._update_dest(dest, w, u, lo, add=False, fwd=f)
        self.scheduler.update(self.dests, "upd", dest)
        return dest

    def del_dest(self, addr: int, port: int) -> Destination:
        """Unlink addr:port (``ipvsadm -d``) and move it to the trash.

        Its connections keep pointing at it and keep counting on it, but their client
        packets are dropped from now on (the slot is no longer AVAILABLE) until they expire
        or the destination is added back; its slot is freed once nothing references it for
        the trash period. Refuses an unknown addr:port.
        """
        dest = self.find_dest(addr, port)
        if dest is None:
            raise NoSuchDestination(f"{self} -> {format_addr(addr, port)}")
        dest.available = False
        self._ipvs.table.set_dest_available(dest.slot, False)
        self.dests.remove(dest)
        self.scheduler.update(self.dests, "del", dest)
        self._ipvs.trash_dest(self, dest)
        return dest

    def set_scheduler(self, name: str, flags: frozenset[str] = frozenset()) -> None:
        """Switch the scheduler (``ipvsadm -E -s``); only a different one starts afresh.

        Re-specifying the running scheduler keeps its state (the kernel compares the
        scheduler, not the flags) and gives it the new flags, which sh and mh read at
        their next decision as the kernel's read the service's flags.
        """
        if name != self.sched_name:
            scheduler = self._ipvs.make_scheduler(name, flags)
            scheduler.update(self.dests, "init")
            self.scheduler = scheduler
            self.sched_name = name
        elif flags != self.sched_flags:
            self.scheduler.set_flags(self._ipvs.own_flags(name, flags))
        self.sched_flags = flags

    def set_persistence(self, timeout: int, netmask: int = 0xFFFFFFFF) -> None:
        """Set the persistence timeout in seconds (0 turns it off) and granularity mask."""
        if timeout < 0:
            raise OutOfRange(f"{self}: persistence timeout must be >= 0, got {timeout}")
        self.timeout = timeout
        self.netmask = netmask

    def _update_dest(
        self, dest: Destination, weight: int, u: int, lo: int, *, add: bool, fwd: int
    ) -> None:
        # __ip_vs_update_dest: last_weight follows every add and every non-zero weight.
        # set_dest clears OVERLOAD when the upper threshold is removed or raised, and
        # marks the slot AVAILABLE (a revived dest's connections flow again).
        if add or weight != 0:
            dest.last_weight = weight
        dest.weight = weight
        dest.available = True
        dest.u_threshold = u
        dest.l_threshold = lo
        self._ipvs.table.set_dest(dest.slot, self.index, dest.addr, dest.port, u, lo)
        dest.fwd = fwd
        self._ipvs.table.set_dest_fwd(dest.slot, fwd)

    # --- scheduling (ip_vs_core.c) ---------------------------------------------------

    def pick(
        self, proto: int, caddr: int, cport: int, vaddr: int, vport: int, now: int
    ) -> Destination | None:
        """Ask the scheduler only: no template, no connection. ``now`` in milliseconds."""
        chosen = self.scheduler.schedule(FlowKey(proto, caddr, cport, vaddr, vport, now))
        if chosen is None:
            return None
        assert isinstance(chosen, Destination), chosen
        return chosen

    def schedule(
        self, proto: int, caddr: int, cport: int, vaddr: int, vport: int, now: int
    ) -> Destination | None:
        """The destination for a new connection caddr:cport -> vaddr:vport, or None.

        ip_vs_schedule: never for FTP data from port 20; a non-persistent service only
        for its own port; a persistent one through its template (created or re-armed
        here; ``IPVS.new_connection`` also attaches the connection to it).
        """
        chosen = self.bind(proto, caddr, cport, vaddr, vport, now)
        return None if chosen is None else chosen[0]

    def bind(
        self, proto: int, caddr: int, cport: int, vaddr: int, vport: int, now: int
    ) -> tuple[Destination, int] | None:
        """``schedule`` plus the template handle to attach the connection to (-1: none)."""
        if cport == FTPDATA:
            return None
        if not self.persistent:
            if not self.fwmark and vport != self.vport:
                if self.vport == 0 and not self._warned_port_zero:
                    self._warned_port_zero = True
                    log.warning("%s: port zero only supported in persistent services", self)
                return None
            dest = self.pick(proto, caddr, cport, vaddr, vport, now)
            return None if dest is None else (dest, -1)
        return self._bind_persistent(proto, caddr, cport, vaddr, vport, now)

    def _bind_persistent(
        self, proto: int, caddr: int, cport: int, vaddr: int, vport: int, now: int
    ) -> tuple[Destination, int] | None:
        ipvs = self._ipvs
        table = ipvs.table
        snet = caddr & self.netmask
        # Template keys (ip_vs_sched_persist): <proto, snet, 0, vaddr, vport> for a port
        # service; vport 0 for FTP (control and data) and port-zero services; fwmark:
        # <IPPROTO_IP, snet, 0, fwmark, 0>.
        tproto, tvaddr, tvport = proto, vaddr, 0
        if self.fwmark and vport != self.vport:
            tproto, tvaddr = 0, self.fwmark
        elif vport == self.vport and self.vport != FTPPORT:
            tvport = vport
        ct = table.lookup_template(tproto, snet, tvaddr, tvport)
        dest: Destination | None = None
        if ct >= 0:
            dest = ipvs.dest_at(table.conn_info(ct)[CONN_INFO_DEST])
            if (
                dest is None
                or not dest.available
                or (ipvs.expire_quiescent_template and dest.weight == 0)
            ):
                # ip_vs_check_template: make it unfindable; it lives until its timer.
                table.invalidate_template(ct)
                ct, dest = -1, None
        if dest is None:
            dest = self.pick(proto, caddr, cport, vaddr, vport, now)
            if dest is None:
                return None
            ct = table.insert_template(tproto, snet, tvaddr, tvport, dest.slot, self.timeout, now)
            if ct < 0:
                ipvs.note_no_memory(self)
                return None
        # ip_vs_conn_put(ct): each new connection through the template re-arms its timer.
        table.touch_template(ct, now)
        return dest, ct


def _check_fwd(fwd: int) -> None:
    if fwd not in SUPPORTED_FWD:
        name = FWD_NAMES.get(fwd, str(fwd))
        raise InvalidArgument(f"forwarding method {name}: lvsd forwards by Masq, Route or Tunnel")


def sub_stats(a: Stats, b: Stats) -> Stats:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3], a[4] - b[4])


def _add(a: Stats, b: Stats) -> Stats:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4])


def _check_dest_args(weight: int, u: int, lo: int) -> None:
    if weight < 0:
        raise OutOfRange(f"weight must be >= 0, got {weight}")
    if u < 0 or lo < 0:
        raise OutOfRange(f"thresholds must be >= 0, got u={u} l={lo}")
    if lo > u:
        raise OutOfRange(f"l_threshold {lo} above u_threshold {u}")


class IPVS:
    """The virtual services of one director, over one shared ConnTable.

    Owns the dest slot allocation of the table (a deleted destination keeps its slot,
    in the trash, while connections reference it and for ``TRASH_PERIOD_MS`` after), the
    service lookup of the packet path and the protocol timeouts. ``rand`` is handed to
    every scheduler that draws (twos). ``now`` is monotonic milliseconds throughout.
    Event-loop thread only.
    """

    def __init__(
        self,
        table: fastpath.ConnTable,
        *,
        rand: Rand | None = None,
        expire_quiescent_template: bool = False,
        app_ports: frozenset[int] = frozenset({FTPPORT}),
    ) -> None:
        self.table = table
        self.rand = rand
        # ip_vs_ftp's ports: a TCP connection to one of them is bound to the FTP helper.
        self.app_ports = app_ports
        self.expire_quiescent_template = expire_quiescent_template
        self.services: dict[tuple[int, int, int, int], VirtualService] = {}
        self.no_memory = 0
        buf = table.dest_buffer()
        self._dest_buf = buf
        max_dests = len(buf) // _FIELDS
        self._free_slots: list[int] = list(range(max_dests))
        self._slots: list[Destination | None] = [None] * max_dests
        # Per slot, the firewall mark of the service its dest belongs to (0: an address
        # service): a slot keeps its service from new_dest until it is freed.
        self._free_svcs: list[int] = list(range(len(table.svc_buffer()) // fastpath.SVC_FIELDS))
        # (service key, addr, port) -> a deleted dest; and per slot, since when (ms)
        # nothing references it (None: still referenced).
        self._trash: dict[tuple[tuple[int, int, int, int], int, int], Destination] = {}
        self._trash_since: dict[int, int | None] = {}
        self._svc_buf = table.svc_buffer()
        # The counters of dest slots freed since start (their packets stay counted in
        # the totals, as the kernel's ipvs->tot_stats keep them), and the totals at the
        # last zeroing of everything (ip_vs_zero_all zeroes tot_stats too).
        self._retired: Stats = ZERO_STATS
        self._totals_base: Stats = ZERO_STATS

    @staticmethod
    def own_flags(name: str, flags: frozenset[str]) -> frozenset[str]:
        """The flags of ``flags`` that scheduler ``name`` reads (all, if it is unknown)."""
        cls = SCHEDULERS.get(name)
        return flags if cls is None else flags & cls.accepted_flags

    def make_scheduler(self, name: str, flags: frozenset[str]) -> Scheduler:
        """The scheduler ``name`` with the flags it reads; the kernel takes any flag bit
        on any scheduler (``-s rr -b flag-1``), and a scheduler ignores those not its own."""
        unknown = sorted(flags - KNOWN_FLAGS)
        if unknown:
            raise InvalidArgument(
                f"unknown scheduler flag {unknown[0]!r}; expected some of: "
                f"{', '.join(sorted(KNOWN_FLAGS))}"
            )
        try:
            return get_scheduler(name, flags=self.own_flags(name, flags), rand=self.rand)
        except UnknownSchedulerError as e:
            raise SchedulerNotFound(str(e)) from e
        except SchedulerError as e:
            raise InvalidArgument(str(e)) from e

    # --- services --------------------------------------------------------------------

    def add_service(
        self,
        protocol: int,
        vaddr: int,
        vport: int,
        scheduler: str = "wlc",
        flags: frozenset[str] = frozenset(),
        *,
        timeout: int = 0,
        netmask: int = 0xFFFFFFFF,
        fwmark: int = 0,
    ) -> VirtualService:
        """Create a service (``ipvsadm -A``); refuses a duplicate or an unknown scheduler."""
        key = (protocol, 0, 0, fwmark) if fwmark else (protocol, vaddr, vport, 0)
        if key in self.services:
            raise ServiceExists(_svc_name(protocol, vaddr, vport, fwmark))
        if timeout < 0:
            raise OutOfRange(f"persistence timeout must be >= 0, got {timeout}")
        if not self._free_svcs:
            raise OutOfMemory(f"no service slot for {_svc_name(protocol, vaddr, vport, fwmark)}")
        svc = VirtualService(
            self,
            self._free_svcs[0],
            protocol,
            key[1],
            key[2],
            fwmark,
            scheduler,
            flags,
            timeout,
            netmask,
        )
        heapq.heappop(self._free_svcs)
        self.services[key] = svc
        return svc

    def get_service(self, protocol: int, vaddr: int, vport: int, fwmark: int = 0) -> VirtualService:
        """The service so named; ServiceNotDefined otherwise."""
        key = (protocol, 0, 0, fwmark) if fwmark else (protocol, vaddr, vport, 0)
        svc = self.services.get(key)
        if svc is None:
            raise ServiceNotDefined(_svc_name(protocol, vaddr, vport, fwmark))
        return svc

    def del_service(self, protocol: int, vaddr: int, vport: int, fwmark: int = 0) -> None:
        """Remove a service (``ipvsadm -D``); its destinations go to the trash."""
        svc = self.get_service(protocol, vaddr, vport, fwmark)
        for d in list(svc.dests):
            svc.del_dest(d.addr, d.port)
        del self.services[svc.key]
        heapq.heappush(self._free_svcs, svc.index)

    def find_service(
        self, protocol: int, vaddr: int, vport: int, fwmark: int = 0
    ) -> VirtualService | None:
        """The service a packet to vaddr:vport with firewall mark ``fwmark`` belongs to.

        ip_vs_service_find: a marked packet first looks for the fwmark service of its
        mark, whatever the packet's protocol (the kernel hashes those by mark alone; of
        two lvsd services with one mark, the packet's own protocol wins). Without one, or
        unmarked: the exact service; else, for TCP to port 20 or an unprivileged port,
        the FTP service of that address (its data connections); else the port-zero
        service.
        """
        if fwmark:
            svc = self.services.get((protocol, 0, 0, fwmark))
            if svc is None:
                other = IPPROTO_UDP if protocol == IPPROTO_TCP else IPPROTO_TCP
                svc = self.services.get((other, 0, 0, fwmark))
            if svc is not None:
                return svc
        svc = self.services.get((protocol, vaddr, vport, 0))
        if (
            svc is None
            and protocol == IPPROTO_TCP
            and (vport == FTPDATA or vport >= _UNPRIVILEGED_PORT_START)
        ):
            svc = self.services.get((protocol, vaddr, FTPPORT, 0))
        if svc is None:
            svc = self.services.get((protocol, vaddr, 0, 0))
        return svc

    # --- connections -----------------------------------------------------------------

    def new_connection(
        self,
        proto: int,
        caddr: int,
        cport: int,
        vaddr: int,
        vport: int,
        now: int,
        svc: VirtualService | None = None,
    ) -> int | None:
        """Schedule and insert the connection for a packet the table answered NEW.

        ``svc`` is the packet's service when the caller has already found it
        (``find_service``). Returns the connection handle, or None when no service
        matches, the scheduler has no destination, or the table is full (counted in
        ``no_memory``).
        """
        if svc is None:
            svc = self.find_service(proto, vaddr, vport)
        if svc is None:
            return None
        bound = svc.bind(proto, caddr, cport, vaddr, vport, now)
        if bound is None:
            return None
        dest, ct = bound
        if ct < 0:
            dport = dest.port or vport
        else:
            dport = dest.port if vport == svc.vport and dest.port else vport
        h = self.table.insert(
            proto, caddr, cport, vaddr, vport, dest.addr, dport, dest.slot, now, ct
        )
        if h < 0:
            self.note_no_memory(svc)
            return None
        self.bind_app(int(h), proto, vport)
        return int(h)

    def bind_app(self, h: int, proto: int, vport: int) -> None:
        """ip_vs_bind_app: a TCP connection whose vport is an FTP port gets the helper.
        As in the kernel only masquerading connections' packets reach it (verdict APP):
        the fast path routes or tunnels the others before the helper is considered."""
        if proto == IPPROTO_TCP and vport in self.app_ports:
            self.table.bind_app(h)

    def one_packet_done(self, svc: VirtualService, proto: int, handle: int) -> None:
        """After a new connection's first datagram was forwarded: for a one-packet
        service (IP_VS_CONN_F_ONE_PACKET, UDP only) remove its entry at once, so the next
        datagram is scheduled anew. Replies then find no entry, as in the kernel."""
        if svc.one_packet and proto == IPPROTO_UDP:
            self.table.remove(handle)

    # --- statistics (struct ip_vs_stats) ----------------------------------------------

    def svc_stats_raw(self, index: int) -> Stats:
        """A service slot's counters as the data plane keeps them (never reset)."""
        b = index * fastpath.SVC_FIELDS + _SVC_STATS
        v = self._svc_buf
        return (int(v[b]), int(v[b + 1]), int(v[b + 2]), int(v[b + 3]), int(v[b + 4]))

    def totals(self) -> Stats:
        """The director's totals (the kernel's /proc/net/ip_vs_stats): every connection
        and packet since start, or since ``zero_totals``. Deleting services or
        destinations takes nothing off: a freed dest slot's counters are kept."""
        total = self._retired
        for dest in self._slots:
            if dest is not None:
                total = _add(total, dest.stats)
        return sub_stats(total, self._totals_base)

    def zero_totals(self) -> None:
        """Start the totals again from zero (``ipvsadm -Z`` of every service)."""
        self._totals_base = _add(self._totals_base, self.totals())

    def note_no_memory(self, svc: VirtualService) -> None:
        self.no_memory += 1
        if self.no_memory & (self.no_memory - 1) == 0:  # 1, 2, 4, 8...: rate-limited
            log.warning("%s: connection table full (%d refusals)", svc, self.no_memory)

    def expire(self, now: int) -> int:
        """Fire the table's due timers, then free trashed dests idle for the trash period."""
        n = int(self.table.expire(now))
        self._purge_trash(now)
        return n

    def set_timeouts(self, tcp: int = 0, tcpfin: int = 0, udp: int = 0) -> None:
        """``ipvsadm --set tcp tcpfin udp`` in seconds; 0 leaves a value unchanged."""
        for value in (tcp, tcpfin, udp):
            if value < 0:
                raise OutOfRange(f"timeouts must be >= 0, got {value}")
        if tcp:
            self.table.set_timeout(IPPROTO_TCP, fastpath.ESTABLISHED, tcp)
        if tcpfin:
            self.table.set_timeout(IPPROTO_TCP, fastpath.FIN_WAIT, tcpfin)
        if udp:
            self.table.set_timeout(IPPROTO_UDP, fastpath.UDP, udp)

    # --- dest slots and the trash ----------------------------------------------------

    def dest_at(self, slot: int) -> Destination | None:
        """The destination (linked or trashed) holding a dest slot."""
        if 0 <= slot < len(self._slots):
            return self._slots[slot]
        return None

    def fwmark_of(self, slot: int) -> int:
        """The firewall mark of the service whose dest holds ``slot`` (0: address service).

        What the kernel keeps in each connection as ``cp->fwmark`` and sync sends; here
        connections and templates know their dest slot, and the slot its service.
        """
        dest = self.dest_at(slot)
        return 0 if dest is None else dest.fwmark

    def new_dest(self, svc: VirtualService, addr: int, port: int) -> Destination:
        if not self._free_slots:
            # Out of slots: give up the revival chance of unreferenced trashed dests.
            self._purge_trash(None)
        if not self._free_slots:
            raise OutOfMemory(f"no dest slot for {svc} -> {format_addr(addr, port)}")
        slot = heapq.heappop(self._free_slots)
        self.table.clear_dest(slot)
        dest = Destination(self._dest_buf, slot, addr, port, svc.fwmark)
        self._slots[slot] = dest
        return dest

    def revive_dest(self, svc: VirtualService, addr: int, port: int) -> Destination | None:
        dest = self._trash.pop((svc.key, addr, port), None)
        if dest is None:
            return None
        self._trash_since.pop(dest.slot, None)
        return dest

    def trash_dest(self, svc: VirtualService, dest: Destination) -> None:
        self._trash[(svc.key, dest.addr, dest.port)] = dest
        self._trash_since[dest.slot] = None

    def trashed(self) -> list[Destination]:
        """Destinations in the trash (deleted, still referenced or recently so)."""
        return list(self._trash.values())

    def _purge_trash(self, now: int | None) -> None:
        """Free trashed dests unreferenced for the trash period (now None: all unreferenced).

        References are connections, templates and the service's scheduler (lblc, lblcr).
        """
        for key, dest in list(self._trash.items()):
            if dest.refs or self._held(key[0], dest, now):
                self._trash_since[dest.slot] = None
                continue
            if now is not None:
                since = self._trash_since.get(dest.slot)
                if since is None:
                    self._trash_since[dest.slot] = now
                    continue
                if now - since < TRASH_PERIOD_MS:
                    continue
            del self._trash[key]
            del self._trash_since[dest.slot]
            self._retired = _add(self._retired, dest.stats)
            self.table.clear_dest(dest.slot)
            self._slots[dest.slot] = None
            heapq.heappush(self._free_slots, dest.slot)

    def _held(self, svc_key: tuple[int, int, int, int], dest: Destination, now: int | None) -> bool:
        # ip_vs_dest_trash_expire frees only a dest whose sole reference is the trash's:
        # an lblc entry or lblcr set of its service's scheduler keeps it. A deleted
        # service's scheduler let go of everything first (ip_vs_unbind_scheduler), and a
        # later service of the same key has a scheduler that never saw this object.
        svc = self.services.get(svc_key)
        return svc is not None and svc.scheduler.holds(dest, now)

    def iter_dests(self) -> Iterator[Destination]:
        for svc in self.services.values():
            yield from svc.dests


def _svc_name(protocol: int, vaddr: int, vport: int, fwmark: int) -> str:
    if fwmark:
        return f"FWM {fwmark}"
    return f"{PROTO_NAMES.get(protocol, str(protocol))} {format_addr(vaddr, vport)}"
