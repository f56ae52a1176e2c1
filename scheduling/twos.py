"""Power of two choices, as net/netfilter/ipvs/ip_vs_twos.c.

Rule: T = sum of weights of dests with weight > 0 and no OVERLOAD; r1, r2 drawn in [0, T]
each select the first such dest where r - (running weight sum) <= 0; choice2 wins only if
w2*overhead1 > w1*overhead2 (overhead active*256 + inactive; 32-bit int products), ties
keep choice1. Weight 0 is skipped. ``rand`` supplies the draws (tests inject them).
"""

from __future__ import annotations

from typing import ClassVar

from scheduling.base import DestView, FlowKey, SchedulerBase


def _s32(x: int) -> int:
    """``x`` wrapped to a C int, as the kernel's int products (built with -fno-strict-overflow)."""
    x &= 0xFFFFFFFF
    return x - 0x100000000 if x & 0x80000000 else x


class PowerOfTwoChoices(SchedulerBase):
    """``twos``: no state of its own; two calls to ``rand(T + 1)`` per decision."""

    __slots__ = ()
    name: ClassVar[str] = "twos"

    def schedule(self, flow: FlowKey) -> DestView | None:
        dests = self._dests
        total = 0
        choice1: DestView | None = None
        for d in dests:
            if not d.overloaded:
                w = d.weight
                if w > 0:
                    total += w
                    choice1 = d  # the kernel's placeholder: the last usable dest
        if choice1 is None:
            return None
        rand = self._rand
        r1 = rand(total + 1)
        r2 = rand(total + 1)
        choice2: DestView | None = None
        w1 = w2 = -1
        oh1 = oh2 = 0
        for d in dests:
            if d.overloaded:
                continue
            w = d.weight
            if w <= 0:
                continue
            r1 -= w
            r2 -= w
            if r1 <= 0 and w1 == -1:
                choice1 = d
                w1 = w
                oh1 = (d.active_conns << 8) + d.inactive_conns
            if r2 <= 0 and w2 == -1:
                choice2 = d
                w2 = w
                oh2 = (d.active_conns << 8) + d.inactive_conns
            if w1 != -1 and w2 != -1:
                break
        if choice2 is not None and _s32(w2 * oh1) > _s32(w1 * oh2):
            return choice2
        return choice1
