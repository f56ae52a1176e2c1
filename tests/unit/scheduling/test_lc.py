"""lc: smallest active*256 + inactive, first in list wins ties."""

from __future__ import annotations

from scheduling.lc import LeastConnection
from tests.unit.scheduling.service import Dest, Service


def pick(*dests: Dest) -> str | None:
    return Service.bound(LeastConnection(), list(dests)).picks(1)[0]


def test_overhead_counts_an_active_conn_as_256_inactive() -> None:
    assert pick(Dest("A", active_conns=1), Dest("B", inactive_conns=255)) == "B"
    assert pick(Dest("A", active_conns=1), Dest("B", inactive_conns=256)) == "A"  # tie
    assert pick(Dest("A", active_conns=1), Dest("B", inactive_conns=257)) == "A"


def test_weight_magnitude_is_ignored() -> None:
    assert pick(Dest("A", weight=100, active_conns=2), Dest("B", weight=1, active_conns=1)) == "B"


def test_weight_zero_and_overloaded_are_skipped() -> None:
    a = Dest("A", weight=0)
    b = Dest("B", overloaded=True)
    assert pick(a, b, Dest("C", active_conns=5)) == "C"
