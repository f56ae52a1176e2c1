"""Properties over random lists and operations (Hypothesis)."""

from __future__ import annotations

import random
from collections import Counter
from functools import reduce
from math import gcd

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduling import SCHEDULERS, get_scheduler
from scheduling.base import FlowKey
from scheduling.dh import DestinationHashing
from scheduling.mh import MaglevHashing
from scheduling.sh import SourceHashing
from scheduling.wrr import WeightedRoundRobin
from tests.unit.scheduling.service import Dest, Service

weights = st.lists(st.integers(0, 12), min_size=1, max_size=8).filter(any)


@given(weights, st.integers(1, 3))
def test_wrr_gives_each_dest_its_weight_share_per_cycle(ws: list[int], cycles: int) -> None:
    """From a fresh bind, with di = gcd of the positive weights, the sequence repeats every
    L = sum(w) / di picks and each cycle holds exactly w / di picks of each dest."""
    dests = [Dest(f"D{i}", weight=w) for i, w in enumerate(ws)]
    svc = Service.bound(WeightedRoundRobin(), dests)
    di = reduce(gcd, [w for w in ws if w > 0])
    length = sum(ws) // di
    picks = svc.picks(length * cycles)
    assert Counter(picks) == {f"D{i}": w // di * cycles for i, w in enumerate(ws) if w > 0}
    assert picks[:length] * cycles == picks


@settings(max_examples=30, deadline=None)
@given(weights, st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=30))
def test_hashing_schedulers_keep_a_key_on_one_dest(ws: list[int], keys: list[int]) -> None:
    for cls in (SourceHashing, DestinationHashing, MaglevHashing):
        dests = [Dest(f"D{i}", addr=0x0A000001 + i, weight=w) for i, w in enumerate(ws)]
        svc = Service.bound(cls(), dests)
        first = [svc.pick(saddr=k, daddr=k) for k in keys]
        for d in dests:  # load changes must not move anyone
            d.active_conns += 7
        assert [svc.pick(saddr=k, daddr=k) for k in keys] == first


def test_mh_moves_little_more_than_the_sources_of_a_removed_dest() -> None:
    n = 10
    dests = [Dest(f"D{i}", addr=0xC0000201 + i) for i in range(n)]
    sched = MaglevHashing()
    svc = Service.bound(sched, dests)
    sources = random.Random(5).sample(range(2**32), 20_000)
    before = [sched.schedule(FlowKey(6, s, 0, 0, 80)) for s in sources]
    gone = dests[3]
    svc.delete(gone)
    after = [sched.schedule(FlowKey(6, s, 0, 0, 80)) for s in sources]
    kept = [(b, a) for b, a in zip(before, after, strict=True) if b is not gone]
    moved = sum(b is not a for b, a in kept)
    assert abs(len(kept) / len(sources) - (n - 1) / n) < 0.02
    assert moved / len(kept) < 0.02
    assert all(a is not gone for a in after)


ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "del", "weight", "overload", "conns", "schedule", "schedule"]),
        st.integers(0, 2**32 - 1),
        st.integers(0, 20),
    ),
    max_size=60,
)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(sorted(SCHEDULERS)), ops)
def test_random_operations_never_raise_or_pick_unusable(
    name: str, script: list[tuple[str, int, int]]
) -> None:
    svc = Service.bound(get_scheduler(name, rand=random.Random(0).randrange))
    now = 0
    for op, x, y in script:
        now += y * 7_000
        if op == "add" or not svc.dests:
            svc.add(Dest(f"D{x % 97}", addr=x, port=y, weight=y % 5))
            continue
        d = svc.dests[x % len(svc.dests)]
        if op == "del":
            svc.delete(d)
        elif op == "weight":
            svc.edit(d, weight=y % 4)
        elif op == "overload":
            svc.edit(d, overloaded=not d.overloaded)
        elif op == "conns":
            d.active_conns, d.inactive_conns = y, x % 50
        else:
            got = svc.pick(saddr=x, daddr=x % 13, sport=y, now=now)
            if got is None:
                continue
            assert any(got is e for e in svc.dests), "a deleted dest was picked"
            assert got.weight > 0
            assert got.available
            if name != "lblc":  # lblc does not test OVERLOAD on its cached dest
                assert not got.overloaded
