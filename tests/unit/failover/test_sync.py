"""Connection sync messages (IPVS sync v1 layout) and the sender's ticks, on both fast paths."""

from __future__ import annotations

import ast
import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failover import sync
from failover.sync import ConnEntry, Streamer, SyncError

U32 = st.integers(0, 2**32 - 1)
U16 = st.integers(0, 2**16 - 1)
ENTRIES = st.builds(
    ConnEntry,
    protocol=st.sampled_from([6, 17]),
    caddr=U32,
    cport=U16,
    vaddr=U32,
    vport=U16,
    daddr=U32,
    dport=U16,
    state=st.integers(0, 11),
    flags=st.sampled_from([0, sync.F_INACTIVE, sync.F_TEMPLATE, sync.F_REMOVED]),
    timeout=U32,
    fwmark=U32,
    seq=st.none(),
)
S32 = st.integers(-(2**31), 2**31 - 1)
SEQS = st.tuples(U32, S32, S32, U32, S32, S32)


@given(st.lists(ENTRIES, max_size=200), st.integers(0, 255), st.integers(80, 9000))
def test_encode_decode_round_trip(entries: list[ConnEntry], syncid: int, mtu: int) -> None:
    messages = sync.encode(entries, syncid, max_size=mtu)
    decoded = [e for m in messages for e in sync.decode(m, syncid)]
    assert decoded == [ConnEntry(**{**_fields(e), "flags": e.flags | sync.F_SYNC}) for e in entries]
    for m in messages:
        assert len(m) <= max(mtu, sync.HEADER.size + sync.ENTRY.size)


def _fields(e: ConnEntry) -> dict[str, Any]:
    return e._asdict()


@given(st.lists(st.tuples(ENTRIES, SEQS), max_size=60), st.integers(80, 9000))
def test_seq_data_round_trips_as_the_seq_data_option(
    pairs: list[tuple[ConnEntry, tuple[int, int, int, int, int, int]]], mtu: int
) -> None:
    entries = [e._replace(flags=e.flags | sync.F_SEQ_MASK, seq=s) for e, s in pairs]
    messages = sync.encode(entries, 0, max_size=mtu)
    decoded = [e for m in messages for e in sync.decode(m, 0)]
    assert decoded == [e._replace(flags=e.flags | sync.F_SYNC) for e in entries]


def test_seq_data_layout() -> None:
    """IPVS_OPT_SEQ_DATA after the entry: type 1, length 24, in_seq then out_seq."""
    e = ConnEntry(6, 1, 2, 3, 21, 4, 21, 1, sync.F_OUT_SEQ, 900, 0, (0, 0, 0, 5001, -4, 0))
    [m] = sync.encode([e])
    assert m[8:12] == bytes([0, 6, 0, 62])
    assert len(m) == 8 + 64
    assert struct.unpack_from("!BBIIIIII", m, 8 + 36) == (1, 24, 0, 0, 0, 5001, 2**32 - 4, 0)


def test_layout_is_ipvs_sync_v1() -> None:
    e = ConnEntry(6, 0x0A000164, 40000, 0x0A000105, 80, 0xC0A8010A, 80, 1, 0, 900)
    [m] = sync.encode([e], syncid=7)
    assert len(m) == 8 + 36
    assert struct.unpack_from("!BBHBbH", m) == (0, 7, 44, 1, 1, 0)
    assert m[8:12] == bytes([0, 6, 0, 36])  # type 0 (IPv4), TCP, version 0 / size 36
    assert struct.unpack_from("!III", m, 8 + 24) == (0x0A000164, 0x0A000105, 0xC0A8010A)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda m: m[:-1], "size field"),
        (lambda m: m[:1] + b"\x05" + m[2:], "syncid"),
        (lambda m: b"\x01" + m[1:], "version 1"),
        (lambda m: m[:8] + b"\x01" + m[9:], "type"),
        (lambda m: m[:5] + b"\x00" + m[6:], "version 1"),
    ],
)
def test_bad_messages_refused(mutate: object, match: str) -> None:
    [m] = sync.encode([ConnEntry(6, 1, 2, 3, 4, 5, 6, 1, 0, 900)], syncid=7)
    assert callable(mutate)
    with pytest.raises(SyncError, match=match):
        sync.decode(mutate(m), syncid=7)


VIP, RIP, CLIENT = 0xC000020A, 0x0A000102, 0xC6336401
ES, FW, TW, SYN_RECV = 1, 4, 5, 3


def _table(fp: ModuleType, size: int = 256, log: int = 1024) -> Any:
    t = fp.ConnTable(size, 4, 1)
    t.set_dest(0, 0, RIP, 80, 0, 0)
    t.enable_sync_log(log)
    return t


def _conn(t: Any, cport: int, state: int = ES, ctl: int = -1) -> int:
    h = t.insert(6, CLIENT, cport, VIP, 80, RIP, 80, 0, 0, ctl)
    if state:
        t.set_state(h, state, 0)
    return int(h)


