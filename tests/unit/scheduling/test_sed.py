"""sed: (active + 1)/weight, inactive ignored, earlier wins ties."""

from __future__ import annotations

from scheduling.sed import ShortestExpectedDelay
from tests.unit.scheduling.service import Dest, Service


def pick(*dests: Dest) -> str | None:
    return Service.bound(ShortestExpectedDelay(), list(dests)).picks(1)[0]


def test_counts_the_incoming_job() -> None:
    # A: (0+1)/1 = 1, B: (1+1)/3 = 0.67 -> B, although B has more connections
    assert pick(Dest("A"), Dest("B", weight=3, active_conns=1)) == "B"
    # A: 1/1, B: (1+1)/2 = 1 -> tie, A
    assert pick(Dest("A"), Dest("B", weight=2, active_conns=1)) == "A"


def test_inactive_conns_are_ignored() -> None:
    assert pick(Dest("A", inactive_conns=1000), Dest("B", active_conns=1)) == "A"
