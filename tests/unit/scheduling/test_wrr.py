"""wrr: the worked sequences of IPVS-SEMANTICS §2.2 and the hook that re-fits cw."""

from __future__ import annotations

from scheduling.wrr import WeightedRoundRobin
from tests.unit.scheduling.service import Dest, Service


def test_fresh_list_a_b_c_weights_4_3_2() -> None:
    svc = Service.bound(
        WeightedRoundRobin(), [Dest("A", weight=4), Dest("B", weight=3), Dest("C", weight=2)]
    )
    cycle = ["A", "A", "B", "A", "B", "C", "A", "B", "C"]
    assert svc.picks(18) == cycle * 2


def test_added_one_by_one_starts_c_b_a() -> None:
    svc = Service.bound(WeightedRoundRobin())
    for name, w in (("A", 4), ("B", 3), ("C", 2)):
        svc.add(Dest(name, weight=w))
    cycle = ["A", "B", "A", "C", "B", "A", "C", "B", "A"]
    assert svc.picks(21) == ["C", "B", "A", *cycle, *cycle]


def test_common_divisor_shortens_the_cycle() -> None:
    svc = Service.bound(WeightedRoundRobin(), [Dest("A", weight=4), Dest("B", weight=2)])
    assert svc.picks(6) == ["A", "A", "B", "A", "A", "B"]


def test_edit_resets_to_the_head_and_refits_cw() -> None:
    a, b, c = Dest("A", weight=4), Dest("B", weight=3), Dest("C", weight=2)
    svc = Service.bound(WeightedRoundRobin(), [a, b, c])
    assert svc.picks(4) == ["A", "A", "B", "A"]  # cw is 2 now
    svc.edit(c, weight=2)  # same weights: cl -> head, cw stays 2
    assert svc.picks(4) == ["A", "B", "C", "A"]


def test_edit_with_larger_gcd_rounds_cw() -> None:
    a, b = Dest("A", weight=3), Dest("B", weight=1)
    svc = Service.bound(WeightedRoundRobin(), [a, b])
    assert svc.picks(2) == ["A", "A"]  # cw = 2
    svc.edit(a, weight=4)
    svc.edit(b, weight=2)  # di = 2, mw = 3; cw = (2 // 2) * 2 + 1 = 3
    assert svc.picks(3) == ["A", "A", "B"]


def test_overloaded_dests_are_passed_over() -> None:
    a, b, c = Dest("A", weight=4), Dest("B", weight=3), Dest("C", weight=2)
    svc = Service.bound(WeightedRoundRobin(), [a, b, c])
    a.overloaded = True
    assert svc.picks(5) == ["B", "B", "C", "B", "C"]


def test_all_overloaded_gives_none_then_recovers() -> None:
    a, b = Dest("A", weight=2), Dest("B", weight=1)
    svc = Service.bound(WeightedRoundRobin(), [a, b])
    assert svc.picks(1) == ["A"]
    a.overloaded = b.overloaded = True
    assert svc.picks(3) == [None, None, None]
    b.overloaded = False
    assert svc.picks(2) == ["B", "B"]


def test_empty_service_then_add() -> None:
    svc = Service.bound(WeightedRoundRobin())
    assert svc.picks(1) == [None]
    svc.add(Dest("A", weight=0))
    assert svc.picks(1) == [None]
    svc.add(Dest("B", weight=5))
    assert svc.picks(2) == ["B", "B"]
