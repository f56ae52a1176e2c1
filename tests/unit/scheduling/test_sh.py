"""sh: weighted 256-bucket table, source hashing, sh-port sum and the 2*ih fallback."""

from __future__ import annotations

import pytest

from scheduling.base import FlowKey
from scheduling.hashing import hash_32
from scheduling.sh import SourceHashing
from tests.unit.scheduling.service import Dest, Service


def name(svc: Service, saddr: int, sport: int = 0, proto: int = 6) -> str | None:
    d = svc.sched.schedule(FlowKey(proto, saddr, sport, 0, 80))
    return None if d is None else str(d)


def test_table_is_filled_by_weight() -> None:
    a, b = Dest("A", weight=2), Dest("B", weight=1)
    svc = Service.bound(SourceHashing(), [a, b])  # buckets A, A, B, A, A, B, ...
    assert hash_32(1, 8) % 3 == 1
    assert name(svc, 1) == "A"
    assert hash_32(0x0A000002, 8) % 3 == 2
    assert name(svc, 0x0A000002) == "B"


def test_weight_zero_still_takes_one_bucket_per_round_but_is_unavailable() -> None:
    a, b = Dest("A", weight=0), Dest("B", weight=1)  # buckets A, B, A, B, ...
    svc = Service.bound(SourceHashing(), [a, b])
    assert name(svc, 1) == "B"  # bucket 97 is odd
    assert name(svc, 0x0A000001) == "B"  # bucket 39 is odd too
    assert name(svc, 0) is None  # bucket 0 is A, quiesced, no fallback


def test_port_is_added_to_the_address_only_with_sh_port_and_a_port_protocol() -> None:
    dests = [Dest(n) for n in "ABCD"]
    plain = Service.bound(SourceHashing(), dests)
    ported = Service.bound(SourceHashing(frozenset({"sh-port"})), dests)
    # 10.0.0.1 port 1 hashes as 10.0.0.2: bucket 137 -> 137 % 4 = 1 -> B
    assert name(ported, 0x0A000001, sport=1) == "B"
    assert name(plain, 0x0A000001, sport=1) == "D"  # bucket 39 -> 3
    assert name(ported, 0x0A000001, sport=1, proto=1) == "D"  # ICMP: no port
    assert name(ported, 0xFFFFFFFF, sport=2) == name(plain, 1)  # the sum wraps mod 2**32


def test_fallback_probes_from_twice_the_hash() -> None:
    a, b, c, d = (Dest(n) for n in "ABCD")
    d.overloaded = True
    fb = Service.bound(SourceHashing(frozenset({"sh-fallback"})), [a, b, c, d])
    strict = Service.bound(SourceHashing(), [a, b, c, d])
    # ih = 39 -> D (39 % 4 = 3) is overloaded; probe (2*39 + 0) & 255 = 78 -> 78 % 4 = 2 -> C
    # (probing from ih + 1 = 40 would give A)
    assert name(strict, 0x0A000001) is None
    assert name(fb, 0x0A000001) == "C"
    c.overloaded = True  # next probe 79 -> D (overloaded), 80 -> A
    assert name(fb, 0x0A000001) == "A"


@pytest.mark.parametrize("kind", ["add", "del", "upd"])
def test_every_hook_rebuilds(kind: str) -> None:
    a, b = Dest("A", weight=1), Dest("B", weight=1)
    svc = Service.bound(SourceHashing(), [a, b])
    assert name(svc, 1) == "B"  # 97 odd
    if kind == "add":
        svc.add(Dest("C"))  # C, A, B: 97 % 3 = 1 -> A
        assert name(svc, 1) == "A"
    elif kind == "del":
        svc.delete(a)
        assert name(svc, 0x0A000001) == "B"
    else:
        svc.edit(a, weight=2)  # A, A, B: 97 % 3 = 1 -> A
        assert name(svc, 1) == "A"


def test_empty_table_gives_none_even_with_fallback() -> None:
    svc = Service.bound(SourceHashing(frozenset({"sh-fallback"})))
    assert name(svc, 1) is None
