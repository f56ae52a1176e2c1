"""IPVS schedulers, each deciding as the Linux kernel's ip_vs_<name>.c does.

``SCHEDULERS`` maps every ipvsadm scheduler name to its class; ``get_scheduler`` builds
one. The registry is written out by hand, as the kernel's Makefile lists its modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from scheduling.base import DestView, FlowKey, Scheduler, SchedulerBase
from scheduling.dh import DestinationHashing
from scheduling.errors import SchedulerError, SchedulerFlagError, UnknownSchedulerError
from scheduling.fo import WeightedFailover
from scheduling.lblc import LocalityBasedLeastConnection
from scheduling.lblcr import LocalityBasedLeastConnectionReplication
from scheduling.lc import LeastConnection
from scheduling.mh import MaglevHashing
from scheduling.nq import NeverQueue
from scheduling.ovf import Overflow
from scheduling.rr import RoundRobin
from scheduling.sed import ShortestExpectedDelay
from scheduling.sh import SourceHashing
from scheduling.twos import PowerOfTwoChoices
from scheduling.wlc import WeightedLeastConnection
from scheduling.wrr import WeightedRoundRobin

__all__ = [
    "SCHEDULERS",
    "SCHEDULER_FLAGS",
    "DestView",
    "FlowKey",
    "Scheduler",
    "SchedulerBase",
    "SchedulerError",
    "SchedulerFlagError",
    "UnknownSchedulerError",
    "get_scheduler",
]

SCHEDULERS: Final[dict[str, type[SchedulerBase]]] = {
    "dh": DestinationHashing,
    "fo": WeightedFailover,
    "lblc": LocalityBasedLeastConnection,
    "lblcr": LocalityBasedLeastConnectionReplication,
    "lc": LeastConnection,
    "mh": MaglevHashing,
    "nq": NeverQueue,
    "ovf": Overflow,
    "rr": RoundRobin,
    "sed": ShortestExpectedDelay,
    "sh": SourceHashing,
    "twos": PowerOfTwoChoices,
    "wlc": WeightedLeastConnection,
    "wrr": WeightedRoundRobin,
}

#: The ``--sched-flags`` each scheduler accepts (the others accept none).
SCHEDULER_FLAGS: Final[dict[str, frozenset[str]]] = {
    name: cls.accepted_flags for name, cls in SCHEDULERS.items()
}


def get_scheduler(
    name: str,
    flags: frozenset[str] = frozenset(),
    rand: Callable[[int], int] | None = None,
) -> SchedulerBase:
    """A new, unbound scheduler called ``name`` (ipvsadm spelling).

    Raises UnknownSchedulerError for a name that is not in SCHEDULERS and
    SchedulerFlagError for a flag the scheduler does not accept. The caller binds it
    with ``update(dests, "init")`` before the first ``schedule``.
    """
    try:
        cls = SCHEDULERS[name]
    except KeyError:
        raise UnknownSchedulerError(
            f"unknown scheduler {name!r}; expected one of: {', '.join(sorted(SCHEDULERS))}"
        ) from None
    return cls(flags, rand)
