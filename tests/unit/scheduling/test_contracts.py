"""Rules every registered scheduler obeys, run over each SCHEDULERS entry."""

from __future__ import annotations

import ast
import random
import sys
from pathlib import Path

import pytest

import scheduling
from scheduling import SCHEDULER_FLAGS, SCHEDULERS, get_scheduler
from scheduling.base import SchedulerBase
from scheduling.errors import SchedulerFlagError, UnknownSchedulerError, UpdateKindError
from tests.unit.scheduling.service import Dest, Service

PACKAGE = Path(scheduling.__file__).parent
NAMES = sorted(SCHEDULERS)


def make(name: str, seed: int = 7) -> SchedulerBase:
    return get_scheduler(name, rand=random.Random(seed).randrange)


def three(weight: int = 1) -> list[Dest]:
    return [Dest(n, addr=0x0A000001 + i, weight=weight) for i, n in enumerate("ABC")]


def flows(n: int) -> list[tuple[int, int, int]]:
    rnd = random.Random(1)
    return [(rnd.getrandbits(32), rnd.getrandbits(16), rnd.getrandbits(32)) for _ in range(n)]


@pytest.mark.parametrize("name", NAMES)
def test_empty_service_schedules_nothing(name: str) -> None:
    svc = Service.bound(make(name))
    assert svc.pick(saddr=1, daddr=2) is None


@pytest.mark.parametrize("name", NAMES)
def test_weight_zero_is_never_picked(name: str) -> None:
    a, b, c = three()
    b.weight = 0
    svc = Service.bound(make(name), [a, b, c])
    picked = {svc.pick(saddr=s, sport=p, daddr=d) for s, p, d in flows(300)}
    assert b not in picked
    assert picked - {None}


@pytest.mark.parametrize("name", NAMES)
def test_all_weights_zero_gives_none(name: str) -> None:
    svc = Service.bound(make(name), three(weight=0))
    assert {svc.pick(saddr=s, sport=p, daddr=d) for s, p, d in flows(100)} == {None}


@pytest.mark.parametrize("name", NAMES)
def test_overloaded_is_never_picked(name: str) -> None:
    a, b, c = three()
    a.overloaded = True
    svc = Service.bound(make(name), [a, b, c])
    picked = {svc.pick(saddr=s, sport=p, daddr=d) for s, p, d in flows(300)}
    assert a not in picked
    assert picked - {None}


@pytest.mark.parametrize("name", NAMES)
def test_deleted_dest_is_never_picked(name: str) -> None:
    """AVAILABLE: lblc/lblcr tables still hold the deleted dest and must skip it."""
    dests = three()
    svc = Service.bound(make(name), dests)
    fs = flows(200)
    for s, p, d in fs:
        svc.pick(saddr=s, sport=p, daddr=d)
    svc.delete(dests[1])
    picked = {svc.pick(saddr=s, sport=p, daddr=d) for s, p, d in fs}
    assert dests[1] not in picked
    assert picked - {None}


@pytest.mark.parametrize("name", NAMES)
def test_same_operations_give_same_picks(name: str) -> None:
    def run() -> list[str | None]:
        svc = Service.bound(make(name, seed=3), three())
        out = []
        for i, (s, p, d) in enumerate(flows(200)):
            if i == 50:
                svc.add(Dest("D", addr=9, weight=3))
            if i == 120:
                svc.edit(svc.dests[2], weight=5)
            if i == 150:
                svc.delete(svc.dests[0])
            dest = svc.pick(saddr=s, sport=p, daddr=d, now=i * 1000)
            svc_dest = next((x for x in svc.dests if x is dest), None)
            out.append(None if svc_dest is None else svc_dest.name)
        return out

    assert run() == run()


def test_registry_names_are_the_module_stems() -> None:
    stems = {
        p.stem
        for p in PACKAGE.glob("*.py")
        if p.stem not in {"__init__", "base", "errors", "hashing"}
    }
    assert set(SCHEDULERS) == stems
    assert len(SCHEDULERS) == 14
    for name, cls in SCHEDULERS.items():
        assert cls.name == name
        assert cls.__module__ == f"scheduling.{name}"
        doc = sys.modules[cls.__module__].__doc__
        assert doc is not None
        assert f"ip_vs_{name}.c" in doc
        assert 2 <= len([line for line in doc.splitlines() if line.strip()]) <= 5


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownSchedulerError) as info:
        get_scheduler("wlcx")
    assert str(info.value) == (
        "unknown scheduler 'wlcx'; expected one of: "
        "dh, fo, lblc, lblcr, lc, mh, nq, ovf, rr, sed, sh, twos, wlc, wrr"
    )
    assert isinstance(info.value, ValueError)


def test_flags_are_checked_per_scheduler() -> None:
    assert SCHEDULER_FLAGS["sh"] == {"sh-fallback", "sh-port"}
    assert SCHEDULER_FLAGS["mh"] == {"mh-fallback", "mh-port"}
    assert all(not f for n, f in SCHEDULER_FLAGS.items() if n not in {"sh", "mh"})
    get_scheduler("sh", frozenset({"sh-fallback", "sh-port"}))
    with pytest.raises(SchedulerFlagError, match="'mh-port' is for mh; sh accepts"):
        get_scheduler("sh", frozenset({"mh-port"}))
    with pytest.raises(SchedulerFlagError, match="'sh-port' is for sh; rr accepts: no flags"):
        get_scheduler("rr", frozenset({"sh-port"}))
    with pytest.raises(SchedulerFlagError, match="unknown scheduler flag 'fast'"):
        get_scheduler("mh", frozenset({"fast"}))


@pytest.mark.parametrize("name", NAMES)
def test_unknown_update_kind_is_refused(name: str) -> None:
    with pytest.raises(UpdateKindError, match="got 'edit'"):
        make(name).update([], "edit")


def test_the_package_is_a_leaf() -> None:
    """scheduling imports only the standard library and itself (never director)."""
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                assert top in sys.stdlib_module_names or top in {"scheduling", "__future__"}, (
                    f"{path.name} imports {mod}"
                )
