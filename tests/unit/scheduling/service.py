"""A test destination and a tiny service that edits its list the way ip_vs_ctl.c does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from scheduling.base import DestView, FlowKey, SchedulerBase


@dataclass(eq=False, slots=True)
class Dest:
    """A mutable ``DestView``; compared by identity, as the director's destinations are."""

    name: str
    addr: int = 0
    port: int = 80
    weight: int = 1
    last_weight: int = -1
    active_conns: int = 0
    inactive_conns: int = 0
    available: bool = True
    overloaded: bool = False

    def __post_init__(self) -> None:
        if self.last_weight < 0:
            self.last_weight = self.weight

    def __repr__(self) -> str:
        return self.name


@dataclass
class Service:
    """The kernel's list discipline: add links at the head, edit keeps the place, delete
    unlinks and clears AVAILABLE; each change calls the scheduler hook with the new list."""

    sched: SchedulerBase
    dests: list[Dest] = field(default_factory=list)

    @classmethod
    def bound(cls, sched: SchedulerBase, dests: Sequence[Dest] = ()) -> Service:
        """A service whose list is ``dests`` as given (kernel order), bound with "init"."""
        svc = cls(sched, list(dests))
        sched.update(svc.dests, "init")
        return svc

    def add(self, dest: Dest) -> Dest:
        dest.last_weight = dest.weight
        dest.available = True
        self.dests.insert(0, dest)
        self.sched.update(self.dests, "add", dest)
        return dest

    def delete(self, dest: Dest) -> None:
        dest.available = False
        self.dests = [d for d in self.dests if d is not dest]
        self.sched.update(self.dests, "del", dest)

    def edit(self, dest: Dest, weight: int | None = None, overloaded: bool | None = None) -> None:
        if weight is not None:
            dest.weight = weight
            if weight != 0:
                dest.last_weight = weight
        if overloaded is not None:
            dest.overloaded = overloaded
        self.sched.update(self.dests, "upd", dest)

    def pick(self, saddr: int = 0, daddr: int = 0, sport: int = 0, now: int = 0) -> DestView | None:
        return self.sched.schedule(FlowKey(6, saddr, sport, daddr, 80, now))

    def picks(self, n: int) -> list[str | None]:
        out: list[str | None] = []
        for _ in range(n):
            d = self.pick()
            out.append(None if d is None else d.name)  # type: ignore[attr-defined]
        return out