def _sent(tick: sync.Tick) -> list[tuple[int, int, bool, bool]]:
    """(cport, state, template, removed) of each entry, in order."""
    return [(e.cport, e.state, e.template, e.removed) for e in tick.entries]


def test_new_connections_and_state_changes(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    s = Streamer(refresh_ms=10_000)
    h = _conn(t, 10)
    _conn(t, 11, state=SYN_RECV)  # not synced, as the kernel
    tick = s.tick(t, 0)
    assert _sent(tick) == [(10, ES, False, False)]
    assert tick.entries[0] == ConnEntry(6, CLIENT, 10, VIP, 80, RIP, 80, ES, 0, 0)
    assert _sent(s.tick(t, 1)) == []
    t.set_state(h, FW, 2)
    t.set_state(h, TW, 2)  # coalesced: the last state wins
    tick = s.tick(t, 3)
    assert _sent(tick) == [(10, TW, False, False)]
    assert tick.entries[0].flags == sync.F_INACTIVE


def test_each_entry_goes_out_with_the_mark_of_its_dest_slot(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    t.set_dest(2, 0, RIP + 1, 0, 0, 0)
    marks = {2: 9}
    s = Streamer(fwmark_of=lambda slot: marks.get(slot, 0))
    tp = t.insert_template(0, CLIENT, 9, 0, 2, 300, 0)
    marked = t.insert(6, CLIENT, 10, VIP, 443, RIP + 1, 443, 2, 0, tp)
    t.set_state(marked, ES, 0)
    _conn(t, 11)
    logged = [(e.cport, e.vaddr, e.fwmark) for e in s.tick(t, 0).entries]
    assert logged == [(0, 9, 9), (10, VIP, 9), (11, VIP, 0)]
    s.start_dump()
    walked = [(e.cport, e.vaddr, e.fwmark) for e in s.tick(t, 1).entries]
    assert walked == logged
    t.remove(marked)
    assert [(e.cport, e.removed, e.fwmark) for e in s.tick(t, 2).entries] == [(10, True, 9)]
    # Without fwmark_of every entry is unmarked: the package knows nothing of services.
    t.enable_sync_log(16)
    t.insert_template(0, CLIENT + 1, 9, 0, 2, 300, 3)
    assert [e.fwmark for e in Streamer().tick(t, 3).entries] == [0]


def test_removal_only_of_what_was_synced(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    s = Streamer()
    synced, never = _conn(t, 10), _conn(t, 11, state=0)
    s.tick(t, 0)
    t.remove(synced)
    t.remove(never)
    tick = s.tick(t, 1)
    assert _sent(tick) == [(10, ES, False, True)]
    assert tick.entries[0].flags & sync.F_REMOVED
    # A connection created and removed within one tick is removed on the standby too
    # (harmless there: it holds no copy).
    t.remove(_conn(t, 12))
    assert _sent(s.tick(t, 2)) == [(12, ES, False, True)]


def test_reused_tuple_removes_the_old_copy(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    s = Streamer()
    h = _conn(t, 10, state=TW)
    s.tick(t, 0)
    t.remove(h)
    _conn(t, 10, state=0)  # the new connection in NONE is not synced yet
    assert _sent(s.tick(t, 1)) == [(10, TW, False, True)]


def test_order_templates_conns_then_removals(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    s = Streamer()
    old_tp = t.insert_template(6, CLIENT, VIP, 80, 0, 300, 0)
    old = _conn(t, 9, ctl=old_tp)
    s.tick(t, 0)
    t.remove(old)
    t.remove(old_tp)
    tp = t.insert_template(6, CLIENT, VIP, 443, 0, 300, 0)
    _conn(t, 10, ctl=tp)
    got = [(e.vport, e.cport, e.template, e.removed) for e in s.tick(t, 1).entries]
    assert got == [
        (443, 0, True, False),
        (80, 10, False, False),
        (80, 9, False, True),
        (80, 0, True, True),
    ]


def test_refresh_sends_every_entry_once_per_refresh_ms(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    s = Streamer(refresh_ms=1000)
    for p in range(100):
        _conn(t, p)
    s.tick(t, 0)  # the log: every connection once
    seen: list[int] = []
    for now in range(100, 1001, 100):
        tick = s.tick(t, now)
        assert tick.records == 0
        assert len(tick.entries) == 10  # 100 entries * 100 ms / 1000 ms
        seen += [e.cport for e in tick.entries]
    assert sorted(seen) == list(range(100))
    assert not any(s.tick(t, 1001 + i).entries for i in range(5))  # 1 ms: under one entry


def test_dump_walks_in_slices_and_ends(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    s = Streamer(dump_slice=30)
    hs = [_conn(t, p) for p in range(50)]
    tp = t.insert_template(6, CLIENT, VIP, 80, 0, 300, 0)  # handle 50
    for p in range(50, 99):
        _conn(t, p)
    t.remove(hs[0])
    assert _conn(t, 99, ctl=tp) == hs[0]  # handle 0, its template further on
    t.sync_changes(1000)
    s.start_dump()
    ticks = [s.tick(t, 0) for _ in range(4)]
    assert [k.dump_end for k in ticks] == [False, False, False, True]
    assert not s.dumping
    sent = {(e.cport, e.template) for k in ticks for e in k.entries}
    assert sent == {(0, True), *((p, False) for p in range(1, 100))}
    # The template of a connection goes with it, before it.
    assert [(e.cport, e.template) for e in ticks[0].entries][:2] == [(0, True), (99, False)]


def test_empty_dump_ends_at_once(fastpath: ModuleType) -> None:
    s = Streamer()
    s.start_dump()
    tick = s.tick(_table(fastpath), 0)
    assert (tick.entries, tick.dump_end) == ([], True)


def test_a_repeated_request_does_not_move_the_dumps_end(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    s = Streamer(dump_slice=10)
    for p in range(40):
        _conn(t, p)
    t.sync_changes(1000)
    s.start_dump()
    seen: list[int] = []
    ends = []
    for _ in range(8):
        tick = s.tick(t, 0)
        seen += [e.cport for e in tick.entries]
        ends.append(tick.dump_end)
        if tick.dump_end:
            break
        s.start_dump()  # the standby asks again every tick while it waits
    assert ends == [False, False, False, True]
    assert sorted(seen) == list(range(40))


def test_changes_lost_during_a_dump_walk_a_full_pass_from_there(fastpath: ModuleType) -> None:
    t = _table(fastpath, log=8)
    s = Streamer(dump_slice=10)
    for p in range(40):
        _conn(t, p)
    t.sync_changes(1000)
    s.start_dump()
    first = s.tick(t, 0)
    assert [e.cport for e in first.entries] == list(range(10))
    for p in range(40, 50):  # 10 inserts into a log of 8: two lost
        _conn(t, p)
    seen: list[int] = []
    for _ in range(10):
        tick = s.tick(t, 0)
        seen += [e.cport for e in tick.entries]
        if tick.dump_end:
            break
    else:
        pytest.fail(f"no end of dump in 10 ticks: {seen}")
    assert sorted(set(seen)) == list(range(50))
    assert seen.count(5) == 1  # walked again on the second pass, which reached handle 10


def test_log_overflow_starts_a_dump(fastpath: ModuleType) -> None:
    t = _table(fastpath, log=8)
    s = Streamer(dump_slice=1000)
    for p in range(20):
        _conn(t, p)
    tick = s.tick(t, 0)
    assert tick.lost == 40 - 8
    assert tick.dump_end
    assert sorted(e.cport for e in tick.entries) == list(range(20))


class Counting:
    """A table that counts what is read from it: log records and walked rows."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.read = 0

    def __len__(self) -> int:
        return len(self.table)

    def sync_changes(self, limit: int) -> tuple[list[tuple[int, ...]], int]:
        records, lost = self.table.sync_changes(limit)
        self.read += len(records)
        return records, lost

    def entries_from(self, start: int, limit: int) -> tuple[list[tuple[int, ...]], int]:
        rows, nxt = self.table.entries_from(start, limit)
        self.read += len(rows)
        return rows, nxt

    def conn_info(self, handle: int) -> tuple[int, ...]:
        self.read += 1
        return tuple(self.table.conn_info(handle))

    def lookup(self, proto: int, caddr: int, cport: int, vaddr: int, vport: int) -> int:
        self.read += 1
        return int(self.table.lookup(proto, caddr, cport, vaddr, vport))

    def seq_state(self, handle: int) -> tuple[int, int, int, int, int, int]:
        return tuple(self.table.seq_state(handle))


@pytest.mark.parametrize("size", [1_000, 20_000])
def test_tick_reads_the_changes_and_a_slice_not_the_table(fastpath: ModuleType, size: int) -> None:
    t = _table(fastpath, size=size + 64, log=64)
    for p in range(size):
        t.insert(17, CLIENT + (p >> 16), p & 0xFFFF, VIP, 80, RIP, 80, 0, 0)
    t.enable_sync_log(64)  # the connections exist; from here, changes are logged
    s = Streamer(refresh_ms=60_000, dump_slice=500)
    c = Counting(t)
    s.tick(c, 0)
    for now in range(100, 2001, 100):
        changed = [t.insert(6, CLIENT, 40000 + now // 100, VIP, 80, RIP, 80, 0, now)]
        t.set_state(changed[0], ES, now)
        c.read = 0
        tick = s.tick(c, now)
        slice_ = -(-size * 100 // 60_000)
        assert tick.records == 2
        assert c.read <= 2 + slice_
        assert tick.rows >= size * 100 // 60_000
    assert c.read < size / 100


def test_failover_is_a_leaf() -> None:
    """failover imports the standard library and itself only, never director or the others."""
    root = Path(__file__).resolve().parents[3] / "failover"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top == "failover" or top in sys.stdlib_module_names, (path.name, name)
