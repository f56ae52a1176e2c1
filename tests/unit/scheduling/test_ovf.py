"""ovf: highest weight while active <= weight, then the next in line."""

from __future__ import annotations

from scheduling.ovf import Overflow
from tests.unit.scheduling.service import Dest, Service


def test_overflows_when_active_exceeds_weight() -> None:
    a, b, c = Dest("A", weight=1), Dest("B", weight=3), Dest("C", weight=3)
    svc = Service.bound(Overflow(), [a, b, c])
    assert svc.picks(1) == ["B"]
    b.active_conns = 3  # still <= weight
    assert svc.picks(1) == ["B"]
    b.active_conns = 4
    assert svc.picks(1) == ["C"]
    c.active_conns = 4
    assert svc.picks(1) == ["A"]
    a.active_conns = 2
    assert svc.picks(1) == [None]


def test_inactive_conns_never_overflow() -> None:
    svc = Service.bound(Overflow(), [Dest("A", weight=1, inactive_conns=1000)])
    assert svc.picks(1) == ["A"]
