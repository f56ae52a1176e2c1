"""Weighted least connection, as net/netfilter/ipvs/ip_vs_wlc.c.

Rule: minimise overhead/weight with overhead = active*256 + inactive, compared as
cross products (loh * w(d) > doh * w(least)), never divided. The first candidate is the
first dest with no OVERLOAD and weight > 0. Tie-break: strict >, so the earlier dest in
list order keeps the pick. Weight 0 is never chosen (it cannot win the comparison).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from scheduling.base import DestView, FlowKey, SchedulerBase


def wlc_pick(dests: Sequence[DestView]) -> DestView | None:
    """The kernel's WLC core, shared by wlc, lblc and lblcr (``__ip_vs_lblc_schedule``)."""
    it = iter(dests)
    for least in it:
        if not least.overloaded and least.weight > 0:
            break
    else:
        return None
    loh = (least.active_conns << 8) + least.inactive_conns
    lw = least.weight
    for d in it:
        if d.overloaded:
            continue
        doh = (d.active_conns << 8) + d.inactive_conns
        dw = d.weight
        if loh * dw > doh * lw:
            least = d
            loh = doh
            lw = dw
    return least


class WeightedLeastConnection(SchedulerBase):
    """``wlc``: no state of its own."""

    __slots__ = ()
    name: ClassVar[str] = "wlc"

    def schedule(self, flow: FlowKey) -> DestView | None:
        return wlc_pick(self._dests)
