"""Shortest expected delay, as net/netfilter/ipvs/ip_vs_sed.c.

Rule: the WLC comparison with cost active + 1 (inactive connections ignored):
minimise (active + 1)/weight as cross products. First candidate: first dest with no
OVERLOAD and weight > 0. Tie-break: strict >, the earlier dest in list order wins.
Weight 0 is never chosen.
"""

from __future__ import annotations

from typing import ClassVar

from scheduling.base import DestView, FlowKey, SchedulerBase


class ShortestExpectedDelay(SchedulerBase):
    """``sed``: no state of its own."""

    __slots__ = ()
    name: ClassVar[str] = "sed"

    def schedule(self, flow: FlowKey) -> DestView | None:
        it = iter(self._dests)
        for least in it:
            if not least.overloaded and least.weight > 0:
                break
        else:
            return None
        loh = least.active_conns + 1
        lw = least.weight
        for d in it:
            if d.overloaded:
                continue
            doh = d.active_conns + 1
            dw = d.weight
            if loh * dw > doh * lw:
                least = d
                loh = doh
                lw = dw
        return least
