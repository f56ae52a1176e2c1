"""lblcr: the per-daddr set grows under load and is pruned once stale."""

from __future__ import annotations

from scheduling.lblcr import LocalityBasedLeastConnectionReplication
from tests.unit.scheduling.service import Dest, Service

MIN = 60_000


def setup() -> tuple[Service, LocalityBasedLeastConnectionReplication, Dest, Dest, Dest]:
    sched = LocalityBasedLeastConnectionReplication()
    a, b, c = Dest("A", weight=4), Dest("B", weight=4), Dest("C", weight=4)
    return Service.bound(sched, [a, b, c]), sched, a, b, c


def test_set_grows_when_its_best_member_is_lb_overloaded() -> None:
    svc, sched, a, b, _c = setup()
    assert svc.pick(daddr=7, now=0) is a
    assert sched.members(7) == [a]
    a.active_conns = 5  # > weight, and B/C are under half load
    assert svc.pick(daddr=7, now=1) is b
    assert sched.members(7) == [b, a]  # newest first
    assert svc.pick(daddr=7, now=2) is b  # set minimum


def test_set_minimum_prefers_the_newest_member_on_ties() -> None:
    svc, sched, a, b, _ = setup()
    svc.pick(daddr=7)
    a.active_conns = 5
    svc.pick(daddr=7)  # set [B, A]
    a.active_conns = 0
    assert sched.members(7) == [b, a]
    assert svc.pick(daddr=7) is b  # A and B tie at 0: the newest (B) wins


def test_set_minimum_skips_unavailable_and_overloaded_members() -> None:
    svc, sched, a, b, c = setup()
    svc.pick(daddr=7)
    a.active_conns = 5
    svc.pick(daddr=7)  # set [B, A]
    b.overloaded = True
    a.active_conns = 0
    assert svc.pick(daddr=7) is a
    svc.delete(a)
    assert svc.pick(daddr=7) is c  # no usable member: the WLC pick joins
    assert sched.members(7) == [c, b, a]


def test_stale_set_loses_its_most_loaded_member_one_per_decision() -> None:
    svc, sched, a, b, _c = setup()
    sched.expiration_s = 10
    svc.pick(daddr=7, now=0)
    a.active_conns = 5
    svc.pick(daddr=7, now=1000)  # set [B, A], lastmod 1 s
    b.active_conns = 1
    assert svc.pick(daddr=7, now=11_000) is b  # not after lastmod + 10 s yet
    assert sched.members(7) == [b, a]
    assert svc.pick(daddr=7, now=11_001) is b
    assert sched.members(7) == [b]  # A (5 active) was pruned
    assert svc.pick(daddr=7, now=30_000) is b  # a single member is never pruned
    assert sched.members(7) == [b]


def test_pruned_member_is_still_returned_by_that_decision() -> None:
    svc, sched, a, b, _ = setup()
    sched.expiration_s = 10
    svc.pick(daddr=7, now=0)
    a.active_conns = 5
    svc.pick(daddr=7, now=0)  # [B, A]
    b.overloaded = True  # set_min skips B; set_max does not look at OVERLOAD
    a.active_conns = 2  # A: 512/4 is both the minimum and the maximum
    assert svc.pick(daddr=7, now=20_000) is a
    assert sched.members(7) == [b]


def test_entries_are_counted_exactly_and_expire() -> None:
    svc, sched, _, _, _ = setup()
    sched.expiration_s = 60
    svc.pick(daddr=7, now=0)
    svc.pick(daddr=8, now=0)
    assert sched.table.entries == 2
    svc.pick(daddr=8, now=30 * MIN)  # full check at tick 30: 7 idle >= 60 s, 8 too
    assert sched.members(7) == []
    assert sched.table.entries == 1  # 8 was re-created after the check
