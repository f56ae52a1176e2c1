"""Never queue, as net/netfilter/ipvs/ip_vs_nq.c.

Rule: skipping OVERLOAD and weight 0, return the first dest with no active connection
at once (regardless of weight); otherwise minimise (active + 1)/weight as sed does.
Tie-break: first idle dest in list order; else strict >, the earlier dest wins.
Weight 0 is skipped.
"""

from __future__ import annotations

from typing import ClassVar

from scheduling.base import DestView, FlowKey, SchedulerBase


class NeverQueue(SchedulerBase):
    """``nq``: no state of its own."""

    __slots__ = ()
    name: ClassVar[str] = "nq"

    def schedule(self, flow: FlowKey) -> DestView | None:
        least: DestView | None = None
        loh = 0
        lw = 0
        for d in self._dests:
            dw = d.weight
            if d.overloaded or dw == 0:
                continue
            active = d.active_conns
            if active == 0:
                return d
            doh = active + 1
            if least is None or loh * dw > doh * lw:
                least = d
                loh = doh
                lw = dw
        return least
