"""Maglev hashing, as net/netfilter/ipvs/ip_vs_mh.c.

Rule: 4093 slots filled in rounds over the list, each dest taking (last_weight/gcd) >>
rshift slots (at least one if last_weight != 0) along its hsiphash permutation; rebuilt
on init/add/del/upd; slot = hsiphash(sport? + saddr) mod 4093. Weight 0 or OVERLOAD is
unavailable: None, or with mh-fallback a rehash with offset ih + k inside the hashed value.
"""

from __future__ import annotations

import logging
from math import gcd
from typing import ClassVar, Final

from scheduling.base import PORT_PROTOCOLS, DestView, FlowKey, SchedulerBase
from scheduling.hashing import hsiphash_u32

log = logging.getLogger(__name__)

#: CONFIG_IP_VS_MH_TAB_INDEX 12 -> primes[4]
TAB_SIZE: Final = 4093
TAB_BITS: Final = 6  # CONFIG_IP_VS_MH_TAB_INDEX / 2
#: generate_hash_secret(): fixed keys, so the table is the same on every director.
HASH1: Final = (2654435761, 2654435761)
HASH2: Final = (2654446892, 2654446892)


def mh_hashkey(addr: int, port: int, key: tuple[int, int], offset: int) -> int:
    """``ip_vs_mh_hashkey``: hsiphash of the u32 ``offset + port + addr``."""
    return hsiphash_u32(key[0], key[1], (offset + port + addr) & 0xFFFFFFFF)


class MaglevHashing(SchedulerBase):
    """``mh``: flags ``mh-fallback`` (IP_VS_SVC_F_SCHED1) and ``mh-port`` (SCHED2)."""

    __slots__ = ("_fallback", "_gcd", "_port", "_rshift", "_table")
    name: ClassVar[str] = "mh"
    accepted_flags: ClassVar[frozenset[str]] = frozenset({"mh-fallback", "mh-port"})
    _table: list[DestView | None]
    _fallback: bool
    _port: bool
    _gcd: int
    _rshift: int

    def _reset(self) -> None:
        self._table = [None] * TAB_SIZE
        self._read_flags()
        self._gcd = 0
        self._rshift = 0

    def _read_flags(self) -> None:
        self._fallback = "mh-fallback" in self.flags
        self._port = "mh-port" in self.flags

    def _changed(self, kind: str, dest: DestView | None, old: tuple[DestView, ...]) -> None:
        dests = self._dests
        g = 0
        mx = 0
        for d in dests:
            lw = d.last_weight
            if lw > 0:
                g = gcd(lw, g) if g > 0 else lw
            mx = max(mx, lw)
        self._gcd = g
        self._rshift = max(0, (mx // g).bit_length() - TAB_BITS) if g >= 1 else 0
        if len(dests) > TAB_SIZE:
            # ip_vs_mh_reassign() returns -EINVAL and leaves the table as it was
            log.warning("mh: %d destinations exceed the table size %d", len(dests), TAB_SIZE)
            return
        if g < 1:
            self._table = [None] * TAB_SIZE
            return
        self._table = self._populate(dests, g, self._rshift)

    @staticmethod
    def _populate(dests: tuple[DestView, ...], g: int, rshift: int) -> list[DestView | None]:
        """``ip_vs_mh_permutate`` + ``ip_vs_mh_populate``: fill every slot, round by round."""
        k10, k11 = HASH1
        k20, k21 = HASH2
        perm: list[int] = []
        skip: list[int] = []
        turns: list[int] = []
        for d in dests:
            v = (d.port + d.addr) & 0xFFFFFFFF
            perm.append(hsiphash_u32(k10, k11, v) % TAB_SIZE)
            skip.append(hsiphash_u32(k20, k21, v) % (TAB_SIZE - 1) + 1)
            lw = d.last_weight
            turns.append(((lw // g) >> rshift) or (1 if lw != 0 else 0))
        table: list[DestView | None] = [None] * TAB_SIZE
        taken = bytearray(TAB_SIZE)
        filled = 0
        while True:
            for i, d in enumerate(dests):
                t = turns[i]
                if t < 1:
                    continue
                c = perm[i]
                s = skip[i]
                for _ in range(t):
                    while taken[c]:
                        c += s
                        if c >= TAB_SIZE:
                            c -= TAB_SIZE
                    taken[c] = 1
                    table[c] = d
                    filled += 1
                    if filled == TAB_SIZE:
                        return table
                perm[i] = c

    def schedule(self, flow: FlowKey) -> DestView | None:
        port = flow.sport if self._port and flow.proto in PORT_PROTOCOLS else 0
        base = port + flow.saddr
        ih = hsiphash_u32(2654435761, 2654435761, base & 0xFFFFFFFF) % TAB_SIZE
        table = self._table
        d = table[ih]
        if d is None:
            return None
        if d.weight > 0 and not d.overloaded:
            return d
        if not self._fallback:
            return None
        for offset in range(TAB_SIZE):
            roffset = (offset + ih) % TAB_SIZE
            d = table[
                hsiphash_u32(2654435761, 2654435761, (roffset + base) & 0xFFFFFFFF) % TAB_SIZE
            ]
            if d is None:
                return None
            if d.weight > 0 and not d.overloaded:
                return d
        return None
