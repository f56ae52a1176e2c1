"""Destination hashing, as net/netfilter/ipvs/ip_vs_dh.c.

Rule: a 256-bucket table, bucket i holding the (i mod n)-th dest in list order (weights
are not used to build it), looked up with hash_32(daddr, 8). The table is rebuilt on
init/add/del but not on upd. No tie-break and no fallback: a bucket whose dest is not
AVAILABLE, has weight <= 0 or OVERLOAD yields None, so weight 0 is never chosen.
"""

from __future__ import annotations

from typing import ClassVar, Final

from scheduling.base import DestView, FlowKey, SchedulerBase

TAB_BITS: Final = 8
TAB_SIZE: Final = 1 << TAB_BITS


class DestinationHashing(SchedulerBase):
    """``dh``: ``_table`` has TAB_SIZE entries, all None when the service has no dests."""

    __slots__ = ("_table",)
    name: ClassVar[str] = "dh"
    _table: list[DestView | None]

    def _reset(self) -> None:
        self._table = [None] * TAB_SIZE

    def _changed(self, kind: str, dest: DestView | None, old: tuple[DestView, ...]) -> None:
        if kind == "upd":
            return  # ip_vs_dh.c has no upd_dest hook
        dests = self._dests
        n = len(dests)
        self._table = [dests[i % n] for i in range(TAB_SIZE)] if n else [None] * TAB_SIZE

    def schedule(self, flow: FlowKey) -> DestView | None:
        d = self._table[((flow.daddr * 0x61C88647) & 0xFFFFFFFF) >> 24]
        if d is None or not d.available or d.weight <= 0 or d.overloaded:
            return None
        return d
