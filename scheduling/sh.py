"""Source hashing, as net/netfilter/ipvs/ip_vs_sh.c.

Rule: 256 buckets filled cyclically in list order, `weight` in a row per dest (one if
weight <= 0), rebuilt on init/add/del/upd; key hash_32((sport? + saddr) mod 2**32, 8).
Weight 0 or OVERLOAD is unavailable: None, or with sh-fallback the first usable of the
buckets (2*ih + k) mod 256 (the kernel adds the hash twice), stopping at an empty one.
"""

from __future__ import annotations

from typing import ClassVar, Final

from scheduling.base import PORT_PROTOCOLS, DestView, FlowKey, SchedulerBase

TAB_BITS: Final = 8
TAB_SIZE: Final = 1 << TAB_BITS
TAB_MASK: Final = TAB_SIZE - 1


def sh_hashkey(addr: int, port: int, offset: int) -> int:
    """``ip_vs_sh_hashkey``: ``(offset + hash_32((port + addr) mod 2**32, 8)) & 255``."""
    return (offset + ((((port + addr) & 0xFFFFFFFF) * 0x61C88647 & 0xFFFFFFFF) >> 24)) & TAB_MASK


class SourceHashing(SchedulerBase):
    """``sh``: flags ``sh-fallback`` (IP_VS_SVC_F_SCHED1) and ``sh-port`` (SCHED2)."""

    __slots__ = ("_fallback", "_port", "_table")
    name: ClassVar[str] = "sh"
    accepted_flags: ClassVar[frozenset[str]] = frozenset({"sh-fallback", "sh-port"})
    _table: list[DestView | None]
    _fallback: bool
    _port: bool

    def _reset(self) -> None:
        self._table = [None] * TAB_SIZE
        self._read_flags()

    def _read_flags(self) -> None:
        self._fallback = "sh-fallback" in self.flags
        self._port = "sh-port" in self.flags

    def _changed(self, kind: str, dest: DestView | None, old: tuple[DestView, ...]) -> None:
        dests = self._dests
        if not dests:
            self._table = [None] * TAB_SIZE
            return
        table: list[DestView | None] = []
        n = len(dests)
        i = 0
        count = 0
        for _ in range(TAB_SIZE):
            d = dests[i]
            table.append(d)
            count += 1
            if count >= d.weight:  # a weight <= 0 dest still takes one bucket
                i = i + 1 if i + 1 < n else 0
                count = 0
        self._table = table

    def schedule(self, flow: FlowKey) -> DestView | None:
        port = flow.sport if self._port and flow.proto in PORT_PROTOCOLS else 0
        ih = ((((port + flow.saddr) & 0xFFFFFFFF) * 0x61C88647) & 0xFFFFFFFF) >> 24
        table = self._table
        d = table[ih]
        if d is None:
            return None
        if d.weight > 0 and not d.overloaded:
            return d
        if not self._fallback:
            return None
        for offset in range(TAB_SIZE):
            # roffset = (offset + ih) % 256, bucket = (roffset + ih) & 255
            d = table[(offset + 2 * ih) & TAB_MASK]
            if d is None:
                return None
            if d.weight > 0 and not d.overloaded:
                return d
        return None
