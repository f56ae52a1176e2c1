"""Weighted round robin, as net/netfilter/ipvs/ip_vs_wrr.c.

Rule: passes over the list with a falling current weight cw = mw, mw-di, ..., 1
(di = gcd of the positive weights, mw = max weight - (di - 1)); a destination is picked
when weight >= cw and it has no OVERLOAD. Tie-break: list order within a pass. Weight 0
never reaches cw >= 1. Every add/del/upd resets the position to the head and re-fits cw.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import gcd
from typing import ClassVar

from scheduling.base import DestView, FlowKey, SchedulerBase

_HEAD = -1
_NO_STOP = -2


class WeightedRoundRobin(SchedulerBase):
    """``wrr``: state ``cl`` (index of the current dest, -1 = head), ``cw``, ``mw``, ``di``."""

    __slots__ = ("_cl", "_cw", "_di", "_mw")
    name: ClassVar[str] = "wrr"

    _cl: int
    _cw: int
    _mw: int
    _di: int

    def _reset(self) -> None:
        self._cl = _HEAD
        self._cw = 0
        self._mw = 0
        self._di = 1

    def _changed(self, kind: str, dest: DestView | None, old: tuple[DestView, ...]) -> None:
        g = 0
        mx = 0
        for d in self._dests:
            w = d.weight
            if w > 0:
                g = gcd(w, g) if g > 0 else w
            mx = max(mx, w)
        di = g if g else 1
        mw = mx - (di - 1)
        self._cl = _HEAD
        self._di = di
        self._mw = mw
        cw = self._cw
        if kind == "init" or cw > mw or cw == 0:
            self._cw = mw
        elif di > 1:
            self._cw = (cw // di) * di + 1

    def position(self) -> list[int]:
        return [self._cl, self._cw]

    def set_position(self, position: Sequence[int]) -> bool:
        if len(position) != 2:
            return False
        cl, cw = position
        if not (_HEAD <= cl < len(self._dests) and 0 <= cw <= self._mw):
            return False
        self._cl, self._cw = cl, cw
        return True

    def schedule(self, flow: FlowKey) -> DestView | None:
        mw = self._mw
        if mw == 0:
            return None
        dests = self._dests
        n = len(dests)
        di = self._di
        cw = self._cw
        pos = last = self._cl
        stop = _NO_STOP
        last_pass = False
        restarted = False
        while True:
            for i in range(pos + 1, n):
                d = dests[i]
                if not d.overloaded and d.weight >= cw:
                    self._cl = i
                    self._cw = cw
                    return d
                if i == stop:
                    # every dest was checked for weight >= 1: all overloaded
                    self._cl = i
                    self._cw = cw
                    return None
            cw -= di
            if cw <= 0:
                cw = mw
                if last_pass or last == _HEAD:
                    self._cl = _HEAD
                    self._cw = cw
                    return None
                restarted = True
            last_pass = cw <= di
            if last_pass and restarted and last != _HEAD:
                stop = last
            pos = _HEAD
