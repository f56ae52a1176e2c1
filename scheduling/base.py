"""The scheduler contract: what every IPVS scheduler reads and decides.

A scheduler sees the service's destinations as a sequence in the kernel's list
order (the most recently added first) and never mutates them: the director owns
the destinations and their connection counters, and tells the scheduler about
changes through ``update``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final, Protocol

from scheduling.errors import SchedulerFlagError, UpdateKindError

#: The ``kind`` values of ``Scheduler.update``: the kernel's init_service, add_dest,
#: del_dest and upd_dest hooks.
UPDATE_KINDS: Final = frozenset({"init", "add", "del", "upd"})

#: Every ipvsadm ``--sched-flags`` value (IP_VS_SVC_F_SCHED1 / SCHED2 for sh and mh).
SCHED_FLAGS: Final = frozenset({"sh-fallback", "sh-port", "mh-fallback", "mh-port"})

#: IP protocol numbers whose first two payload words are ports (sh-port, mh-port).
PORT_PROTOCOLS: Final = frozenset({6, 17, 132})


class DestView(Protocol):
    """What a scheduler may read of a destination (kernel ``struct ip_vs_dest``).

    ``addr`` is the IPv4 address as an int in host order, ``port`` the port in host order.
    ``available`` is the kernel's IP_VS_DEST_F_AVAILABLE (linked in the service): the
    director clears it when it deletes the destination and sets it again if the same
    object is added back, because lblc and lblcr keep references to deleted objects.
    ``overloaded`` is IP_VS_DEST_F_OVERLOAD (set by u_threshold, cleared by l_threshold).
    ``last_weight`` is the latest non-zero weight (set on add even when 0); only mh reads it.
    Destinations are compared by identity, never by value.
    """

    @property
    def addr(self) -> int: ...
    @property
    def port(self) -> int: ...
    @property
    def weight(self) -> int: ...
    @property
    def last_weight(self) -> int: ...
    @property
    def active_conns(self) -> int: ...
    @property
    def inactive_conns(self) -> int: ...
    @property
    def available(self) -> bool: ...
    @property
    def overloaded(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class FlowKey:
    """The packet that asks for a destination (host-order ints; ``now`` in milliseconds).

    ``proto`` is the IP protocol number (6 TCP, 17 UDP). ``now`` is monotonic time,
    used only by schedulers with timers of their own (lblc, lblcr); it must not go back.
    """

    proto: int
    saddr: int
    sport: int
    daddr: int
    dport: int
    now: int = 0


class Scheduler(Protocol):
    """One IPVS scheduling algorithm bound to one service.

    ``update(dests, kind, dest)`` is called with the full list (kernel list order: the
    most recently added first) at bind time and after every change to the set, a weight
    or a threshold. ``kind`` says which kernel hook it stands for:

    * "init": init_service, the scheduler is bound to the service (created, or changed
      with ``ipvsadm -E -s``); ``dest`` is None;
    * "add": add_dest, ``dest`` was just linked (normally at the head of ``dests``);
    * "del": del_dest, ``dest`` was just unlinked (it is no longer in ``dests``);
    * "upd": upd_dest, ``dest`` was edited (weight, thresholds, forwarding method).

    Schedulers react as their kernel twins do: dh does not rebuild on "upd", rr only
    moves its position on "del" (to the predecessor of ``dest``, which is why ``dest`` is
    passed), wrr resets to the head on all three. If ``dest`` is None on "del" the
    scheduler finds the removed one by comparing with the previous list.
    The scheduler keeps its own copy of the sequence; it reads the objects' fields live.

    ``schedule(flow)`` returns the chosen destination, or ``None`` when none is available.

    ``holds(dest, now)`` says whether the scheduler still keeps a reference to ``dest``
    (an lblc entry, a member of an lblcr set: the kernel's ``ip_vs_dest_hold``), after
    running its own timers due by ``now`` (ms; None: run none). The service layer never
    frees a deleted destination while its scheduler holds it, so adding the same address
    back revives the very object the scheduler still points at.
    Event-loop thread only.
    """

    name: ClassVar[str]

    def update(
        self, dests: Sequence[DestView], kind: str, dest: DestView | None = None
    ) -> None: ...

    def schedule(self, flow: FlowKey) -> DestView | None: ...

    def holds(self, dest: DestView, now: int | None = None) -> bool: ...

    def set_flags(self, flags: frozenset[str]) -> None: ...


class SchedulerBase:
    """Shared constructor and bookkeeping of lvsd's schedulers (not part of the contract).

    ``flags`` must be a subset of the class's ``accepted_flags``; ``rand(n)`` returns a
    uniform int in [0, n) and defaults to ``random.SystemRandom().randrange``.
    ``update`` validates ``kind``, stores the list and calls ``_changed``.
    """

    __slots__ = ("_dests", "_rand", "flags")

    name: ClassVar[str] = ""
    accepted_flags: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        flags: frozenset[str] = frozenset(),
        rand: Callable[[int], int] | None = None,
    ) -> None:
        self._check_flags(flags)
        self.flags: frozenset[str] = frozenset(flags)
        self._rand: Callable[[int], int] = (
            rand if rand is not None else random.SystemRandom().randrange
        )
        self._dests: tuple[DestView, ...] = ()
        self._reset()

    def _check_flags(self, flags: frozenset[str]) -> None:
        for flag in sorted(flags):
            if flag in self.accepted_flags:
                continue
            accepts = ", ".join(sorted(self.accepted_flags)) or "no flags"
            if flag in SCHED_FLAGS:
                raise SchedulerFlagError(
                    f"{self.name}: scheduler flag {flag!r} is for {flag.split('-')[0]}; "
                    f"{self.name} accepts: {accepts}"
                )
            raise SchedulerFlagError(
                f"{self.name}: unknown scheduler flag {flag!r}; {self.name} accepts: {accepts}"
            )

    def _reset(self) -> None:
        """Set the state a fresh scheduler has before init_service; stateless ones have none."""

    def set_flags(self, flags: frozenset[str]) -> None:
        """Take new flags and keep every other state (``ipvsadm -E`` with the running
        scheduler: the kernel stores the flags in the service, which sh and mh read at each
        decision, so the next one follows them)."""
        self._check_flags(flags)
        self.flags = frozenset(flags)
        self._read_flags()

    def _read_flags(self) -> None:
        """Cache what ``flags`` say; only schedulers that read flags have anything to do."""

    def position(self) -> list[int]:
        """The rotation state kept between picks, as integers ([]: none), for a director
        process that takes over (``set_position`` on a scheduler of the same list)."""
        return []

    def set_position(self, position: Sequence[int]) -> bool:
        """Continue from another scheduler's ``position()`` over the same destination
        list; False (and nothing changed) if it does not fit this one."""
        return not position

    def update(self, dests: Sequence[DestView], kind: str, dest: DestView | None = None) -> None:
        """Take the new list (see ``Scheduler.update``)."""
        if kind not in UPDATE_KINDS:
            raise UpdateKindError(
                f"{self.name}: update kind must be one of init, add, del, upd, got {kind!r}"
            )
        old = self._dests
        self._dests = tuple(dests)
        self._changed(kind, dest, old)

    def _changed(self, kind: str, dest: DestView | None, old: tuple[DestView, ...]) -> None:
        """React to a hook; ``old`` is the list before it. Schedulers without hooks ignore it."""

    def schedule(self, flow: FlowKey) -> DestView | None:
        raise NotImplementedError

    def holds(self, dest: DestView, now: int | None = None) -> bool:
        """Only schedulers with tables (lblc, lblcr) hold destinations."""
        return False


def removed_dest(old: Sequence[DestView], new: Sequence[DestView]) -> DestView | None:
    """The first destination of ``old`` that is not (by identity) in ``new``, or None."""
    present = {id(d) for d in new}
    for d in old:
        if id(d) not in present:
            return d
    return None
