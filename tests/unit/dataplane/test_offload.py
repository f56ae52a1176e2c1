"""The offload's bookkeeping on both fast paths: the table's credit and seen, and Offload
following the table's log (install on ESTABLISHED, remove on leaving it, fold counters,
share the log with connection sync). The kernel side is a recording loader here; the tc
program itself runs in tests/netns/test_offload_program.py and the daemon's tests."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from director.dataplane import offload

VIP, RIP, CLIENT = 0xC000020A, 0x0A000102, 0xC6336401
TCP, UDP = 6, 17
ES, FW = 1, 4


def _table(fp: ModuleType) -> Any:
    t = fp.ConnTable(16, 4, 2)
    t.set_dest(0, 1, RIP, 8080, 0, 0)
    t.set_timeout(TCP, ES, 900)
    return t


def test_credit_adds_to_the_dest_and_its_service(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    t.credit(0, 3, 300, 2, 2000)
    d = t.dest_buffer()
    assert [d[f] for f in (fastpath.DEST_INPKTS, fastpath.DEST_INBYTES)] == [3, 300]
    assert [d[f] for f in (fastpath.DEST_OUTPKTS, fastpath.DEST_OUTBYTES)] == [2, 2000]
    s = t.svc_buffer()[fastpath.SVC_FIELDS :]
    assert [s[fastpath.SVC_INPKTS], s[fastpath.SVC_OUTBYTES]] == [3, 2000]
    with pytest.raises(ValueError, match=r"outbytes: must be in 0\.\.4611686018427387904, got -1"):
        t.credit(0, 0, 0, 0, -1)
    with pytest.raises(ValueError, match=r"dest: must be in 0\.\.3, got 4"):
        t.credit(4, 0, 0, 0, 0)


def test_seen_moves_the_deadline_only_later(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    h = t.insert(TCP, CLIENT, 1000, VIP, 80, RIP, 8080, 0, 0)
    t.set_state(h, ES, 0)  # deadline 900 s
    t.seen(h, 100_000)
    assert t.conn_info(h)[10] == 1_000_000
    t.seen(h, 50_000)  # earlier than the last packet: no change
    assert t.conn_info(h)[10] == 1_000_000
    assert t.expire(900_000) == 0
    assert t.expire(1_000_000) == 1
    with pytest.raises(ValueError, match="no connection with handle 3"):
        t.seen(3, 0)


class Loader:
    """Records what Offload asks of the kernel; counts forwarded packets per entry."""

    def __init__(self) -> None:
        self.entries: dict[tuple[int, ...], int] = {}
        self.counts: dict[tuple[int, ...], tuple[int, int, int, int, int]] = {}

    def install(self, *args: int) -> None:
        self.entries[args[:7]] = args[7]
        self.counts[args[:7]] = (0, 0, 0, 0, 0)

    def take(self, *key: int) -> tuple[int, int, int, int, int, int]:
        if key not in self.entries:
            return (0, 0, 0, 0, 0, -1)
        c = self.counts[key]
        self.counts[key] = (0, 0, 0, 0, c[4])
        return (*c, self.entries[key])

    def uninstall(self, *key: int) -> tuple[int, int, int, int, int, int]:
        out = self.take(*key)
        self.entries.pop(key, None)
        return out

    def clear(self) -> None:
        self.entries.clear()

    def close(self) -> None:
        pass

    def release(self) -> None:
        pass

    def __len__(self) -> int:
        return len(self.entries)


def _offload(t: Any) -> tuple[offload.Offload, Loader]:
    off = offload.Offload(t)
    loader = Loader()
    off._loader = loader
    off._in_if, off._out_if = 2, 1
    off.mode = offload.OFFLOAD
    t.enable_sync_log(offload.LOG_CAPACITY)
    return off, loader


def test_follows_the_table_and_folds_counts(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    off, loader = _offload(t)
    key = (TCP, CLIENT, 1000, VIP, 80, RIP, 8080)
    h = t.insert(*key, 0, 0)  # SYN_RECV-like NONE: decided on the TUN path, not offloaded
    off.pump()
    assert loader.entries == {}
    t.set_state(h, ES, 10)
    u = t.insert(UDP, CLIENT, 53, VIP, 80, RIP, 8080, 0, 10)
    off.pump()
    assert loader.entries == {key: h, (UDP, CLIENT, 53, VIP, 80, RIP, 8080): u}
    loader.counts[key] = (5, 500, 4, 4000, 20_000_000_000)  # last packet at 20 s
    off.fold(30_000)
    d = t.dest_buffer()
    assert (d[fastpath.DEST_INPKTS], d[fastpath.DEST_OUTBYTES]) == (5, 4000)
    assert t.conn_info(h)[10] == 20_000 + 900_000
    # A FIN came through the TUN: the entry goes, its last counts with it.
    loader.counts[key] = (1, 100, 0, 0, 21_000_000_000)
    t.set_state(h, FW, 21_000)
    off.pump()
    assert key not in loader.entries
    assert d[fastpath.DEST_INPKTS] == 6
    assert off.statistics().connections == 1
    # A removed UDP connection leaves the map too.
    t.remove(u)
    off.pump()
    assert loader.entries == {}
    assert off.statistics().installed == 2
    assert off.statistics().removed == 2


def test_app_and_sequence_adjusted_connections_stay_on_the_tun(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    off, loader = _offload(t)
    h = t.insert(TCP, CLIENT, 1000, VIP, 21, RIP, 21, 0, 0)
    t.bind_app(h)
    t.set_state(h, ES, 1)
    off.pump()
    assert loader.entries == {}


def test_a_standby_installs_nothing(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    off, loader = _offload(t)
    off._serving = lambda: False
    t.insert(UDP, CLIENT, 53, VIP, 80, RIP, 8080, 0, 10)
    off.pump()
    assert loader.entries == {}


def test_connection_sync_reads_the_same_log(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    off, _ = _offload(t)
    view = off.table_view()
    assert view.sync_changes(10) == ([], 0)  # off until sync asks
    view.enable_sync_log(2)
    for port in (1, 2, 3):
        t.insert(UDP, CLIENT, port, VIP, 80, RIP, 8080, 0, 10)
    off.pump()
    recs, lost = view.sync_changes(10)
    assert [r[2] for r in recs] == [1, 2]
    assert lost == 1
    assert len(view) == 3
    assert view.lookup(UDP, CLIENT, 3, VIP, 80) >= 0


def test_tun_mode_leaves_the_log_to_sync(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    off = offload.Offload(t)
    off.start(False, "lo", "lo", 16)
    assert off.statistics().mode == "tun"
    view = off.table_view()
    view.enable_sync_log(8)
    t.insert(UDP, CLIENT, 1, VIP, 80, RIP, 8080, 0, 10)
    assert len(view.sync_changes(10)[0]) == 1


def test_a_big_map_is_folded_over_several_ticks(
    fastpath: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(offload, "FOLD_BATCH", 2)
    t = _table(fastpath)
    off, loader = _offload(t)
    keys = [(UDP, CLIENT, port, VIP, 80, RIP, 8080) for port in (1, 2, 3)]
    for key in keys:
        t.insert(*key, 0, 0)
    off.pump()
    for key in keys:
        loader.counts[key] = (1, 100, 1, 100, 1_000_000_000)
    d = t.dest_buffer()
    off.fold(2_000)
    assert d[fastpath.DEST_INPKTS] == 2
    off.fold(3_000)
    assert d[fastpath.DEST_INPKTS] == 3
    # A connection removed while queued is skipped, the rest go on in turn.
    for key in keys:
        loader.counts[key] = (1, 100, 1, 100, 4_000_000_000)
    off.fold(4_000)
    assert d[fastpath.DEST_INPKTS] == 5
    t.remove(t.lookup(*keys[0][:5]))
    off.pump()
    off.fold(5_000)
    assert d[fastpath.DEST_INPKTS] == 6


def test_a_takeover_installs_what_the_table_already_holds(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    off, loader = _offload(t)
    serving = False
    off._serving = lambda: serving
    key = (TCP, CLIENT, 1000, VIP, 80, RIP, 8080)
    h = t.insert(*key, 0, 0)
    t.set_state(h, ES, 0)  # a synced established connection on the standby
    t.insert(TCP, CLIENT, 1001, VIP, 80, RIP, 8080, 0, 0)  # not established: stays
    off.fold(1_000)
    assert loader.entries == {}
    serving = True  # this director became MASTER
    off.fold(2_000)
    assert loader.entries == {key: h}
    serving = False
    off.fold(3_000)
    assert loader.entries == {}
