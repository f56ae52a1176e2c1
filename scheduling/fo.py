"""Weighted failover, as net/netfilter/ipvs/ip_vs_fo.c.

Rule: the dest with the highest weight among those with no OVERLOAD; connection counts
are unused. Tie-break: strict > starting from 0, so the first in list order wins.
Weight 0 never qualifies.
"""

from __future__ import annotations

from typing import ClassVar

from scheduling.base import DestView, FlowKey, SchedulerBase


class WeightedFailover(SchedulerBase):
    """``fo``: no state of its own."""

    __slots__ = ()
    name: ClassVar[str] = "fo"

    def schedule(self, flow: FlowKey) -> DestView | None:
        best: DestView | None = None
        hw = 0
        for d in self._dests:
            w = d.weight
            if w > hw and not d.overloaded:
                best = d
                hw = w
        return best
