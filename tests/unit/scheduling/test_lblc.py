"""lblc: the daddr cache, the half-load switching rule, the entries quirk and the GC."""

from __future__ import annotations

from scheduling.hashing import hash_32
from scheduling.lblc import LocalityBasedLeastConnection
from tests.unit.scheduling.service import Dest, Service

MIN = 60_000


def setup() -> tuple[Service, LocalityBasedLeastConnection, Dest, Dest]:
    sched = LocalityBasedLeastConnection()
    a, b = Dest("A", weight=4), Dest("B", weight=4)
    return Service.bound(sched, [a, b]), sched, a, b


def test_caches_the_wlc_pick_per_daddr() -> None:
    svc, sched, a, b = setup()
    a.active_conns = 1
    assert svc.pick(daddr=7) is b
    b.active_conns = 3  # now busier than A, but the cache holds
    assert svc.pick(daddr=7) is b
    assert sched.lookup(7) is b
    assert svc.pick(daddr=8) is a


def test_switches_only_when_overloaded_and_someone_is_under_half_load() -> None:
    svc, _, a, b = setup()
    assert svc.pick(daddr=7) is a
    a.active_conns = 5  # > weight 4
    b.active_conns = 2  # 2*2 < 4 is false: nobody under half load
    assert svc.pick(daddr=7) is a
    b.active_conns = 1  # 2*1 < 4
    assert svc.pick(daddr=7) is b


def test_replacement_is_the_service_wide_wlc_pick() -> None:
    svc, sched, a, b = setup()
    c = svc.add(Dest("C", weight=100))  # list C, A, B
    assert svc.pick(daddr=7) is c  # all idle: the first candidate keeps it
    c.active_conns = 101  # > weight
    a.active_conns = b.active_conns = 1  # 2*1 < 4: under half load
    # WLC over C (25856/100), A (256/4), B (256/4): A, the first of the tie
    assert svc.pick(daddr=7) is a
    assert sched.table.entries == 2  # the replaced entry was never subtracted
    assert len(sched.table.by_daddr) == 1


def test_cached_dest_overload_flag_is_not_checked() -> None:
    svc, _, a, _ = setup()
    assert svc.pick(daddr=7) is a
    a.overloaded = True
    assert svc.pick(daddr=7) is a


def test_quiesced_or_deleted_cached_dest_is_replaced() -> None:
    svc, _, a, b = setup()
    assert svc.pick(daddr=7) is a
    svc.edit(a, weight=0)
    assert svc.pick(daddr=7) is b
    svc.delete(b)
    svc.edit(a, weight=1)
    assert svc.pick(daddr=7) is a


def test_full_check_every_30_ticks_expires_idle_entries() -> None:
    svc, sched, a, _ = setup()
    sched.expiration_s = 100
    assert svc.pick(daddr=7, now=0) is a  # starts the GC clock: ticks at 60 s, 120 s, ...
    assert svc.pick(daddr=8, now=30 * MIN - 1) is not None
    assert sched.lookup(7) is a
    assert svc.pick(daddr=8, now=30 * MIN) is not None  # the 30th tick: full check
    assert sched.lookup(7) is None
    assert sched.lookup(8) is not None  # used 1 ms before: not idle for 100 s
    assert sched.table.entries == 1


def test_default_expiration_is_a_day_at_the_next_full_check() -> None:
    svc, sched, _, _ = setup()
    svc.pick(daddr=7, now=0)
    day = 24 * 60 * MIN
    svc.pick(daddr=8, now=day - 1)  # no full check at 24 h: 1440 is a multiple of 30
    assert sched.lookup(7) is not None
    svc.pick(daddr=8, now=day)  # the full check at 24 h sees lastuse + 24 h <= now
    assert sched.lookup(7) is None


def test_partial_check_when_entries_exceed_max_size() -> None:
    svc, sched, _, _ = setup()
    sched.table.max_size = 4
    # buckets hash_32(d, 10): 1->391 2->782 3->149 4->540 5->931 6->298 100->201
    assert [hash_32(d, 10) for d in (3, 100, 6)] == [149, 201, 298]
    for d in range(1, 7):
        svc.pick(daddr=d, now=0)
    svc.pick(daddr=100, now=5 * MIN)  # ticks 1..5: partial checks find nothing 6 min idle
    assert sched.table.entries == 7
    assert sched.table.rover == 0  # a sweep of all 1024 buckets ends where it began
    svc.pick(daddr=100, now=6 * MIN)
    # tick 6: goal = min((7 - 4) * 4 // 3, 4 // 2) = 2; from bucket 1: 149 (3) goes, 201
    # (100) is fresh, 298 (6) goes and the goal is met, so 1, 2, 4, 5 survive
    assert [d for d in range(1, 7) if sched.lookup(d) is not None] == [1, 2, 4, 5]
    assert sched.table.rover == 298
    assert sched.table.entries == 5


def test_over_count_can_trigger_a_partial_check() -> None:
    svc, sched, a, b = setup()
    sched.table.max_size = 2
    assert svc.pick(daddr=7, now=0) is a
    for _ in range(2):  # bounce the entry between A and B: entries grows, the table not
        cached, other = (a, b) if sched.lookup(7) is a else (b, a)
        cached.active_conns, other.active_conns = 5, 0
        assert svc.pick(daddr=7, now=0) is other
    assert sched.table.entries == 3
    assert len(sched.table.by_daddr) == 1
    svc.pick(daddr=8, now=6 * MIN - 1)
    assert sched.lookup(7) is not None
    svc.pick(daddr=8, now=6 * MIN)  # 4 counted > 2: tick 6 removes 7, idle for 6 min
    assert sched.lookup(7) is None
    assert sched.table.entries == 3


def test_rebinding_starts_a_new_table() -> None:
    svc, sched, _a, _ = setup()
    svc.pick(daddr=7)
    sched.update(svc.dests, "init")
    assert sched.lookup(7) is None
    assert sched.table.entries == 0
