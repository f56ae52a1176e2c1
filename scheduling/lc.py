"""Least connection, as net/netfilter/ipvs/ip_vs_lc.c.

Rule: the destination with the smallest overhead active*256 + inactive
(ip_vs_dest_conn_overhead), skipping OVERLOAD and weight 0; weight magnitude is unused.
Tie-break: strict <, so the first in list order (the most recently added) wins.
Weight 0 is skipped.
"""

from __future__ import annotations

from typing import ClassVar

from scheduling.base import DestView, FlowKey, SchedulerBase


class LeastConnection(SchedulerBase):
    """``lc``: no state of its own."""

    __slots__ = ()
    name: ClassVar[str] = "lc"

    def schedule(self, flow: FlowKey) -> DestView | None:
        least: DestView | None = None
        loh = 0
        for d in self._dests:
            if d.overloaded or d.weight == 0:
                continue
            doh = (d.active_conns << 8) + d.inactive_conns
            if least is None or doh < loh:
                least = d
                loh = doh
        return least
