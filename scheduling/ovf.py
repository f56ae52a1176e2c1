"""Overflow, as net/netfilter/ipvs/ip_vs_ovf.c.

Rule: the dest with the highest weight among those with no OVERLOAD, weight > 0 and
active connections <= weight (only active ones count, so UDP never overflows).
Tie-break: strict >, the first in list order wins. Weight 0 is skipped.
"""

from __future__ import annotations

from typing import ClassVar

from scheduling.base import DestView, FlowKey, SchedulerBase


class Overflow(SchedulerBase):
    """``ovf``: no state of its own."""

    __slots__ = ()
    name: ClassVar[str] = "ovf"

    def schedule(self, flow: FlowKey) -> DestView | None:
        best: DestView | None = None
        hw = 0
        for d in self._dests:
            w = d.weight
            if d.overloaded or w == 0 or d.active_conns > w:
                continue
            if best is None or w > hw:
                best = d
                hw = w
        return best
