"""A full table evicts its oldest half-open entry, on both fast paths (drop_entry's rule:
half-open entries go first under pressure); with none to evict, an insert fails once,
counted once under DROP_TABLE_FULL."""

from __future__ import annotations

from types import ModuleType
from typing import Any

SYN_RECV, ESTABLISHED = 3, 1
CADDR, VADDR, DADDR = 0xC6336407, 0x0A000105, 0xC0A8010A


def table(fp: ModuleType, size: int) -> Any:
    t = fp.ConnTable(size, 4, 2)
    t.set_dest(0, 0, DADDR, 80, 0, 0)
    return t


def insert(t: Any, cport: int, now: int = 0, ctl: int = -1) -> int:
    return int(t.insert(6, CADDR, cport, VADDR, 80, DADDR, 80, 0, now, ctl))


def test_the_oldest_half_open_entry_makes_room(fastpath: ModuleType) -> None:
    t = table(fastpath, 4)
    hs = [insert(t, 1000 + i) for i in range(4)]
    for h in hs:
        t.set_state(h, SYN_RECV, 0)
    t.set_state(hs[0], ESTABLISHED, 1)  # completed its handshake: never evicted
    new = insert(t, 2000, now=2)
    assert new == hs[1]  # the oldest half-open one's handle, freed and reused
    assert t.conn_info(new)[2] == 2000
    assert t.evictions() == 1
    assert t.drops()["DROP_TABLE_FULL"] == 0
    assert len(t) == 4
    assert t.conn_info(hs[0])[8] == ESTABLISHED
    # Counters stay exact: the evicted entry was unbound from its dest.
    dbuf = t.dest_buffer()
    active, inactive = dbuf[fastpath.DEST_ACTIVE], dbuf[fastpath.DEST_INACTIVE]
    assert (active, inactive) == (3, 1)


def test_a_full_table_without_half_open_entries_refuses_once(fastpath: ModuleType) -> None:
    t = table(fastpath, 2)
    for cport in (1000, 1001):
        t.set_state(insert(t, cport), ESTABLISHED, 0)
    assert insert(t, 2000) == -1
    assert t.evictions() == 0
    assert t.drops()["DROP_TABLE_FULL"] == 1


def test_a_half_open_entry_that_re_entered_the_state_is_evicted_in_its_new_place(
    fastpath: ModuleType,
) -> None:
    t = table(fastpath, 3)
    a, b, c = (insert(t, 1000 + i) for i in range(3))
    for h in (a, b, c):
        t.set_state(h, SYN_RECV, 0)
    t.set_state(a, ESTABLISHED, 1)
    t.set_state(a, SYN_RECV, 2)  # now the newest half-open entry
    assert insert(t, 2000, now=3) == b
    assert insert(t, 2001, now=3) == c
    assert insert(t, 2002, now=3) == a
    assert t.evictions() == 3


def test_the_controlling_connection_of_an_insert_is_kept(fastpath: ModuleType) -> None:
    t = table(fastpath, 2)
    ctl, other = insert(t, 21), insert(t, 1000)
    t.set_state(ctl, SYN_RECV, 0)
    t.set_state(other, SYN_RECV, 0)
    assert insert(t, 2000, ctl=ctl) == other
    assert t.conn_info(ctl)[11] == 1  # n_control
    # Now the only half-open entry controls one: nothing can go.
    assert insert(t, 2001) == -1
    assert t.drops()["DROP_TABLE_FULL"] == 1
