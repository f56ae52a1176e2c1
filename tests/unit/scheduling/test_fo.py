"""fo: highest weight without OVERLOAD, first wins ties."""

from __future__ import annotations

from scheduling.fo import WeightedFailover
from tests.unit.scheduling.service import Dest, Service


def test_highest_weight_then_failover() -> None:
    a, b, c = Dest("A", weight=2), Dest("B", weight=5, active_conns=99), Dest("C", weight=5)
    svc = Service.bound(WeightedFailover(), [a, b, c])
    assert svc.picks(2) == ["B", "B"]
    b.overloaded = True
    assert svc.picks(1) == ["C"]
    c.weight = 0
    assert svc.picks(1) == ["A"]
