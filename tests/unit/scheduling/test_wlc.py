"""wlc: (active*256 + inactive)/weight compared as cross products, earlier wins ties."""

from __future__ import annotations

from scheduling.wlc import WeightedLeastConnection
from tests.unit.scheduling.service import Dest, Service


def pick(*dests: Dest) -> str | None:
    return Service.bound(WeightedLeastConnection(), list(dests)).picks(1)[0]


def test_ratio_with_ties_to_the_earlier_dest() -> None:
    # A: 256/1, B: 512/2 -> equal, A stays; B with weight 3: 512/3 < 256
    assert pick(Dest("A", active_conns=1), Dest("B", weight=2, active_conns=2)) == "A"
    assert pick(Dest("A", active_conns=1), Dest("B", weight=3, active_conns=2)) == "B"


def test_inactive_conns_weigh_one_256th() -> None:
    a = Dest("A", weight=2, active_conns=1, inactive_conns=10)  # 266/2 = 133
    b = Dest("B", weight=1, inactive_conns=132)  # 132
    assert pick(a, b) == "B"
    b.inactive_conns = 133
    assert pick(a, b) == "A"


def test_idle_first_candidate_cannot_be_displaced() -> None:
    assert pick(Dest("A", weight=1), Dest("B", weight=100)) == "A"


def test_first_candidate_skips_weight_zero_and_overloaded() -> None:
    z = Dest("Z", weight=0)
    o = Dest("O", overloaded=True)
    assert pick(z, o, Dest("C", active_conns=9), Dest("D", weight=2, active_conns=9)) == "D"
