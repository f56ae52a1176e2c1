"""Round robin, as net/netfilter/ipvs/ip_vs_rr.c.

Rule: scan on from the last pick (wrapping once, back to and including it) and take the
first destination with weight > 0 and no OVERLOAD; weight magnitude is otherwise ignored.
Tie-break: rotation order (list order). Weight 0 is skipped. Deleting the current
position moves it to the deleted destination's predecessor (del_dest hook).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from scheduling.base import DestView, FlowKey, SchedulerBase, removed_dest

_HEAD = -1


class RoundRobin(SchedulerBase):
    """``rr``: ``_pos`` is the index of the last pick, or -1 for the list head."""

    __slots__ = ("_pos",)
    name: ClassVar[str] = "rr"

    _pos: int

    def _reset(self) -> None:
        self._pos = _HEAD

    def _changed(self, kind: str, dest: DestView | None, old: tuple[DestView, ...]) -> None:
        if kind == "init":
            self._pos = _HEAD
            return
        pos = self._pos
        cur = old[pos] if 0 <= pos < len(old) else None
        if kind == "del" and cur is not None:
            gone = dest if dest is not None else removed_dest(old, self._dests)
            if cur is gone:
                # The kernel reaches the predecessor through the unlinked entry's next->prev.
                cur = old[pos - 1] if pos > 0 else None
        self._pos = _HEAD
        if cur is not None:
            for i, d in enumerate(self._dests):
                if d is cur:
                    self._pos = i
                    break

    def position(self) -> list[int]:
        return [self._pos]

    def set_position(self, position: Sequence[int]) -> bool:
        if len(position) != 1 or not _HEAD <= position[0] < len(self._dests):
            return False
        self._pos = position[0]
        return True

    def schedule(self, flow: FlowKey) -> DestView | None:
        dests = self._dests
        pos = self._pos
        for i in range(pos + 1, len(dests)):
            d = dests[i]
            if d.weight > 0 and not d.overloaded:
                self._pos = i
                return d
        if pos != _HEAD:
            for i in range(pos + 1):
                d = dests[i]
                if d.weight > 0 and not d.overloaded:
                    self._pos = i
                    return d
        return None
