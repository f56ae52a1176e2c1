"""Locality-based least connection with replication, as net/netfilter/ipvs/ip_vs_lblcr.c.

Rule: a daddr-keyed table holds a dest set (newest first); the pick is the set's WLC
minimum among AVAILABLE members (newest wins ties) unless lb-overloaded, then the
service-wide WLC pick (first wins ties) joins the set; a set unchanged for the expiration
loses its most loaded member. Weight 0 is never chosen. GC as lblc, from ``flow.now``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from scheduling.base import DestView, FlowKey, SchedulerBase
from scheduling.lblc import DEFAULT_EXPIRATION_S, LocalityTable, lb_overloaded
from scheduling.wlc import wlc_pick


@dataclass(slots=True, eq=False)
class LblcrEntry:
    """``struct ip_vs_lblcr_entry``: daddr -> dest set (newest first), set.lastmod, lastuse."""

    daddr: int
    lastuse: int
    lastmod: int
    members: list[DestView] = field(default_factory=list)

    def insert(self, dest: DestView, now: int) -> None:
        """``ip_vs_dest_set_insert(check=true)``: prepend unless already a member."""
        for d in self.members:
            if d is dest:
                return
        self.members.insert(0, dest)
        self.lastmod = now

    def erase(self, dest: DestView, now: int) -> None:
        """``ip_vs_dest_set_erase``."""
        for i, d in enumerate(self.members):
            if d is dest:
                del self.members[i]
                self.lastmod = now
                return


def set_min(members: list[DestView]) -> DestView | None:
    """``ip_vs_dest_set_min``: WLC over AVAILABLE members with no OVERLOAD."""
    it = iter(members)
    for least in it:
        if least.overloaded:
            continue
        if least.weight > 0 and least.available:
            break
    else:
        return None
    loh = (least.active_conns << 8) + least.inactive_conns
    for d in it:
        if d.overloaded:
            continue
        doh = (d.active_conns << 8) + d.inactive_conns
        if loh * d.weight > doh * least.weight and d.available:
            least = d
            loh = doh
    return least


def set_max(members: list[DestView]) -> DestView | None:
    """``ip_vs_dest_set_max``: the most loaded member with weight > 0 (no flag tests)."""
    it = iter(members)
    for most in it:
        if most.weight > 0:
            break
    else:
        return None
    moh = (most.active_conns << 8) + most.inactive_conns
    for d in it:
        doh = (d.active_conns << 8) + d.inactive_conns
        if moh * d.weight < doh * most.weight and d.weight > 0:
            most = d
            moh = doh
    return most


class LocalityBasedLeastConnectionReplication(SchedulerBase):
    """``lblcr``: ``table.entries`` is exact (lblcr frees entries with accounting)."""

    __slots__ = ("expiration_s", "table")
    name: ClassVar[str] = "lblcr"
    table: LocalityTable[LblcrEntry]
    #: sysctl net.ipv4.vs.lblcr_expiration, seconds
    expiration_s: int

    def _reset(self) -> None:
        self.table = LocalityTable()
        self.expiration_s = DEFAULT_EXPIRATION_S

    def _changed(self, kind: str, dest: DestView | None, old: tuple[DestView, ...]) -> None:
        if kind == "init":
            self.table = LocalityTable()

    def holds(self, dest: DestView, now: int | None = None) -> bool:
        """A set containing ``dest`` holds it (``ip_vs_dest_set_insert`` takes a reference,
        erasing the member or freeing the entry drops it); GC ticks due by ``now`` run first."""
        table = self.table
        if now is not None and table.next_tick is not None and table.next_tick <= now:
            table.advance(now, self.expiration_s * 1000)
        return any(d is dest for en in table.by_daddr.values() for d in en.members)

    def members(self, daddr: int) -> list[DestView]:
        """A copy of the set kept for ``daddr`` (newest first); empty when there is none."""
        en = self.table.by_daddr.get(daddr)
        return list(en.members) if en is not None else []

    def schedule(self, flow: FlowKey) -> DestView | None:
        now = flow.now
        table = self.table
        expiration_ms = self.expiration_s * 1000
        if table.next_tick is None or table.next_tick <= now:
            table.advance(now, expiration_ms)
        dests = self._dests
        daddr = flow.daddr
        en = table.by_daddr.get(daddr)
        if en is not None:
            en.lastuse = now
            d = set_min(en.members)
            if len(en.members) > 1 and now > en.lastmod + expiration_ms:
                m = set_max(en.members)
                if m is not None:
                    en.erase(m, now)
            # d is returned even if it was the member just erased, as the kernel does
            if d is not None and not lb_overloaded(d, dests):
                return d
            d = wlc_pick(dests)
            if d is None:
                return None
            en.insert(d, now)
            return d
        d = wlc_pick(dests)
        if d is None:
            return None
        table.add(daddr, LblcrEntry(daddr, now, now, [d]))
        return d
