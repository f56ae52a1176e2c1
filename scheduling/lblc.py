"""Locality-based least connection, as net/netfilter/ipvs/ip_vs_lblc.c.

Rule: a daddr-keyed table (1024 buckets, hash_32(daddr, 10)) keeps a dest while it is
AVAILABLE, weight > 0 and not lb-overloaded (active > weight while some dest has 2*active
< weight; its OVERLOAD flag is not checked); else the WLC pick (first wins ties) replaces
it. Weight 0 is never chosen. A GC timer driven by ``flow.now`` expires idle entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final, Generic, Protocol, TypeVar

from scheduling.base import DestView, FlowKey, SchedulerBase
from scheduling.wlc import wlc_pick

TAB_BITS: Final = 10
TAB_SIZE: Final = 1 << TAB_BITS
TAB_MASK: Final = TAB_SIZE - 1
MAX_SIZE: Final = TAB_SIZE * 16
CHECK_EXPIRE_INTERVAL_MS: Final = 60_000
ENTRY_TIMEOUT_MS: Final = 6 * 60_000
COUNT_FOR_FULL_EXPIRATION: Final = 30
DEFAULT_EXPIRATION_S: Final = 24 * 60 * 60

E = TypeVar("E", bound="_Entry")


def table_bucket(daddr: int) -> int:
    """``ip_vs_lblc_hashkey``: ``hash_32(daddr, 10)``."""
    return ((daddr * 0x61C88647) & 0xFFFFFFFF) >> (32 - TAB_BITS)


def lb_overloaded(dest: DestView, dests: Sequence[DestView]) -> bool:
    """The kernel's ``is_overloaded``: active > weight and some dest is under half load."""
    if dest.active_conns > dest.weight:
        for d in dests:
            if d.active_conns * 2 < d.weight:
                return True
    return False


@dataclass(slots=True, eq=False)
class LblcEntry:
    """``struct ip_vs_lblc_entry``: daddr -> dest, with the last use (ms)."""

    daddr: int
    dest: DestView
    lastuse: int


class _Entry(Protocol):
    lastuse: int


class LocalityTable(Generic[E]):
    """The lblc/lblcr table: entries by daddr, the ``entries`` counter and the GC timer.

    The kernel timer is emulated from packet time: the first tick is 60 s after the
    first ``advance`` (the first decision once bound), then every 60 s; ticks that fell
    between two decisions run in order, each with its own tick time as "now". Every 30th
    tick is a full check (entries idle >= the expiration); a tick while ``entries`` >
    ``max_size`` is a partial check (idle >= 6 min, bucket by bucket from ``rover``).
    Bucket order matters only to the partial check, so entries live in a dict.
    """

    __slots__ = ("by_daddr", "counter", "entries", "max_size", "next_tick", "rover")

    def __init__(self) -> None:
        self.by_daddr: dict[int, E] = {}
        self.entries = 0
        self.max_size = MAX_SIZE
        self.rover = 0
        self.counter = 1
        self.next_tick: int | None = None

    def add(self, daddr: int, entry: E) -> None:
        """Link ``entry`` (replacing any entry for ``daddr``) and count it, as ``*_hash``."""
        self.by_daddr[daddr] = entry
        self.entries += 1

    def advance(self, now: int, expiration_ms: int) -> None:
        """Run the GC ticks due by ``now`` (ms)."""
        if self.next_tick is None:
            self.next_tick = now + CHECK_EXPIRE_INTERVAL_MS
            return
        while (tick := self.next_tick) <= now:
            if self.counter % COUNT_FOR_FULL_EXPIRATION == 0:
                self._expire(tick - expiration_ms)
                self.counter = 1
                self.next_tick = tick + CHECK_EXPIRE_INTERVAL_MS
            elif self.entries <= self.max_size:
                # nothing changes until the next full check: jump the idle ticks
                due = (now - tick) // CHECK_EXPIRE_INTERVAL_MS + 1
                step = min(due, COUNT_FOR_FULL_EXPIRATION - self.counter)
                self.counter += step
                self.next_tick = tick + step * CHECK_EXPIRE_INTERVAL_MS
            else:
                self._partial_check(tick)
                self.next_tick = tick + CHECK_EXPIRE_INTERVAL_MS

    def _expire(self, cutoff: int) -> None:
        """Full check: drop entries with lastuse <= ``cutoff`` (``now >= lastuse + E``).

        The sweep covers all 1024 buckets, so ``rover`` ends where it began.
        """
        gone = [k for k, en in self.by_daddr.items() if en.lastuse <= cutoff]
        for k in gone:
            del self.by_daddr[k]
        self.entries -= len(gone)

    def _partial_check(self, now: int) -> None:
        goal = min((self.entries - self.max_size) * 4 // 3, self.max_size // 2)
        buckets: dict[int, list[int]] = {}
        for k in self.by_daddr:
            buckets.setdefault(table_bucket(k), []).append(k)
        j = self.rover
        for _ in range(TAB_SIZE):
            j = (j + 1) & TAB_MASK
            for k in buckets.get(j, ()):
                if now >= self.by_daddr[k].lastuse + ENTRY_TIMEOUT_MS:
                    del self.by_daddr[k]
                    self.entries -= 1
                    goal -= 1
            if goal <= 0:
                break
        self.rover = j


class LocalityBasedLeastConnection(SchedulerBase):
    """``lblc``: ``table.entries`` reproduces the kernel's counter, which a replaced entry
    never decrements (only GC does), so it can exceed ``len(table.by_daddr)``."""

    __slots__ = ("expiration_s", "table")
    name: ClassVar[str] = "lblc"
    table: LocalityTable[LblcEntry]
    #: sysctl net.ipv4.vs.lblc_expiration, seconds
    expiration_s: int

    def _reset(self) -> None:
        self.table = LocalityTable()
        self.expiration_s = DEFAULT_EXPIRATION_S

    def _changed(self, kind: str, dest: DestView | None, old: tuple[DestView, ...]) -> None:
        if kind == "init":  # done_service + init_service: a new, empty table
            self.table = LocalityTable()

    def holds(self, dest: DestView, now: int | None = None) -> bool:
        """An entry pointing at ``dest`` holds it (``ip_vs_lblc_new`` takes a reference,
        freeing the entry drops it); GC ticks due by ``now`` run first."""
        table = self.table
        if now is not None and table.next_tick is not None and table.next_tick <= now:
            table.advance(now, self.expiration_s * 1000)
        return any(en.dest is dest for en in table.by_daddr.values())

    def lookup(self, daddr: int) -> DestView | None:
        """The dest cached for ``daddr``, or None."""
        en = self.table.by_daddr.get(daddr)
        return en.dest if en is not None else None

    def schedule(self, flow: FlowKey) -> DestView | None:
        now = flow.now
        table = self.table
        if table.next_tick is None or table.next_tick <= now:
            table.advance(now, self.expiration_s * 1000)
        daddr = flow.daddr
        en = table.by_daddr.get(daddr)
        if en is not None:
            en.lastuse = now
            cached = en.dest
            if cached.available and cached.weight > 0 and not lb_overloaded(cached, self._dests):
                return cached
        d = wlc_pick(self._dests)
        if d is None:
            return None
        if en is not None and en.dest is d:
            return d
        # ip_vs_lblc_new(): a replaced entry is unlinked without decrementing entries
        table.add(daddr, LblcEntry(daddr, d, now))
        return d
