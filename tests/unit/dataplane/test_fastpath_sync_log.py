"""The connection table's sync log and cursor walk, on both fast paths, and their parity."""

from __future__ import annotations

import importlib
import os
import struct
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import director.dataplane._fastpath_py as py

VIP = 0xC000020A
RIP = 0x0A000102
RIP2 = 0x0A000103
CLIENT = 0xC6336401
TCP, UDP = 6, 17
ES, FW, TW, NONE = 1, 4, 5, 0
INACTIVE, TEMPLATE = 0x0100, 0x1000


def _table(fp: ModuleType, log: int = 64, size: int = 16) -> Any:
    t = fp.ConnTable(size, 4, 2)
    t.set_dest(0, 0, RIP, 80, 0, 0)
    t.set_dest(3, 1, RIP2, 0, 0, 0)
    if log:
        t.enable_sync_log(log)
    return t


def _rec(cport: int, state: int, flags: int, removed: int = 0, proto: int = TCP) -> tuple[int, ...]:
    return (proto, CLIENT, cport, VIP, 80, RIP, 80, 0, state, flags, removed)


def test_log_is_off_by_default(fastpath: ModuleType) -> None:
    t = _table(fastpath, log=0)
    h = t.insert(TCP, CLIENT, 1000, VIP, 80, RIP, 80, 0, 0)
    t.set_state(h, ES, 0)
    t.remove(h)
    assert t.sync_changes(100) == ([], 0)


