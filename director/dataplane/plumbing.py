"""The director's host plumbing: TUN, VIP routes, proxy ARP, reply steering and the NAT router.

``Plumbing(spec).setup()`` makes the network namespace it runs in able to act as
a VS-NAT director without ip_vs, and ``teardown()`` puts it back exactly as it
was. Everything goes through netlink (pyroute2's IPRoute) and /proc/sys, both
per-namespace, so the daemon only ever touches its own namespace.

What setup adds, in order (teardown undoes it in reverse)::

    tun (lvs0) up, MTU of the public interface, rp_filter 0 on it
    VIP/32 dev tun                      main table: client -> VIP goes to us
    ip_forward 1, forwarding 1 on pub/priv/tun
    tcp_early_demux 0, udp_early_demux 0  forwarded packets never meet local sockets
    proxy neighbour VIP on pub           answer ARP for the VIP without owning it
    proxy_delay 0 on pub                 answer at once, not after ~0.8 s
    default dev tun table T              replies from the reals ...
    rule iif priv lookup T priority P    ... are steered into the TUN
    rule iif tun lookup main priority P+1    only with firewall marks: see below
    per mark N: tun lvs0m<N> up, rp_filter 0,
      default dev lvs0m<N> table T+1+i   (i: N's position in the spec's marks)
      rule fwmark N lookup T+1+i priority P+2
    nat_router/prefix on priv (label)    the reals' default gateway

The VIP is never a local address: a local VIP would be delivered to the
director's own sockets instead of the TUN. ``proxy_arp`` stays 0 (it would
answer for every address routed elsewhere). The rule matches ``iif``, so the
director's own traffic to the reals (health checks) follows the main table, and
packets for the director's own addresses are delivered by the local table
(priority 0) before the rule is consulted.

rp_filter: packets we write to the TUN carry the client's address as source,
which the reverse path would place on the public interface, so strict rp_filter
would drop them. The effective value is max(conf.all, conf.<iface>), so when
conf.all is non-zero setup raises every other interface (and ``default``) to
at least conf.all's value before zeroing it: their effective filtering is
unchanged, and only the TUN is exempt.

Firewall marks. A TUN carries no skb mark, so the mark the operator's own netfilter
rules (nft/iptables, mangle prerouting; never lvsd's) put on a packet is told to the
director by the TUN the packet arrives on: each mark of a fwmark service gets a TUN of
its own, and a policy rule sends packets with that mark to it, whatever their
destination (IPVS's fwmark services match marked packets to any address). The
director reads every TUN and writes only to the address TUN. Packets it writes carry no
mark, but a marking rule broader than the operator meant (one that also matches the
rewritten packet to the real) would mark them again and loop them back to the
director: the ``iif tun lookup main`` rule, consulted before the mark rules, keeps
what the director wrote on the main table.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self

from director.dataplane import offload
from director.dataplane.netlink import NTF_PROXY, IPRoute, NetlinkError
from director.dataplane.tun import TunDevice, open_tun
from director.errors import TunError

log = logging.getLogger(__name__)

DEFAULT_TABLE: Final = 0x1D5
DEFAULT_RULE_PRIORITY: Final = 1000
DEFAULT_MTU: Final = 1500
MAIN_TABLE: Final = 254
SYSCTL_ROOT: Final = Path("/proc/sys")

# Errors that mean "already gone" when undoing: teardown is idempotent.
_GONE: Final = frozenset({errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL})
_RESERVED_TABLES: Final = frozenset({0, 253, 254, 255})
_IFNAMSIZ: Final = 16
_U32_MAX: Final = 2**32 - 1


@dataclass(frozen=True, slots=True)
class PlumbingSpec:
    """What the director's namespace needs; built by the director from its configuration.

    ``vips`` may be empty (a director started without virtual servers, filled by lvsadm:
    ``Plumbing.add_vip``). A VIP on no connected subnet is a routed VIP: an upstream
    router sends its packets to the director, which routes them into the TUN and answers
    no ARP for it. ``public_iface`` defaults to the interface whose connected subnet holds
    the (non-routed) VIPs; ``private_iface`` to the one holding ``nat_router`` or, without
    it, the ``reals``. ``table`` is the routing table for steered replies and
    ``rule_priority`` the priority of ``iif private lookup table`` (below 32766,
    where the main table is consulted). ``mtu`` defaults to the public interface's.
    ``claim_on_setup`` False leaves the VIPs' proxy ARP entries and the nat_router
    address out of ``setup()``: a standby director holds the TUN and the routes but
    does not answer for the VIPs until ``Plumbing.claim()``. ``fwmarks`` are the
    firewall marks steered into TUNs of their own (``fwmark_tun``), through tables
    ``table + 1 ...`` in the order given (``fwmark_table``); with marks, rules at
    ``rule_priority + 1`` and ``+ 2`` are taken too.
    """

    vips: tuple[IPv4Address, ...]
    tun: str = "lvs0"
    public_iface: str | None = None
    private_iface: str | None = None
    reals: tuple[IPv4Address, ...] = ()
    nat_router: IPv4Interface | None = None
    nat_router_label: str | None = None
    table: int = DEFAULT_TABLE
    rule_priority: int = DEFAULT_RULE_PRIORITY
    mtu: int | None = None
    tun_offloads: bool = True
    claim_on_setup: bool = True
    fwmarks: tuple[int, ...] = ()

    @property
    def guard_priority(self) -> int:
        """Priority of ``iif tun lookup main``, before the firewall-mark rules."""
        return self.rule_priority + 1

    @property
    def fwmark_priority(self) -> int:
        """Priority of every ``fwmark N lookup fwmark_table(N)`` rule."""
        return self.rule_priority + 2

    def fwmark_tun(self, mark: int) -> str:
        """The TUN that packets with firewall mark ``mark`` are routed into."""
        return f"{self.tun}m{mark}"

    def fwmark_table(self, mark: int) -> int:
        """The routing table holding ``default dev fwmark_tun(mark)``."""
        return self.table + 1 + self.fwmarks.index(mark)

    def __post_init__(self) -> None:
        if len(set(self.vips)) != len(self.vips):
            raise ValueError(f"PlumbingSpec.vips: duplicates in {[str(v) for v in self.vips]}")
        if not 0 < self.table < 2**32 or self.table in _RESERVED_TABLES:
            raise ValueError(
                f"PlumbingSpec.table: must be 1..2^32-1 and not 253/254/255, got {self.table}"
            )
        if not 0 < self.rule_priority < 32766:
            raise ValueError(
                f"PlumbingSpec.rule_priority: must be 1..32765, got {self.rule_priority}"
            )
        if self.mtu is not None and not 68 <= self.mtu <= 65535:
            raise ValueError(f"PlumbingSpec.mtu: must be 68..65535, got {self.mtu}")
        if self.nat_router_label is not None:
            if self.nat_router is None:
                raise ValueError("PlumbingSpec.nat_router_label: given without nat_router")
            if not 0 < len(self.nat_router_label.encode()) < _IFNAMSIZ:
                raise ValueError(
                    f"PlumbingSpec.nat_router_label: must be 1..15 bytes, "
                    f"got {self.nat_router_label!r}"
                )
        if self.nat_router is not None and self.nat_router.ip in self.vips:
            raise ValueError(f"PlumbingSpec.nat_router: {self.nat_router.ip} is also a VIP")
        self._check_fwmarks()

    def _check_fwmarks(self) -> None:
        if not self.fwmarks:
            return
        if len(set(self.fwmarks)) != len(self.fwmarks):
            raise ValueError(f"PlumbingSpec.fwmarks: duplicates in {list(self.fwmarks)}")
        for mark in self.fwmarks:
            if not 0 < mark <= _U32_MAX:
                raise ValueError(f"PlumbingSpec.fwmarks: must be 1..2^32-1, got {mark}")
            name = self.fwmark_tun(mark)
            if len(name.encode()) >= _IFNAMSIZ:
                raise ValueError(
                    f"PlumbingSpec.fwmarks: mark {mark}'s TUN name {name!r} is over "
                    f"{_IFNAMSIZ - 1} bytes; use a shorter tun name"
                )
            table = self.fwmark_table(mark)
            if table > _U32_MAX or table in _RESERVED_TABLES:
                raise ValueError(
                    f"PlumbingSpec.fwmarks: mark {mark} would use table {table}, which is "
                    "reserved or out of range; choose another table"
                )
        if self.fwmark_priority >= 32766:
            raise ValueError(
                f"PlumbingSpec.rule_priority: with fwmarks must be 1..32763, "
                f"got {self.rule_priority}"
            )


# --- netlink, typed -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    """A policy rule lvsd adds: ``iif`` or ``fwmark`` selects, ``table`` is looked up."""

    table: int
    priority: int
    iifname: str | None = None
    fwmark: int | None = None

    def selector(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.iifname is not None:
            out["iifname"] = self.iifname
        if self.fwmark is not None:
            out["fwmark"] = self.fwmark
        return out

    @property
    def match(self) -> str:
        return f"iif {self.iifname}" if self.iifname is not None else f"fwmark {self.fwmark}"

    def __str__(self) -> str:
        return f"{self.priority}: {self.match} lookup {self.table}"


@dataclass(frozen=True, slots=True)
class _Addr:
    index: int
    iface: IPv4Interface
    label: str


class _Netlink:
    """The few rtnetlink operations plumbing needs, with types (pyroute2 has none)."""

    def __init__(self) -> None:
        self._ipr: Any = IPRoute()

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def link_index(self, name: str) -> int | None:
        found: list[int] = self._ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def link_names(self) -> dict[int, str]:
        return {int(m["index"]): str(m.get("IFLA_IFNAME")) for m in self._ipr.get_links()}

    def link_mtu(self, index: int) -> int:
        return int(self._ipr.link("get", index=index)[0].get("IFLA_MTU"))

    def route_oif(self, addr: IPv4Address) -> int | None:
        """The interface the kernel's unicast route to ``addr`` leaves by (``ip route get``),
        or None when it has no such route (unreachable, local, a blackhole)."""
        try:
            routes = self._ipr.route("get", dst=str(addr))
        except NetlinkError:
            return None
        for r in routes:
            if r.get("type", 1) == 1 and r.get_attr("RTA_OIF") is not None:
                return int(r.get_attr("RTA_OIF"))
        return None

    def link_up(self, index: int, mtu: int) -> None:
        self._ipr.link("set", index=index, state="up", mtu=mtu)

    def addresses(self) -> list[_Addr]:
        return [
            _Addr(
                index=int(m["index"]),
                iface=IPv4Interface(f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}"),
                label=str(m.get("IFA_LABEL") or ""),
            )
            for m in self._ipr.get_addr(family=socket.AF_INET)
        ]

    def addr_add(self, index: int, iface: IPv4Interface, label: str | None) -> None:
        extra = {"label": label} if label else {}
        self._ipr.addr(
            "add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen, **extra
        )

    def addr_del(self, index: int, iface: IPv4Interface) -> None:
        self._ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)

    def route_add(self, dst: IPv4Network, oif: int, table: int) -> None:
        self._ipr.route("add", dst=str(dst), oif=oif, table=table)

    def route_del(self, dst: IPv4Network, oif: int | None, table: int) -> None:
        where = {"oif": oif} if oif is not None else {}
        self._ipr.route("del", dst=str(dst), table=table, **where)

    def routes(self, table: int) -> list[tuple[IPv4Network, int | None]]:
        """(destination, oif) of every IPv4 route in ``table``."""
        found: list[tuple[IPv4Network, int | None]] = []
        for m in self._ipr.get_routes(family=socket.AF_INET, table=table):
            if (m.get("RTA_TABLE") or m["table"]) != table:
                continue
            dst = m.get("RTA_DST") or "0.0.0.0"
            oif = m.get("RTA_OIF")
            found.append((IPv4Network(f"{dst}/{m['dst_len']}"), None if oif is None else int(oif)))
        return found

    def rule_add(self, rule: _Rule) -> None:
        self._ipr.rule("add", table=rule.table, priority=rule.priority, **rule.selector())

    def rule_del(self, rule: _Rule) -> None:
        self._ipr.rule("del", table=rule.table, priority=rule.priority, **rule.selector())

    def rule_exists(self, rule: _Rule) -> bool:
        return any(
            m.get("FRA_IIFNAME") == rule.iifname
            and m.get("FRA_FWMARK") == rule.fwmark
            and (m.get("FRA_TABLE") or m["table"]) == rule.table
            and m.get("FRA_PRIORITY") == rule.priority
            for m in self._ipr.get_rules(family=socket.AF_INET)
        )

    def proxy_add(self, dst: IPv4Address, ifindex: int) -> None:
        self._ipr.neigh("add", dst=str(dst), ifindex=ifindex, flags=NTF_PROXY)

    def proxy_del(self, dst: IPv4Address, ifindex: int) -> None:
        self._ipr.neigh("del", dst=str(dst), ifindex=ifindex, flags=NTF_PROXY)

    def proxy_exists(self, dst: IPv4Address, ifindex: int) -> bool:
        try:
            self._ipr.neigh("get", dst=str(dst), ifindex=ifindex, flags=NTF_PROXY)
        except NetlinkError as e:
            if e.code == errno.ENOENT:
                return False
            raise
        return True


def _netlink_text(e: NetlinkError) -> str:
    code = int(e.code)
    return f"{errno.errorcode.get(code, str(code))} ({os.strerror(code)})"


# --- sysctls --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sysctls:
    """/proc/sys of the current namespace; keys are path components (iface names may hold '.')."""

    root: Path = SYSCTL_ROOT

    def path(self, key: tuple[str, ...]) -> Path:
        return self.root.joinpath(*key)

    def exists(self, key: tuple[str, ...]) -> bool:
        return self.path(key).exists()

    def read(self, key: tuple[str, ...]) -> str:
        return self.path(key).read_text().strip()

    def write(self, key: tuple[str, ...], value: str) -> None:
        self.path(key).write_text(value + "\n")

    def conf_ifaces(self) -> list[str]:
        """Every entry under net/ipv4/conf but ``all``: ``default`` and each interface."""
        base = self.path(("net", "ipv4", "conf"))
        return sorted(p.name for p in base.iterdir() if p.name != "all")


def _key_text(key: tuple[str, ...]) -> str:
    return ".".join(key)


# --- the journal of changes -----------------------------------------------------------------


class _Change(Protocol):
    def undo(self, nl: _Netlink, sysctls: _Sysctls) -> None: ...


@dataclass(frozen=True, slots=True)
class _TunOpened:
    dev: TunDevice

    def undo(self, nl: _Netlink, sysctls: _Sysctls) -> None:
        self.dev.close()

    def __str__(self) -> str:
        return f"tun {self.dev.name}"


@dataclass(frozen=True, slots=True)
class _SysctlChanged:
    key: tuple[str, ...]
    previous: str

    def undo(self, nl: _Netlink, sysctls: _Sysctls) -> None:
        # Per-interface entries vanish with their interface (the TUN's do).
        if sysctls.exists(self.key) and sysctls.read(self.key) != self.previous:
            sysctls.write(self.key, self.previous)

    def __str__(self) -> str:
        return f"sysctl {_key_text(self.key)} (was {self.previous})"


def restore_sysctls(
    changes: Sequence[tuple[tuple[str, ...], str]], sysctls: _Sysctls | None = None
) -> tuple[str, ...]:
    """Put back ``Plumbing.sysctl_changes`` of a director that died, newest first, as its
    teardown would have; returns what was restored. An entry whose interface is gone (the
    TUN's) or whose value is already the previous one is skipped; a failed write is
    logged and the rest still restored."""
    sysctls = sysctls or _Sysctls()
    done: list[str] = []
    for key, previous in reversed(changes):
        change = _SysctlChanged(key, previous)
        try:
            if not sysctls.exists(key) or sysctls.read(key) == previous:
                continue
            sysctls.write(key, previous)
        except OSError as e:
            log.warning("plumbing: restoring %s: %s", change, e)
            continue
        done.append(str(change))
    return tuple(done)


@dataclass(frozen=True, slots=True)
class _RouteAdded:
    dst: IPv4Network
    oif: int
    table: int

    def undo(self, nl: _Netlink, sysctls: _Sysctls) -> None:
        nl.route_del(self.dst, self.oif, self.table)

    def __str__(self) -> str:
        return f"route {self.dst} dev #{self.oif} table {self.table}"


@dataclass(frozen=True, slots=True)
class _ProxyAdded:
    vip: IPv4Address
    ifindex: int
    ifname: str

    def undo(self, nl: _Netlink, sysctls: _Sysctls) -> None:
        nl.proxy_del(self.vip, self.ifindex)

    def __str__(self) -> str:
        return f"proxy neighbour {self.vip} dev {self.ifname}"


@dataclass(frozen=True, slots=True)
class _RuleAdded:
    rule: _Rule

    def undo(self, nl: _Netlink, sysctls: _Sysctls) -> None:
        nl.rule_del(self.rule)

    def __str__(self) -> str:
        return f"rule {self.rule}"


@dataclass(frozen=True, slots=True)
class _AddressAdded:
    iface: IPv4Interface
    ifindex: int
    ifname: str

    def undo(self, nl: _Netlink, sysctls: _Sysctls) -> None:
        nl.addr_del(self.ifindex, self.iface)

    def __str__(self) -> str:
        return f"address {self.iface} dev {self.ifname}"


# --- interfaces -----------------------------------------------------------------------------


def _find_iface(nl: _Netlink, addr: IPv4Address, what: str) -> str:
    names = nl.link_names()
    best: dict[str, int] = {}
    for a in nl.addresses():
        if addr in a.iface.network and a.iface.network.prefixlen < 32:
            name = names.get(a.index, f"#{a.index}")
            best[name] = max(best.get(name, -1), a.iface.network.prefixlen)
    if not best:
        raise TunError(f"{what}: no interface has a connected subnet holding {addr}")
    longest = max(best.values())
    winners = sorted(name for name, plen in best.items() if plen == longest)
    if len(winners) > 1:
        raise TunError(
            f"{what}: {addr} is in a /{longest} connected on several interfaces "
            f"({', '.join(winners)}); name the interface"
        )
    return winners[0]


def _real_iface(nl: _Netlink, real: IPv4Address) -> str:
    """The interface the kernel routes ``real`` through: its connected subnet's, or the
    route's when it sits behind a router."""
    oif = nl.route_oif(real)
    if oif is None:
        raise TunError(f"real server {real}: the kernel has no route to it (ip route get {real})")
    return nl.link_names().get(oif, f"#{oif}")


def local_vip_message(vip: IPv4Address, where: str) -> str:
    """Why a VIP that is a local address of the director is refused."""
    return (
        f"VIP {vip}: is a local address of this director (on {where}), as ipvsadm scripts "
        "and keepalived configure a VIP; lvsd serves a VIP from its data plane, and the "
        f"kernel would answer its packets itself: remove it (ip addr del {vip}/<prefix> dev "
        f"{where.split(':')[0]}) and try again"
    )


def _connected(nl: _Netlink, addr: IPv4Address) -> bool:
    """Whether a connected subnet (not a /32) of some interface holds ``addr``."""
    return any(addr in a.iface.network and a.iface.network.prefixlen < 32 for a in nl.addresses())


def local_address(addr: IPv4Address) -> str | None:
    """``addr/prefix on IFACE`` if ``addr`` is one of this namespace's own addresses, else
    None. Blocks on netlink: not from the event loop's thread."""
    with _Netlink() as nl:
        names = nl.link_names()
        for a in nl.addresses():
            if a.iface.ip == addr:
                return f"{a.iface} on {names.get(a.index, f'#{a.index}')}"
    return None


def find_iface_for(addr: IPv4Address) -> str:
    """The interface whose connected subnet holds ``addr`` (longest prefix wins).

    Raises TunError when no interface's subnet holds it, or when several
    interfaces hold it with the same longest prefix.
    """
    with _Netlink() as nl:
        return _find_iface(nl, addr, f"find_iface_for({addr})")


# --- the plumbing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ifaces:
    public: str
    public_index: int
    private: str
    private_index: int


def _resolve_ifaces(nl: _Netlink, spec: PlumbingSpec) -> _Ifaces:
    if spec.public_iface is not None:
        public = spec.public_iface
    else:
        found = {
            _find_iface(nl, vip, f"public interface for VIP {vip}")
            for vip in spec.vips
            if _connected(nl, vip)
        }
        if not found:
            raise TunError(
                "public interface: not named (public_iface), and no VIP on a connected "
                f"subnet to find it by (VIPs: {', '.join(map(str, spec.vips)) or 'none yet'})"
            )
        if len(found) > 1:
            raise TunError(
                f"public interface: the VIPs are on several interfaces ({', '.join(sorted(found))})"
                "; name one"
            )
        public = found.pop()
    if spec.private_iface is not None:
        private = spec.private_iface
    elif spec.nat_router is not None:
        private = _find_iface(nl, spec.nat_router.ip, f"private interface for {spec.nat_router}")
    elif spec.reals:
        found = {_real_iface(nl, r) for r in spec.reals}
        if len(found) > 1:
            raise TunError(
                f"private interface: the reals are on several interfaces "
                f"({', '.join(sorted(found))}); name one"
            )
        private = found.pop()
    else:
        raise TunError("private interface: not named, and no nat_router or reals to find it by")
    if public == private:
        raise TunError(f"public and private interface: both are {public}; VS-NAT needs two")
    indexes = []
    for role, name in (("public", public), ("private", private)):
        index = nl.link_index(name)
        if index is None:
            raise TunError(f"{role} interface: no interface named {name!r}")
        indexes.append(index)
    return _Ifaces(public, indexes[0], private, indexes[1])


@dataclass(slots=True)
class Plumbing:
    """Sets up and tears down the director's namespace plumbing for one ``PlumbingSpec``.

    ``setup()`` records every change it makes; ``teardown()`` undoes exactly
    those, newest first, restores each touched sysctl to its previous value, and
    may be called any number of times, also after a failed ``setup()`` (which
    tears down by itself before raising). Use as a context manager. Call from the
    start-up and shutdown path, not from the packet loop: netlink calls block.
    """

    spec: PlumbingSpec
    sysctls: _Sysctls = field(default_factory=_Sysctls)
    _journal: list[_Change] = field(default_factory=list, init=False, repr=False)
    _tun: TunDevice | None = field(default=None, init=False, repr=False)
    _fwmark_tuns: dict[int, TunDevice] = field(default_factory=dict, init=False, repr=False)
    _ifs: _Ifaces | None = field(default=None, init=False, repr=False)
    _runtime_vips: list[IPv4Address] = field(default_factory=list, init=False, repr=False)
    _holding: bool = field(default=False, init=False, repr=False)  # answers for the VIPs

    @property
    def tun(self) -> TunDevice:
        """The open TUN; only between ``setup()`` and ``teardown()``."""
        if self._tun is None or self._tun.closed:
            raise TunError(f"tun {self.spec.tun}: plumbing is not set up")
        return self._tun

    @property
    def fwmark_tuns(self) -> dict[int, TunDevice]:
        """The open TUN of each firewall mark of the spec; only between setup and teardown."""
        if self._tun is None or self._tun.closed:
            raise TunError(f"tun {self.spec.tun}: plumbing is not set up")
        return dict(self._fwmark_tuns)

    @property
    def sysctl_changes(self) -> tuple[tuple[tuple[str, ...], str], ...]:
        """(key, previous value) of every sysctl setup changed, oldest first: what
        ``restore_sysctls`` puts back for a director that died without its teardown."""
        return tuple((c.key, c.previous) for c in self._journal if isinstance(c, _SysctlChanged))

    @property
    def changes(self) -> tuple[str, ...]:
        """What setup added and teardown will undo, oldest first, for logs and tests."""
        return tuple(str(c) for c in self._journal)

    def __enter__(self) -> Self:
        self.setup()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.teardown()

    # -- setup --

    def setup(self) -> None:
        """Create the TUN and everything around it; raise TunError leaving nothing behind."""
        if self._journal:
            raise TunError(f"tun {self.spec.tun}: plumbing is already set up")
        try:
            with _Netlink() as nl:
                self._setup(nl)
        except BaseException:
            try:
                self.teardown()
            except TunError as undo_error:
                log.error("plumbing: teardown after a failed setup: %s", undo_error)
            raise

    def _set_sysctl(self, key: tuple[str, ...], value: str, *, force: bool = False) -> None:
        previous = self.sysctls.read(key)
        if previous == value and not force:
            return
        self._journal.append(_SysctlChanged(key, previous))
        self.sysctls.write(key, value)
        log.debug("plumbing: sysctl %s = %s (was %s)", _key_text(key), value, previous)

    def _note_sysctl(self, key: tuple[str, ...]) -> None:
        """Record a value that a write elsewhere is about to change as a side effect."""
        self._journal.append(_SysctlChanged(key, self.sysctls.read(key)))

    def _add(self, change: _Change) -> None:
        self._journal.append(change)
        log.debug("plumbing: added %s", change)

    def _setup(self, nl: _Netlink) -> None:
        spec = self.spec
        ifs = _resolve_ifaces(nl, spec)
        local = {a.iface.ip: a.index for a in nl.addresses()}
        names = nl.link_names()
        for vip in spec.vips:
            if vip in local:
                raise TunError(local_vip_message(vip, names.get(local[vip], "?")))
        for real in spec.reals:  # reachable as the kernel routes, not by lvs.cf's subnets
            _real_iface(nl, real)
        label = spec.nat_router_label
        if label is not None and label != ifs.private and not label.startswith(ifs.private + ":"):
            raise TunError(
                f"nat_router label: must be {ifs.private} or {ifs.private}:<alias>, got {label!r}"
            )
        for key in (("net", "ipv4", "conf", "all", "proxy_arp"), _conf(ifs.public, "proxy_arp")):
            if self.sysctls.read(key) != "0":
                log.warning(
                    "plumbing: %s is on; the director will answer ARP for more than its VIPs",
                    _key_text(key),
                )

        # 1. the TUN, up, rp_filter off on it.
        tun = open_tun(spec.tun, offloads=spec.tun_offloads)
        self._tun = tun
        self._add(_TunOpened(tun))
        mtu = spec.mtu or nl.link_mtu(ifs.public_index) or DEFAULT_MTU
        self._netlink(f"link set {tun.name} up mtu {mtu}", nl.link_up, tun.ifindex, mtu)
        self._exempt_from_all_rp_filter(tun.name)
        # Written even when already 0: a value never written follows later writes
        # to conf.default, and the daemon must not depend on nobody making them.
        self._set_sysctl(_conf(tun.name, "rp_filter"), "0", force=True)

        # 2. VIP/32 into the TUN.
        for vip in spec.vips:
            dst = IPv4Network(vip)
            self._netlink(
                f"route add {dst} dev {tun.name}", nl.route_add, dst, tun.ifindex, MAIN_TABLE
            )
            self._add(_RouteAdded(dst, tun.ifindex, MAIN_TABLE))

        # 3. forwarding, and ARP for the VIPs on the public side.
        self._enable_forwarding((ifs.public, ifs.private, tun.name))
        # Early demux attaches any local socket with the packet's 4-tuple -- such as a
        # TIME_WAIT left by a proxy that once listened on a VIP -- and ip_forward drops
        # a packet that carries a socket: clients reusing those ports would see the
        # VIP go silent. Without early demux forwarded packets never meet local sockets.
        for proto in ("tcp", "udp"):
            self._set_sysctl(("net", "ipv4", f"{proto}_early_demux"), "0")
        self._set_sysctl(("net", "ipv4", "neigh", ifs.public, "proxy_delay"), "0")
        self._ifs = ifs
        if spec.claim_on_setup:
            self._claim_vips(nl, ifs)
            self._holding = True

        # 4. replies from the private segment into the TUN.
        default = IPv4Network("0.0.0.0/0")
        self._netlink(
            f"route add default dev {tun.name} table {spec.table}",
            nl.route_add,
            default,
            tun.ifindex,
            spec.table,
        )
        self._add(_RouteAdded(default, tun.ifindex, spec.table))
        self._add_rule(nl, _Rule(spec.table, spec.rule_priority, iifname=ifs.private))

        # 5. marked packets into the TUN of their mark; what we write stays on main.
        if spec.fwmarks:
            self._add_rule(nl, _Rule(MAIN_TABLE, spec.guard_priority, iifname=tun.name))
        for mark in spec.fwmarks:
            self._setup_fwmark(nl, mark, mtu)

        # 6. the reals' gateway.
        if spec.claim_on_setup:
            self._claim_router(nl, ifs)

        summary = [
            f"tun {tun.name} up (mtu {mtu}, offloads {','.join(sorted(tun.offloads)) or 'none'})",
            *(f"VIP {vip} proxied on {ifs.public}" for vip in spec.vips if spec.claim_on_setup),
            f"replies from {ifs.private} via table {spec.table} (rule {spec.rule_priority})",
        ]
        summary.extend(
            f"fwmark {mark} into {self.spec.fwmark_tun(mark)} via table "
            f"{spec.fwmark_table(mark)} (rule {spec.fwmark_priority})"
            for mark in spec.fwmarks
        )
        if spec.nat_router is not None and spec.claim_on_setup:
            summary.append(f"nat_router {spec.nat_router} on {label or ifs.private}")
        if not spec.claim_on_setup:
            summary.append("VIPs and nat_router not claimed (standby)")
        log.info("plumbing: %s", ", ".join(summary))

    def _add_rule(self, nl: _Netlink, rule: _Rule) -> None:
        self._netlink(
            f"rule add {rule.match} lookup {rule.table} priority {rule.priority}",
            nl.rule_add,
            rule,
        )
        self._add(_RuleAdded(rule))

    def _setup_fwmark(self, nl: _Netlink, mark: int, mtu: int) -> None:
        spec = self.spec
        tun = open_tun(spec.fwmark_tun(mark), offloads=spec.tun_offloads)
        self._fwmark_tuns[mark] = tun
        self._add(_TunOpened(tun))
        self._netlink(f"link set {tun.name} up mtu {mtu}", nl.link_up, tun.ifindex, mtu)
        # The director never writes to it; rp_filter 0 as on the address TUN all the same,
        # so no future write path is filtered.
        self._set_sysctl(_conf(tun.name, "rp_filter"), "0", force=True)
        table = spec.fwmark_table(mark)
        default = IPv4Network("0.0.0.0/0")
        self._netlink(
            f"route add default dev {tun.name} table {table}",
            nl.route_add,
            default,
            tun.ifindex,
            table,
        )
        self._add(_RouteAdded(default, tun.ifindex, table))
        self._add_rule(nl, _Rule(table, spec.fwmark_priority, fwmark=mark))

    def _arp_vips(self, nl: _Netlink, ifs: _Ifaces) -> list[IPv4Address]:
        """The VIPs this director answers ARP for: those on the public interface's
        connected subnets (a routed VIP's packets come through a router, not ARP)."""
        nets = [
            a.iface.network
            for a in nl.addresses()
            if a.index == ifs.public_index and a.iface.network.prefixlen < 32
        ]
        vips = (*self.spec.vips, *self._runtime_vips)
        return [vip for vip in vips if any(vip in net for net in nets)]

    def add_vip(self, vip: IPv4Address) -> None:
        """Serve ``vip`` from now on (an ``lvsadm -A`` of a new address): route it into the
        TUN and, when it is on the public interface's subnet and this director holds the
        VIPs, answer ARP for it. Refuses (TunError) a VIP that is a local address. Idempotent;
        ``teardown`` removes it with the rest. Blocks on netlink: call from a thread."""
        ifs = self._resolved()
        if vip in self.spec.vips or vip in self._runtime_vips:
            return
        with _Netlink() as nl:
            names = nl.link_names()
            for a in nl.addresses():
                if a.iface.ip == vip:
                    raise TunError(local_vip_message(vip, names.get(a.index, "?")))
            dst = IPv4Network(vip)
            tun = self.tun
            self._netlink(
                f"route add {dst} dev {tun.name}", nl.route_add, dst, tun.ifindex, MAIN_TABLE
            )
            self._add(_RouteAdded(dst, tun.ifindex, MAIN_TABLE))
            self._runtime_vips.append(vip)
            if self._holding:
                self._claim_vips(nl, ifs)
        log.info("plumbing: VIP %s routed into %s", vip, self.tun.name)

    def remove_vip(self, vip: IPv4Address) -> None:
        """Stop serving a VIP ``add_vip`` added: its route and proxy entry go. Blocks."""
        if vip not in self._runtime_vips:
            return
        self._runtime_vips.remove(vip)
        dst = IPv4Network(vip)
        mine = [
            c
            for c in self._journal
            if (isinstance(c, _RouteAdded) and c.dst == dst and c.table == MAIN_TABLE)
            or (isinstance(c, _ProxyAdded) and c.vip == vip)
        ]
        with _Netlink() as nl:
            for change in reversed(mine):
                self._journal.remove(change)
                try:
                    change.undo(nl, self.sysctls)
                except NetlinkError as e:
                    if e.code not in _GONE:
                        raise TunError(f"plumbing: {change}: {_netlink_text(e)}") from e
        log.info("plumbing: VIP %s no longer served", vip)

    @property
    def vips(self) -> tuple[IPv4Address, ...]:
        """Every VIP served now: the configuration's and those ``add_vip`` added."""
        return (*self.spec.vips, *self._runtime_vips)

    def _claim_vips(self, nl: _Netlink, ifs: _Ifaces) -> None:
        for vip in self._arp_vips(nl, ifs):
            if nl.proxy_exists(vip, ifs.public_index):
                log.debug("plumbing: proxy neighbour %s dev %s already there", vip, ifs.public)
                continue
            self._netlink(
                f"neigh add proxy {vip} dev {ifs.public}", nl.proxy_add, vip, ifs.public_index
            )
            self._add(_ProxyAdded(vip, ifs.public_index, ifs.public))

    def _claim_router(self, nl: _Netlink, ifs: _Ifaces) -> None:
        router = self.spec.nat_router
        if router is None:
            return
        if any(a.index == ifs.private_index and a.iface == router for a in nl.addresses()):
            log.debug("plumbing: address %s dev %s already there", router, ifs.private)
            return
        self._netlink(
            f"addr add {router} dev {ifs.private}",
            nl.addr_add,
            ifs.private_index,
            router,
            self.spec.nat_router_label,
        )
        self._add(_AddressAdded(router, ifs.private_index, ifs.private))

    # -- claim and release (failover) --

    @property
    def public_iface(self) -> str:
        """The resolved public interface; only between ``setup()`` and ``teardown()``."""
        return self._resolved().public

    @property
    def private_iface(self) -> str:
        """The resolved private interface; only between ``setup()`` and ``teardown()``."""
        return self._resolved().private

    @property
    def claimed(self) -> bool:
        """Whether this director answers ARP for the VIPs (holds their proxy entries)."""
        return any(isinstance(c, _ProxyAdded) for c in self._journal)

    def _resolved(self) -> _Ifaces:
        if self._ifs is None or not self._journal:
            raise TunError(f"tun {self.spec.tun}: plumbing is not set up")
        return self._ifs

    def claim(self) -> None:
        """Answer ARP for every VIP and own the nat_router address; idempotent.

        For a director becoming active. Announcing the move (gratuitous ARP) is the
        caller's: see ``announce()``. Blocks on netlink: call from a thread.
        """
        ifs = self._resolved()
        with _Netlink() as nl:
            self._claim_vips(nl, ifs)
            self._claim_router(nl, ifs)
        self._holding = True
        log.info("plumbing: claimed %s", ", ".join(self._claims()) or "nothing")

    def release(self) -> None:
        """Stop answering ARP for the VIPs and drop the nat_router address; idempotent.

        The TUN, routes and steering stay, so a standby can take over again at once.
        Blocks on netlink: call from a thread.
        """
        self._resolved()
        self._holding = False
        claims = [c for c in self._journal if isinstance(c, _ProxyAdded | _AddressAdded)]
        failures: list[str] = []
        with _Netlink() as nl:
            for change in reversed(claims):
                self._journal.remove(change)
                try:
                    change.undo(nl, self.sysctls)
                except NetlinkError as e:
                    if e.code not in _GONE:
                        failures.append(f"{change}: {_netlink_text(e)}")
        if failures:
            raise TunError(f"plumbing: release left {len(failures)}: {'; '.join(failures)}")
        log.info("plumbing: released %s", ", ".join(str(c) for c in claims) or "nothing")

    def _claims(self) -> list[str]:
        return [str(c) for c in self._journal if isinstance(c, _ProxyAdded | _AddressAdded)]

    def _netlink(self, what: str, call: Callable[..., None], *args: object) -> None:
        try:
            call(*args)
        except NetlinkError as e:
            hint = " (left over from a crash? run cleanup_stale)" if e.code == errno.EEXIST else ""
            raise TunError(f"plumbing: {what}: {_netlink_text(e)}{hint}") from e

    def _exempt_from_all_rp_filter(self, tun: str) -> None:
        all_key = ("net", "ipv4", "conf", "all", "rp_filter")
        strictest = self.sysctls.read(all_key)
        if strictest == "0":
            return
        for name in self.sysctls.conf_ifaces():
            if name == tun:
                continue
            key = _conf(name, "rp_filter")
            if int(self.sysctls.read(key)) < int(strictest):
                self._set_sysctl(key, strictest)
        self._set_sysctl(all_key, "0")

    def _enable_forwarding(self, ifaces: Sequence[str]) -> None:
        ip_forward = ("net", "ipv4", "ip_forward")
        if self.sysctls.read(ip_forward) != "1":
            # Writing ip_forward rewrites conf.{all,default,<every iface>}.forwarding:
            # record those first, so that undoing (newest first) restores
            # ip_forward before putting each interface's own value back.
            for name in self.sysctls.conf_ifaces():
                self._note_sysctl(_conf(name, "forwarding"))
            self._set_sysctl(ip_forward, "1")
        for name in ifaces:
            self._set_sysctl(_conf(name, "forwarding"), "1")

    # -- teardown --

    # -- handing over to another process (lvsd run --takeover) --

    def export(self) -> tuple[dict[str, Any], list[int]]:
        """What another process needs to hold this plumbing as its own (``adopt``): the
        journal and claims as JSON data, and the TUN descriptors the journal refers to (by
        position), to be passed with SCM_RIGHTS. This object keeps its own descriptors."""
        fds: list[int] = []
        journal: list[list[Any]] = []
        for c in self._journal:
            if isinstance(c, _TunOpened):
                fds.append(c.dev.fd)
                d = c.dev
                journal.append(
                    ["tun", len(fds) - 1, d.name, d.ifindex, d.vnet_hdr, sorted(d.offloads),
                     d.multi_queue]
                )  # fmt: skip
            elif isinstance(c, _SysctlChanged):
                journal.append(["sysctl", list(c.key), c.previous])
            elif isinstance(c, _RouteAdded):
                journal.append(["route", str(c.dst), c.oif, c.table])
            elif isinstance(c, _ProxyAdded):
                journal.append(["proxy", str(c.vip), c.ifindex, c.ifname])
            elif isinstance(c, _RuleAdded):
                r = c.rule
                journal.append(["rule", r.table, r.priority, r.iifname, r.fwmark])
            elif isinstance(c, _AddressAdded):
                journal.append(["address", str(c.iface), c.ifindex, c.ifname])
        ifs = self._ifs
        state = {
            "journal": journal,
            "ifs": None
            if ifs is None
            else [ifs.public, ifs.public_index, ifs.private, ifs.private_index],
            "runtime_vips": [str(v) for v in self._runtime_vips],
            "holding": self._holding,
            "tun": None if self._tun is None else self._tun.name,
            "fwmark_tuns": {str(m): t.name for m, t in self._fwmark_tuns.items()},
        }
        return state, fds

    def adopt(self, state: dict[str, Any], fds: Sequence[int]) -> None:
        """Hold the plumbing another process set up and exported (``export``), with
        ``fds`` its TUN descriptors received: from now on this object serves and tears
        down as if its own ``setup()`` had made it. TunError if anything does not fit."""
        if self._journal:
            raise TunError(f"tun {self.spec.tun}: plumbing is already set up")
        try:
            devs: dict[str, TunDevice] = {}
            for entry in state["journal"]:
                kind, *a = entry
                change: _Change
                if kind == "tun":
                    dev = TunDevice(
                        name=a[1], fd=fds[a[0]], ifindex=a[2], vnet_hdr=a[3],
                        offloads=frozenset(a[4]), multi_queue=a[5],
                    )  # fmt: skip
                    devs[dev.name] = dev
                    change = _TunOpened(dev)
                elif kind == "sysctl":
                    change = _SysctlChanged(tuple(a[0]), a[1])
                elif kind == "route":
                    change = _RouteAdded(IPv4Network(a[0]), a[1], a[2])
                elif kind == "proxy":
                    change = _ProxyAdded(IPv4Address(a[0]), a[1], a[2])
                elif kind == "rule":
                    change = _RuleAdded(_Rule(a[0], a[1], a[2], a[3]))
                elif kind == "address":
                    change = _AddressAdded(IPv4Interface(a[0]), a[1], a[2])
                else:
                    raise ValueError(f"unknown change {kind!r}")
                self._journal.append(change)
            if state["tun"] != self.spec.tun or state["tun"] not in devs:
                raise ValueError(f"its TUN is {state['tun']!r}, this one's {self.spec.tun!r}")
            self._tun = devs[state["tun"]]
            self._fwmark_tuns = {int(m): devs[n] for m, n in state["fwmark_tuns"].items()}
            ifs = state["ifs"]
            self._ifs = None if ifs is None else _Ifaces(ifs[0], ifs[1], ifs[2], ifs[3])
            self._runtime_vips = [IPv4Address(v) for v in state["runtime_vips"]]
            self._holding = bool(state["holding"])
        except (KeyError, IndexError, TypeError, ValueError) as e:
            self._journal.clear()
            self._tun = None
            self._fwmark_tuns.clear()
            raise TunError(
                f"tun {self.spec.tun}: cannot adopt the plumbing handed over: {e}"
            ) from e
        log.info("plumbing: adopted %d changes and %d TUN queues", len(self._journal), len(devs))

    def teardown(self) -> None:
        """Undo what setup recorded, newest first; idempotent.

        A change already undone by someone else (a route gone with its device)
        counts as undone. Other failures are logged, the rest is still undone,
        and one TunError lists them at the end.
        """
        if not self._journal:
            return
        failures: list[str] = []
        with _Netlink() as nl:
            while self._journal:
                change = self._journal.pop()
                try:
                    change.undo(nl, self.sysctls)
                except NetlinkError as e:
                    if e.code in _GONE:
                        log.debug("plumbing: %s was already gone", change)
                        continue
                    failures.append(f"{change}: {_netlink_text(e)}")
                    log.warning("plumbing: removing %s: %s", change, _netlink_text(e))
                    continue
                except OSError as e:
                    failures.append(f"{change}: {e}")
                    log.warning("plumbing: removing %s: %s", change, e)
                    continue
                log.debug("plumbing: removed %s", change)
        self._tun = None
        self._fwmark_tuns.clear()
        if failures:
            raise TunError(f"plumbing: teardown left {len(failures)}: {'; '.join(failures)}")
        log.info("plumbing: tun %s and its routes, rule and proxy entries removed", self.spec.tun)

    # -- crash recovery --

    @classmethod
    def cleanup_stale(cls, spec: PlumbingSpec) -> tuple[str, ...]:
        """Remove what a killed director with this ``spec`` left behind; return what went.

        Call before ``setup()``. A TUN vanishes with its last fd, and the kernel
        drops the routes through it; what outlives a SIGKILL is the proxy
        neighbour entries, the policy rules (also those of the firewall marks), routes
        left in ``spec.table`` and the marks' tables and the nat_router address, and
        those are removed here. Sysctls cannot be
        restored (their previous values died with the process); setup finds them
        already as it wants them. Raises TunError if the TUN exists: a live
        director still holds it.
        """
        removed: list[str] = []
        with _Netlink() as nl:
            if nl.link_index(spec.tun) is not None:
                raise TunError(
                    f"tun {spec.tun}: exists, so a director still holds it; not cleaning up"
                )
            ifs = _resolve_ifaces(nl, spec)
            stale: list[_Change] = []
            if spec.nat_router is not None and any(
                a.index == ifs.private_index and a.iface == spec.nat_router for a in nl.addresses()
            ):
                stale.append(_AddressAdded(spec.nat_router, ifs.private_index, ifs.private))
            rules = [_Rule(spec.table, spec.rule_priority, iifname=ifs.private)]
            if spec.fwmarks:
                rules.append(_Rule(MAIN_TABLE, spec.guard_priority, iifname=spec.tun))
            rules.extend(
                _Rule(spec.fwmark_table(m), spec.fwmark_priority, fwmark=m) for m in spec.fwmarks
            )
            stale.extend(_RuleAdded(rule) for rule in rules if nl.rule_exists(rule))
            for table in (spec.table, *(spec.fwmark_table(m) for m in spec.fwmarks)):
                stale.extend(
                    _RouteAdded(dst, oif, table) for dst, oif in nl.routes(table) if oif is not None
                )
            stale.extend(
                _ProxyAdded(vip, ifs.public_index, ifs.public)
                for vip in spec.vips
                if nl.proxy_exists(vip, ifs.public_index)
            )
            for change in stale:
                try:
                    change.undo(nl, _Sysctls())
                except NetlinkError as e:
                    if e.code not in _GONE:
                        raise TunError(
                            f"plumbing: removing stale {change}: {_netlink_text(e)}"
                        ) from e
                removed.append(str(change))
            # A killed director's offload program would go on forwarding its connections.
            removed.extend(
                f"offload program on {name}"
                for name, index in (
                    (ifs.public, ifs.public_index),
                    (ifs.private, ifs.private_index),
                )
                if offload.detach_stale(index)
            )
        for what in removed:
            log.info("plumbing: removed stale %s", what)
        return tuple(removed)


def _conf(iface: str, name: str) -> tuple[str, ...]:
    return ("net", "ipv4", "conf", iface, name)


# --- gratuitous ARP -------------------------------------------------------------------------

_SIOCGIFHWADDR: Final = 0x8927
_ETH_P_ARP: Final = 0x0806


def _iface_mac(sock: socket.socket, iface: str) -> str:
    try:
        ifr = fcntl.ioctl(sock, _SIOCGIFHWADDR, struct.pack("256s", iface.encode()))
    except OSError as e:
        raise TunError(f"gratuitous ARP on {iface}: SIOCGIFHWADDR: {e}") from e
    return ":".join(f"{b:02x}" for b in ifr[18:24])


def gratuitous_arp_frames(mac: str, addr: IPv4Address) -> tuple[bytes, bytes]:
    """Two broadcast Ethernet frames announcing ``addr`` at ``mac``.

    A request (who-has addr tell addr) and a reply (addr is-at mac), both with
    psrc = pdst = addr: hosts and switches differ in which one they heed, so a
    director taking over a VIP sends both. Built with ``struct`` (RFC 826 for Ethernet and
    IPv4: 14 + 28 bytes), not scapy, so a director never loads scapy's 20 MiB for 84 bytes.
    """
    hw = bytes.fromhex(mac.replace(":", ""))
    ip = addr.packed
    frames = []
    for op, hwdst in ((1, bytes(6)), (2, b"\xff" * 6)):
        eth = b"\xff" * 6 + hw + struct.pack("!H", _ETH_P_ARP)
        arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + hw + ip + hwdst + ip
        frames.append(eth + arp)
    return frames[0], frames[1]


def _arp_socket(iface: str) -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ARP))
    try:
        sock.bind((iface, 0))
        mac = _iface_mac(sock, iface)
    except OSError as e:
        sock.close()
        raise TunError(f"gratuitous ARP on {iface}: {e}") from e
    return sock, mac


