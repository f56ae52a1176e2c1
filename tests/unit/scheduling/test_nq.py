"""nq: the first idle dest at once, else sed's rule."""

from __future__ import annotations

from scheduling.nq import NeverQueue
from tests.unit.scheduling.service import Dest, Service


def pick(*dests: Dest) -> str | None:
    return Service.bound(NeverQueue(), list(dests)).picks(1)[0]


def test_first_idle_dest_wins_regardless_of_weight() -> None:
    assert pick(Dest("A", weight=1, inactive_conns=50), Dest("B", weight=100)) == "A"
    assert pick(Dest("A", active_conns=1), Dest("B"), Dest("C")) == "B"


def test_without_idle_dest_uses_sed_cost() -> None:
    a = Dest("A", weight=1, active_conns=1)  # 2/1
    b = Dest("B", weight=3, active_conns=2)  # 3/3
    assert pick(a, b) == "B"
    b.weight = 1  # 3/1
    assert pick(a, b) == "A"


def test_idle_but_quiesced_or_overloaded_is_skipped() -> None:
    assert pick(Dest("A", weight=0), Dest("B", overloaded=True), Dest("C", active_conns=3)) == "C"