def test_every_event_is_logged_in_order(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    tp = t.insert_template(TCP, CLIENT, VIP, 80, 0, 300, 0)
    h = t.insert(TCP, CLIENT, 1000, VIP, 80, RIP, 80, 0, 0, tp)
    t.set_state(h, ES, 1)
    t.set_state(h, ES, 2)  # no change: no record
    t.set_state(h, FW, 3)
    u = t.insert(UDP, CLIENT, 53, VIP, 80, RIP, 80, 0, 4)
    recs, lost = t.sync_changes(100)
    assert lost == 0
    assert recs == [
        (TCP, CLIENT, 0, VIP, 80, RIP, 80, 0, NONE, TEMPLATE, 0),
        _rec(1000, NONE, INACTIVE),
        _rec(1000, ES, 0),
        _rec(1000, FW, INACTIVE),
        _rec(53, 11, INACTIVE, proto=UDP),
    ]
    t.remove(u)
    t.remove(h)  # detaches from the template
    t.invalidate_template(tp)  # removed under its old key
    assert t.sync_changes(100) == (
        [
            _rec(53, 11, INACTIVE, 1, proto=UDP),
            _rec(1000, FW, INACTIVE, 1),
            (TCP, CLIENT, 0, VIP, 80, RIP, 80, 0, NONE, TEMPLATE, 1),
        ],
        0,
    )
    assert t.expire(10**9) == 1
    assert t.sync_changes(100) == (
        [(TCP, CLIENT, 0, VIP, 0xFFFF, RIP, 0xFFFF, 0, 0, TEMPLATE, 1)],
        0,
    )


def test_records_carry_the_dest_slot(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    tp = t.insert_template(0, CLIENT, 7, 0, 3, 300, 0)
    h = t.insert(TCP, CLIENT, 1000, VIP, 443, RIP2, 443, 3, 0, tp)
    t.set_state(h, ES, 1)
    t.remove(h)
    recs, _ = t.sync_changes(100)
    assert [(r[0], r[4], r[6], r[7], r[10]) for r in recs] == [
        (0, 0, 0, 3, 0),
        (TCP, 443, 443, 3, 0),
        (TCP, 443, 443, 3, 0),
        (TCP, 443, 443, 3, 1),
    ]


def test_expiry_flush_and_reuse_are_logged(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    h = t.insert(TCP, CLIENT, 1000, VIP, 80, RIP, 80, 0, 0)
    t.set_state(h, TW, 0)
    t.insert(UDP, CLIENT, 53, VIP, 80, RIP, 80, 0, 0)
    t.sync_changes(100)
    # A SYN reusing the TIME_WAIT tuple expires the old connection (conn_reuse_mode=1).
    syn = struct.pack("!BBHHHBBHII", 0x45, 0, 40, 0, 0, 64, TCP, 0, CLIENT, VIP)
    syn += struct.pack("!HHIIBBHHH", 1000, 80, 0, 0, 0x50, 0x02, 1024, 0, 0)
    assert t.process(bytearray(syn), 1) == fastpath.NEW
    assert t.sync_changes(100) == ([_rec(1000, TW, INACTIVE, 1)], 0)
    assert t.expire(10**9) == 1
    assert t.sync_changes(100) == ([_rec(53, 11, INACTIVE, 1, proto=UDP)], 0)
    h = t.insert(TCP, CLIENT, 1001, VIP, 80, RIP, 80, 0, 0)
    t.flush()
    assert t.sync_changes(100) == ([_rec(1001, NONE, INACTIVE), _rec(1001, NONE, INACTIVE, 1)], 0)


def test_record_survives_handle_reuse(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    h = t.insert(TCP, CLIENT, 1000, VIP, 80, RIP, 80, 0, 0)
    t.remove(h)
    h2 = t.insert(TCP, CLIENT, 2000, VIP, 80, RIP, 80, 0, 0)
    assert h2 == h
    recs, _ = t.sync_changes(100)
    assert [(r[2], r[10]) for r in recs] == [(1000, 0), (1000, 1), (2000, 0)]


def test_full_log_counts_lost_and_limit_keeps_the_rest(fastpath: ModuleType) -> None:
    t = _table(fastpath, log=3)
    hs = [t.insert(UDP, CLIENT, p, VIP, 80, RIP, 80, 0, 0) for p in range(5)]
    recs, lost = t.sync_changes(2)
    assert [r[2] for r in recs] == [0, 1]
    assert lost == 2
    t.remove(hs[4])
    assert t.sync_changes(100) == (
        [_rec(2, 11, INACTIVE, proto=UDP), _rec(4, 11, INACTIVE, 1, proto=UDP)],
        0,
    )
    t.enable_sync_log(0)
    t.remove(hs[3])
    assert t.sync_changes(100) == ([], 0)
    with pytest.raises(ValueError, match="capacity"):
        t.enable_sync_log(-1)


def test_entries_from_walks_in_slices(fastpath: ModuleType) -> None:
    t = _table(fastpath, log=0)
    hs = [t.insert(UDP, CLIENT, p, VIP, 80, RIP, 80, 0, 0) for p in range(6)]
    t.remove(hs[1])
    t.remove(hs[4])
    seen, cursor, calls = [], 0, 0
    while cursor >= 0:
        rows, cursor = t.entries_from(cursor, 2)
        assert len(rows) <= 2
        seen += [r[0] for r in rows]
        calls += 1
    assert seen == [0, 2, 3, 5]
    assert calls == 2
    assert t.entries_from(0, 10) == (t.entries(10), -1)
    assert t.entries_from(99, 10) == ([], -1)
    assert t.entries_from(0, 0) == ([], 0)
    with pytest.raises(ValueError, match="start"):
        t.entries_from(-1, 1)


# -- the C table and its twin log the same records ------------------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(["insert", "template", "state", "remove", "expire", "invalidate", "take"]),
        st.integers(0, 7),
        st.integers(0, 11),
    ),
    max_size=60,
)


def _run(fp: ModuleType, ops: list[tuple[str, int, int]]) -> list[Any]:
    t = _table(fp, log=8, size=6)
    out: list[Any] = []
    now = 0
    for op, a, b in ops:
        now += 1000
        live = t.entries(100)
        pick = live[a % len(live)] if live else None
        if op == "insert":
            tp = t.lookup_template(TCP, CLIENT & 0xFFFFFF00, VIP, 80)
            dest = 3 if b % 4 >= 2 else 0
            proto = TCP if b % 2 else UDP
            out.append(t.insert(proto, CLIENT, a, VIP, 80, RIP, 80, dest, now, tp))
        elif op == "template":
            out.append(t.insert_template(TCP, CLIENT & 0xFFFFFF00, VIP, 80, b % 2 * 3, a, now))
        elif op == "state" and pick and pick[1] == TCP and not pick[10] & TEMPLATE:
            t.set_state(pick[0], b % 11, now)
        elif op == "remove" and pick and pick[12] == 0:
            t.remove(pick[0])
        elif op == "invalidate" and pick and pick[10] & TEMPLATE:
            t.invalidate_template(pick[0])
        elif op == "expire":
            out.append(t.expire(now + a * 60_000))
        elif op == "take":
            out.append(t.sync_changes(b))
    out.append(t.sync_changes(100))
    out.append(t.entries_from(a if ops else 0, 3))
    return out


@pytest.mark.c_extension
@settings(max_examples=300, deadline=None)
@given(OPS)
def test_c_and_twin_log_the_same(ops: list[tuple[str, int, int]]) -> None:
    if os.environ.get("DIRECTOR_NO_EXTENSIONS") == "1":
        pytest.skip("DIRECTOR_NO_EXTENSIONS=1")
    c = importlib.import_module("director.dataplane._fastpath")
    assert _run(c, ops) == _run(py, ops)
