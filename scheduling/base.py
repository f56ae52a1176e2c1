"""The scheduler contract: what every IPVS scheduler reads and decides.

A scheduler sees the service's destinations as a sequence in the kernel's list
order (the most recently added first) and never mutates them: the director owns
the destinations and their connection counters, and tells the scheduler about
changes through ``update``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol


class DestView(Protocol):
    """What a scheduler may read of a destination (kernel ``struct ip_vs_dest``).

    ``addr`` is the IPv4 address as an int in host order, ``port`` the port in host order.
    ``available`` is the kernel's IP_VS_DEST_F_AVAILABLE (linked in the service);
    ``overloaded`` its IP_VS_DEST_F_OVERLOAD (set by u_threshold, cleared by l_threshold).
    ``last_weight`` is the latest non-zero weight (set on add even when 0); only mh reads it.
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
    used only by schedulers with timers of their own (lblc, lblcr).
    """

    proto: int
    saddr: int
    sport: int
    daddr: int
    dport: int
    now: int = 0


class Scheduler(Protocol):
    """One IPVS scheduling algorithm bound to one service.

    ``update(dests)`` is called with the full list (kernel list order) at bind time and
    after every change to the set, a weight or a threshold: the kernel's init_service,
    add_dest, del_dest and upd_dest hooks in one call. ``kind`` tells which of those it
    was ("init", "add", "del", "upd"), because some schedulers react differently (dh does
    not rebuild on "upd"; wrr resets its position on all three).
    ``schedule(flow)`` returns the chosen destination, or ``None`` when none is available.
    Event-loop thread only.
    """

    name: ClassVar[str]

    def update(self, dests: list[DestView], kind: str) -> None: ...

    def schedule(self, flow: FlowKey) -> DestView | None: ...