def send_gratuitous_arp(
    iface: str, addr: IPv4Address, count: int = 3, interval_s: float = 0.5
) -> None:
    """Announce ``addr`` on ``iface`` ``count`` times, ``interval_s`` seconds apart.

    Blocks for (count - 1) * interval_s: call it from a thread or start-up code;
    the event loop uses ``announce()``. Raises TunError if the interface is
    unusable.
    """
    if count < 1 or interval_s < 0:
        raise ValueError(
            f"gratuitous ARP: count >= 1 and interval_s >= 0, got {count}, {interval_s}"
        )
    sock, mac = _arp_socket(iface)
    with sock:
        frames = gratuitous_arp_frames(mac, addr)
        for i in range(count):
            if i:
                time.sleep(interval_s)
            for frame in frames:
                sock.send(frame)
    log.debug("plumbing: gratuitous ARP %s is-at %s on %s, %d times", addr, mac, iface, count)


async def announce(
    iface: str, addrs: Iterable[IPv4Address], count: int = 3, interval_s: float = 0.5
) -> None:
    """``send_gratuitous_arp`` for several addresses without blocking the event loop.

    Sends one round for every address, then waits ``interval_s`` on the loop
    between rounds. Event-loop thread only.
    """
    if count < 1 or interval_s < 0:
        raise ValueError(
            f"gratuitous ARP: count >= 1 and interval_s >= 0, got {count}, {interval_s}"
        )
    loop = asyncio.get_running_loop()
    sock, mac = _arp_socket(iface)
    with sock:
        sock.setblocking(False)
        frames = [f for addr in addrs for f in gratuitous_arp_frames(mac, addr)]
        for i in range(count):
            if i:
                await asyncio.sleep(interval_s)
            for frame in frames:
                await loop.sock_sendall(sock, frame)
    log.debug("plumbing: gratuitous ARP for %d frames on %s, %d rounds", len(frames), iface, count)
