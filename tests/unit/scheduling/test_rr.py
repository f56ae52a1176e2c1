"""rr: rotation, skipping, and the del_dest hook that moves the position back."""

from __future__ import annotations

from scheduling.rr import RoundRobin
from tests.unit.scheduling.service import Dest, Service


def abc() -> tuple[Service, Dest, Dest, Dest]:
    a, b, c = Dest("A"), Dest("B"), Dest("C")
    return Service.bound(RoundRobin(), [a, b, c]), a, b, c


def test_rotates_in_list_order_ignoring_weight_magnitude() -> None:
    svc, a, _, _ = abc()
    a.weight = 100
    assert svc.picks(7) == ["A", "B", "C", "A", "B", "C", "A"]


def test_skips_weight_zero_and_overloaded() -> None:
    svc, a, b, _ = abc()
    b.weight = 0
    a.overloaded = True
    assert svc.picks(3) == ["C", "C", "C"]


def test_added_dest_at_the_head_is_reached_on_wrap() -> None:
    svc = Service.bound(RoundRobin())
    svc.add(Dest("A"))
    svc.add(Dest("B"))  # list B, A
    assert svc.picks(2) == ["B", "A"]
    svc.add(Dest("C"))  # list C, B, A; position stays on A
    assert svc.picks(4) == ["C", "B", "A", "C"]


def test_deleting_the_current_dest_moves_to_its_predecessor() -> None:
    svc, _, b, _ = abc()
    assert svc.picks(2) == ["A", "B"]
    svc.delete(b)  # position -> A, so C comes next (not A, as a reset to the head would give)
    assert svc.picks(3) == ["C", "A", "C"]


def test_deleting_the_current_first_dest_moves_to_the_head() -> None:
    svc, a, _, _ = abc()
    assert svc.picks(1) == ["A"]
    svc.delete(a)
    assert svc.picks(3) == ["B", "C", "B"]


def test_deleting_another_dest_keeps_the_position() -> None:
    svc, _, _, c = abc()
    assert svc.picks(2) == ["A", "B"]
    svc.delete(c)
    assert svc.picks(2) == ["A", "B"]


def test_removed_dest_is_found_when_not_named() -> None:
    svc, a, b, c = abc()
    assert svc.picks(2) == ["A", "B"]
    b.available = False
    svc.dests = [a, c]
    svc.sched.update(svc.dests, "del")
    assert svc.picks(2) == ["C", "A"]


def test_no_usable_dest_keeps_the_position() -> None:
    svc, a, b, c = abc()
    assert svc.picks(1) == ["A"]
    for d in (a, b, c):
        d.overloaded = True
    assert svc.picks(2) == [None, None]
    c.overloaded = False
    b.overloaded = False
    assert svc.picks(2) == ["B", "C"]
