"""dh: bucket i holds dest i mod n; hand-computed lookups; no rebuild on edit."""

from __future__ import annotations

from scheduling.dh import DestinationHashing
from scheduling.hashing import hash_32
from tests.unit.scheduling.service import Dest, Service


def abc() -> tuple[Service, Dest, Dest, Dest]:
    a, b, c = Dest("A", weight=5), Dest("B", weight=1), Dest("C", weight=1)
    return Service.bound(DestinationHashing(), [a, b, c]), a, b, c


def test_hash_32_hand_values() -> None:
    assert hash_32(1, 8) == 97
    assert hash_32(0x0A000001, 8) == 39
    assert hash_32(0x0A000002, 8) == 137


def test_lookup_by_daddr_ignores_weights() -> None:
    svc, *_ = abc()

    def name(daddr: int) -> str | None:
        d = svc.pick(daddr=daddr)
        return None if d is None else str(d)

    assert name(1) == "B"  # bucket 97, 97 % 3 = 1
    assert name(0x0A000001) == "A"  # bucket 39, 39 % 3 = 0
    assert name(0x0A000002) == "C"  # bucket 137, 137 % 3 = 2


def test_no_fallback_for_an_unusable_bucket() -> None:
    svc, a, _, _ = abc()
    a.weight = 0
    assert svc.pick(daddr=0x0A000001) is None
    a.weight = 5
    a.overloaded = True
    assert svc.pick(daddr=0x0A000001) is None


def test_edit_does_not_rebuild_but_add_and_delete_do() -> None:
    svc, _, b, _ = abc()
    svc.edit(b, weight=0)  # no upd_dest hook: the table keeps B, which is now quiesced
    assert svc.pick(daddr=1) is None
    svc.add(Dest("D"))  # list D, A, B, C: 97 % 4 = 1 -> A
    assert str(svc.pick(daddr=1)) == "A"
    svc.delete(svc.dests[0])  # back to A, B, C
    assert svc.pick(daddr=1) is None  # B again, still weight 0


def test_deleted_dest_in_a_stale_table_is_not_available() -> None:
    svc, _, b, _ = abc()
    b.available = False  # as during deletion, before the del hook runs
    assert svc.pick(daddr=1) is None
