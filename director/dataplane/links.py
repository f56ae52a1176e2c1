"""The link layer of direct routing: packet sockets and real servers' link addresses.

A direct-routing connection's packets leave the director unchanged at L3, framed to the
real server's MAC (ip_vs_dr_xmit). The fast path writes each one to a packet socket bound
to the interface the kernel routes the real's address through; this module opens those
sockets (one per interface, AF_PACKET/SOCK_RAW with protocol 0, so they never receive,
and PACKET_VNET_HDR, so offloaded packets keep their metadata) and finds the link
addresses in the kernel's own tables: the route to the real (its next hop: the real
itself on a shared segment, else the route's gateway, as the kernel's route lookup
gives it), the neighbour entry of that next hop and the interface's address. A next hop
the kernel has not resolved yet is asked for with one UDP datagram to its discard port,
which makes the kernel send its ARP request; the next refresh finds the answer.

Blocking netlink calls: run them off the event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from director.dataplane.netlink import IPRoute, NetlinkError

log = logging.getLogger(__name__)

SOL_PACKET = 263
PACKET_VNET_HDR = 15
_DISCARD_PORT = 9
# Neighbour states with a usable link address (NUD_REACHABLE, STALE, DELAY, PROBE,
# PERMANENT, NOARP): a STALE entry still names the right host until it is proven wrong.
_NUD_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x80 | 0x40
_SNDBUF = 4 << 20


@dataclass(frozen=True, slots=True)
class Link:
    """Where a real server's routed packets go: ``fd`` (a packet socket), the next hop's
    ``mac`` and the interface's ``src_mac`` (48-bit ints), and the interface's name."""

    fd: int
    mac: int
    src_mac: int
    iface: str


def _mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


class Links:
    """Packet sockets per interface and link-address lookups for real servers."""

    def __init__(self) -> None:
        self._ipr: Any = None
        self._socks: dict[int, socket.socket] = {}
        self._poked: set[IPv4Address] = set()

    def _nl(self) -> Any:
        if self._ipr is None:
            self._ipr = IPRoute()
        return self._ipr

    def close(self) -> None:
        for s in self._socks.values():
            s.close()
        self._socks.clear()
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def _socket(self, ifindex: int) -> socket.socket:
        s = self._socks.get(ifindex)
        if s is None:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            try:
                s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
                s.bind(_bind_addr(self._nl(), ifindex))
                s.setblocking(False)
            except BaseException:
                s.close()
                raise
            self._socks[ifindex] = s
        return s

    def next_hop(self, addr: IPv4Address) -> tuple[int, IPv4Address] | None:
        """(ifindex, next hop) of the kernel's route to ``addr``; None when there is none
        or it is not a unicast route out of an interface (local, unreachable)."""
        try:
            routes = self._nl().route("get", dst=str(addr))
        except NetlinkError:
            return None
        for r in routes:
            if r.get("type", 1) != 1:  # RTN_UNICAST
                return None
            oif = r.get_attr("RTA_OIF")
            if oif is None:
                return None
            gw = r.get_attr("RTA_GATEWAY")
            return int(oif), IPv4Address(gw) if gw else addr
        return None

    def resolve(self, addr: IPv4Address) -> Link | None:
        """The link of real server ``addr``, or None while its next hop's link address is
        unknown (the kernel is then asked to resolve it)."""
        hop = self.next_hop(addr)
        if hop is None:
            return None
        ifindex, nexthop = hop
        nl = self._nl()
        mac = None
        for n in nl.get_neighbours(ifindex=ifindex, dst=str(nexthop)):
            lladdr = n.get_attr("NDA_LLADDR")
            if lladdr and n["state"] & _NUD_VALID:
                mac = _mac(lladdr)
                break
        if mac is None:
            self._poke(nexthop)
            return None
        self._poked.discard(nexthop)
        (link,) = nl.get_links(ifindex)
        src = link.get_attr("IFLA_ADDRESS")
        name = link.get_attr("IFLA_IFNAME")
        return Link(self._socket(ifindex).fileno(), mac, _mac(src) if src else 0, name)

    def mtu(self, addr: IPv4Address) -> int | None:
        """The MTU of the interface the kernel routes ``addr`` through (a tunnelled real's
        packets must fit it once encapsulated), or None without a route."""
        hop = self.next_hop(addr)
        if hop is None:
            return None
        (link,) = self._nl().get_links(hop[0])
        return int(link.get_attr("IFLA_MTU"))

    def _poke(self, nexthop: IPv4Address) -> None:
        """One empty datagram to the next hop's discard port: the kernel resolves it."""
        if nexthop not in self._poked:
            log.info("links: asking the kernel to resolve %s", nexthop)
        self._poked.add(nexthop)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.sendto(b"", (str(nexthop), _DISCARD_PORT))
            except OSError as e:
                log.debug("links: %s: %s", nexthop, e)


def _bind_addr(nl: Any, ifindex: int) -> tuple[str, int]:
    (link,) = nl.get_links(ifindex)
    return (str(link.get_attr("IFLA_IFNAME")), 0)
