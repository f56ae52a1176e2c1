"""twos: two weighted draws in [0, T], the less loaded (per weight) of the two."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from scheduling.twos import PowerOfTwoChoices
from tests.unit.scheduling.service import Dest, Service


def draws(*values: int) -> tuple[Callable[[int], int], list[int]]:
    seen: list[int] = []
    it: Iterator[int] = iter(values)

    def rand(n: int) -> int:
        seen.append(n)
        return next(it)

    return rand, seen


def test_draws_are_inclusive_of_the_total_weight() -> None:
    rand, seen = draws(0, 0)
    svc = Service.bound(PowerOfTwoChoices(rand=rand), [Dest("A", weight=2), Dest("B", weight=3)])
    assert svc.picks(1) == ["A"]
    assert seen == [6, 6]  # get_random_u32_below(T + 1)


def test_walk_subtracts_weights_until_zero_or_below() -> None:
    a, b = Dest("A", weight=2), Dest("B", weight=3)
    for r, expected in ((1, "A"), (2, "A"), (3, "B"), (5, "B")):
        rand, _ = draws(r, r)
        assert Service.bound(PowerOfTwoChoices(rand=rand), [a, b]).picks(1) == [expected]


def test_second_choice_only_when_strictly_less_loaded() -> None:
    a = Dest("A", weight=2, active_conns=1)  # 256/2
    b = Dest("B", weight=3, active_conns=1)  # 256/3
    rand, _ = draws(0, 5)
    assert Service.bound(PowerOfTwoChoices(rand=rand), [a, b]).picks(1) == ["B"]
    b.active_conns = 0
    a.active_conns = 0  # equal load: choice1 stays
    rand, _ = draws(0, 5)
    assert Service.bound(PowerOfTwoChoices(rand=rand), [a, b]).picks(1) == ["A"]


def test_weight_zero_and_overloaded_take_no_share() -> None:
    z, o, c = Dest("Z", weight=0), Dest("O", overloaded=True, weight=9), Dest("C", weight=1)
    rand, seen = draws(1, 1)
    assert Service.bound(PowerOfTwoChoices(rand=rand), [z, o, c]).picks(1) == ["C"]
    assert seen == [2, 2]
