"""A rotation handed to another process (a takeover) goes on where it was: rr and wrr."""

from __future__ import annotations

import pytest

from scheduling.base import SchedulerBase
from scheduling.rr import RoundRobin
from scheduling.wlc import WeightedLeastConnection
from scheduling.wrr import WeightedRoundRobin
from tests.unit.scheduling.service import Dest, Service


def _pair(make: type[SchedulerBase]) -> tuple[Service, Service]:
    weights = {"A": 3, "B": 2, "C": 1}
    old = Service.bound(make(), [Dest(n, weight=w) for n, w in weights.items()])
    new = Service.bound(make(), [Dest(n, weight=w) for n, w in weights.items()])
    return old, new


@pytest.mark.parametrize("make", [RoundRobin, WeightedRoundRobin])
def test_the_successor_picks_what_the_old_one_would_have(make: type[SchedulerBase]) -> None:
    old, new = _pair(make)
    old.picks(4)
    assert new.sched.set_position(old.sched.position())
    assert new.picks(9) == old.picks(9)


@pytest.mark.parametrize("make", [RoundRobin, WeightedRoundRobin])
def test_a_position_that_does_not_fit_is_refused(make: type[SchedulerBase]) -> None:
    short = Service.bound(make(), [Dest("A")])
    before = short.sched.position()
    assert not short.sched.set_position([5, 99][: len(before)])
    assert short.sched.position() == before


def test_a_scheduler_without_rotation_has_no_position() -> None:
    s = WeightedLeastConnection()
    assert s.position() == []
    assert s.set_position([])
    assert not s.set_position([1])
