"""Connection table snapshots: dump, file format, restore, retention (both fast paths)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import stat
import time
from pathlib import Path
from socket import IPPROTO_TCP, IPPROTO_UDP
from types import ModuleType
from typing import Any

import pytest

from director.cli import main
from director.config import DirectorConfig
from director.daemon import snapshot
from director.daemon.snapshot import SnapshotFile, plan_prune
from director.ipvs.service import IPVS

VIP, RIP1, RIP2, CLIENT = 0xC000020A, 0x0A000102, 0x0A000103, 0xC6336401
ES, SYN_RECV, LISTEN = 1, 3, 9
NOW = 5_000_000


def _ipvs(fastpath: ModuleType, extra_first: bool = False) -> IPVS:
    ipvs = IPVS(fastpath.ConnTable(256, max_dests=16, max_svcs=8))
    if extra_first:  # another configuration: the same dests land in other slots
        other = ipvs.add_service(IPPROTO_UDP, VIP, 53, "rr")
        other.add_dest(RIP2, 53)
        other.add_dest(RIP1, 53)
    web = ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
    web.add_dest(RIP1, 80)
    web.add_dest(RIP2, 80)
    sticky = ipvs.add_service(IPPROTO_TCP, VIP, 443, "rr", timeout=300)
    sticky.add_dest(RIP2, 443)
    ipvs.set_timeouts(900, 120, 300)
    return ipvs


def _fill(ipvs: IPVS) -> dict[str, int]:
    t = ipvs.table
    web = ipvs.services[(IPPROTO_TCP, VIP, 80, 0)]
    sticky = ipvs.services[(IPPROTO_TCP, VIP, 443, 0)]
    d1, d2 = web.find_dest(RIP1, 80), web.find_dest(RIP2, 80)
    s2 = sticky.find_dest(RIP2, 443)
    assert d1
    assert d2
    assert s2
    a = t.insert(6, CLIENT, 1000, VIP, 80, RIP1, 80, d1.slot, NOW)
    t.set_state(a, ES, NOW)
    b = t.insert(6, CLIENT, 1001, VIP, 80, RIP2, 80, d2.slot, NOW - 1000)
    t.set_state(b, SYN_RECV, NOW - 1000)
    t.set_seq_state(b, 100, 5, 0, 200, -3, 0)
    tmpl = t.insert_template(6, CLIENT, VIP, 443, s2.slot, 300, NOW)
    c = t.insert(6, CLIENT, 2000, VIP, 443, RIP2, 443, s2.slot, NOW, tmpl)
    t.set_state(c, ES, NOW)
    return {"a": a, "b": b, "tmpl": tmpl, "c": c}


def _state(ipvs: IPVS, now: int) -> list[tuple[Any, ...]]:
    """Each entry as (key, daddr, dport, state, flags, time left, controlled by, n_control)."""
    t = ipvs.table
    rows: list[tuple[Any, ...]] = []
    for h, proto, caddr, cport, vaddr, vport, daddr, dport, _d, st, fl, exp, nctl, ctl in t.entries(
        1000
    ):
        parent = None if ctl < 0 else t.conn_info(ctl)[:5]
        rows.append(
            (proto, caddr, cport, vaddr, vport, daddr, dport, st, fl, exp - now, parent, nctl)
        )
        if proto == 6 and not fl & t_flag(ipvs):
            rows[-1] += (t.seq_state(h),)
    return sorted(rows)


def t_flag(ipvs: IPVS) -> int:
    return int(importlib.import_module(type(ipvs.table).__module__).CONN_F_TEMPLATE)


def _cfg(tmp_path: Path, **kw: Any) -> DirectorConfig:
    return DirectorConfig(state_dir=tmp_path, control_socket=tmp_path / "lvsd.sock", **kw)


def _write(ipvs: IPVS, cfg: DirectorConfig, now: int = NOW) -> snapshot.Written:
    cap = asyncio.run(snapshot.capture(ipvs.table, ipvs, now))
    return snapshot.write(cfg.state_dir, snapshot.ident(cfg.control_socket), cap, cfg)


def test_dump_is_the_same_bytes_from_c_and_the_twin() -> None:
    c = importlib.import_module("director.dataplane._fastpath")
    py = importlib.import_module("director.dataplane._fastpath_py")
    dumps = []
    for fp in (c, py):
        ipvs = _ipvs(fp)
        hs = _fill(ipvs)
        ipvs.table.remove(hs["a"])  # a hole in the handles
        data, nxt = ipvs.table.dump_from(0, 100, NOW + 10)
        assert nxt == -1
        dumps.append(data)
        # Sliced: every entry once, in handle order.
        parts, start = [], 0
        while start >= 0:
            part, start = ipvs.table.dump_from(start, 1, NOW + 10)
            parts.append(part)
        assert b"".join(parts) == data
    assert dumps[0] == dumps[1]
    assert len(dumps[0]) == 3 * snapshot.RECORD.size


def test_a_snapshot_restores_keys_states_deadlines_templates_and_offsets(
    fastpath: ModuleType, tmp_path: Path
) -> None:
    before = _ipvs(fastpath)
    _fill(before)
    cfg = _cfg(tmp_path)
    written = _write(before, cfg)
    assert written.path is not None
    assert written.reason == ""
    # Restored 2.5 s later by another process whose configuration puts the dests in
    # other slots: every entry comes back with 2.5 s less to live.
    after = _ipvs(fastpath, extra_first=True)
    snap = snapshot.read(written.path)
    done = snapshot.restore(after.table, after, snap, 777, snap.created_ms + 2500)
    assert (done.restored, done.expired, done.unmatched) == (4, 0, 0)
    assert _state(after, 777 - 2500) == _state(before, NOW)
    # The dests' counters follow: one active on RIP1:80, one half-open on RIP2:80.
    web = after.services[(IPPROTO_TCP, VIP, 80, 0)]
    d1, d2 = web.find_dest(RIP1, 80), web.find_dest(RIP2, 80)
    assert d1
    assert d2
    assert (d1.active_conns, d2.active_conns + d2.inactive_conns) == (1, 1)
    sticky = after.services[(IPPROTO_TCP, VIP, 443, 0)].find_dest(RIP2, 443)
    assert sticky
    assert sticky.persist_conns == 1
    # And the restored connection is found by a packet's lookup.
    assert after.table.lookup(6, CLIENT, 1000, VIP, 80) >= 0


def test_expired_and_unmatched_entries_are_dropped_on_load(
    fastpath: ModuleType, tmp_path: Path
) -> None:
    before = _ipvs(fastpath)
    _fill(before)
    written = _write(before, _cfg(tmp_path))
    assert written.path is not None
    snap = snapshot.read(written.path)
    # 200 s later: the SYN_RECV entry (timeout 60 s) is gone, the rest live on.
    after = _ipvs(fastpath)
    done = snapshot.restore(after.table, after, snap, 0, snap.created_ms + 200_000)
    assert (done.restored, done.expired) == (3, 1)
    assert after.table.lookup(6, CLIENT, 1001, VIP, 80) == -1
    # A configuration without RIP2: its entries have no destination.
    bare = IPVS(fastpath.ConnTable(64, max_dests=8, max_svcs=4))
    bare.add_service(IPPROTO_TCP, VIP, 80, "rr").add_dest(RIP1, 80)
    done = snapshot.restore(bare.table, bare, snap, 0, snap.created_ms)
    assert (done.restored, done.unmatched) == (1, 3)


def _corrupt(path: Path, at: int, value: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[at : at + len(value)] = value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("at", "value", "says"),
    [
        (-3, b"\xff", "checksum mismatch"),
        (0, b"NOTLVSD!", "not an lvsd snapshot"),
        (8, b"\x02\x00", "format version 2, this lvsd reads version 1"),
    ],
)
def test_a_damaged_foreign_or_newer_snapshot_is_refused_and_the_daemon_starts_empty(
    fastpath: ModuleType, tmp_path: Path, caplog: pytest.LogCaptureFixture, at: int, value: bytes,
    says: str,
) -> None:  # fmt: skip
    before = _ipvs(fastpath)
    _fill(before)
    cfg = _cfg(tmp_path)
    written = _write(before, cfg)
    assert written.path is not None
    _corrupt(written.path, at if at >= 0 else written.path.stat().st_size + at, value)
    with pytest.raises(snapshot.SnapshotError, match=says):
        snapshot.read(written.path)
    after = _ipvs(fastpath)
    with caplog.at_level(logging.ERROR):
        assert snapshot.restore_latest(after.table, after, cfg, 0) is None
    assert len(after.table) == 0
    assert says in caplog.text
    assert "starting with an empty connection table" in caplog.text


def test_a_truncated_snapshot_is_refused(fastpath: ModuleType, tmp_path: Path) -> None:
    before = _ipvs(fastpath)
    _fill(before)
    written = _write(before, _cfg(tmp_path))
    assert written.path is not None
    written.path.write_bytes(written.path.read_bytes()[:-10])
    with pytest.raises(snapshot.SnapshotError, match="the header says"):
        snapshot.read(written.path)


def test_another_daemons_snapshots_are_not_ours(fastpath: ModuleType, tmp_path: Path) -> None:
    before = _ipvs(fastpath)
    _fill(before)
    _write(before, _cfg(tmp_path))
    other = DirectorConfig(state_dir=tmp_path, control_socket=tmp_path / "other.sock")
    after = _ipvs(fastpath)
    assert snapshot.restore_latest(after.table, after, other, 0) is None
    assert snapshot.restore_latest(after.table, after, _cfg(tmp_path), 0) is not None


def _files(*spec: tuple[int, int]) -> list[SnapshotFile]:
    return [SnapshotFile(Path(f"s{ms}"), ms, size) for ms, size in spec]


def test_prune_keeps_count_and_age_then_makes_room_oldest_first() -> None:
    files = _files((9000, 100), (8000, 100), (7000, 100), (1000, 100))  # newest first
    big = {"budget": 10**9, "free": 10**9, "reserve": 0, "now_ms": 10_000}
    doomed, fits = plan_prune(files, keep=3, max_age_s=5, incoming=100, **big)
    # keep=3 with one incoming: two old ones stay; 1000 is past the age anyway.
    assert ([f.created_ms for f in doomed], fits) == ([7000, 1000], True)
    # A budget of 250 bytes: one old file and the new one.
    doomed, fits = plan_prune(
        files, keep=3, max_age_s=60, incoming=100, budget=250, free=10**9, reserve=0,
        now_ms=10_000,
    )  # fmt: skip
    assert ([f.created_ms for f in doomed], fits) == ([7000, 1000, 8000], True)
    # 50 bytes free, 20 reserved: the old files make room.
    doomed, fits = plan_prune(
        files, keep=9, max_age_s=60, incoming=100, budget=10**9, free=50, reserve=20,
        now_ms=10_000,
    )  # fmt: skip
    assert ([f.created_ms for f in doomed], fits) == ([1000], True)


def test_prune_deletes_no_more_than_count_and_age_when_the_new_one_cannot_fit() -> None:
    files = _files((9000, 100), (8000, 100))
    doomed, fits = plan_prune(
        files, keep=9, max_age_s=60, incoming=10_000, budget=10**9, free=500, reserve=0,
        now_ms=10_000,
    )  # fmt: skip
    assert (doomed, fits) == ([], False)


def test_the_writer_counts_prunes_and_failures_and_never_raises(
    fastpath: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ipvs = _ipvs(fastpath)
    _fill(ipvs)
    cfg = _cfg(tmp_path, snapshot_keep=2)
    clock = iter(range(NOW, NOW + 1000))
    writer = snapshot.SnapshotWriter(ipvs.table, lambda: ipvs, lambda: cfg, lambda: next(clock))
    stamps = iter(range(1_000_000_000, 1_000_010_000, 10))
    monkeypatch.setattr(time, "time_ns", lambda: next(stamps) * 1_000_000)

    async def three() -> list[bool]:
        return [await writer.write_once() for _ in range(3)]

    assert asyncio.run(three()) == [True, True, True]
    who = snapshot.ident(cfg.control_socket)
    assert len(snapshot.list_files(tmp_path, who)) == 2
    s = writer.statistics()
    assert (s.written, s.pruned_files, s.last_entries) == (3, 1, 4)
    assert s.pruned_bytes >= s.last_bytes  # whole blocks on disk
    # One snapshot bigger than the budget: skipped, counted, the old ones kept.
    tight = _cfg(tmp_path, snapshot_keep=2, snapshot_budget=4096)
    for _ in range(80):
        ipvs.table.insert(17, CLIENT, 3000 + _, VIP, 53, RIP1, 53, 0, NOW)
    writer._cfg = lambda: tight
    assert asyncio.run(writer.write_once()) is False
    assert writer.statistics().failures == {"over_budget": 1}
    assert len(snapshot.list_files(tmp_path, who)) == 1  # count pruning still applies
    # A reload that names another state_dir changes nothing until a restart (the daemon
    # reads it at start only): the files stay where they are.
    writer._cfg = lambda: _cfg(tmp_path / "elsewhere", snapshot_keep=2)
    ipvs.table.flush()
    assert asyncio.run(writer.write_once()) is True
    assert not (tmp_path / "elsewhere").exists()
    assert (stat.S_IMODE(snapshot.list_files(tmp_path, who)[0].path.stat().st_mode)) == 0o600
    # A state directory that cannot be made (a file is in the way): an error, counted.
    (tmp_path / "file").write_text("")
    writer.state_dir = tmp_path / "file" / "dir"
    assert asyncio.run(writer.write_once()) is False
    assert writer.statistics().failures["error"] == 1


def test_lvsd_snapshot_lists_shows_and_prunes(
    fastpath: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "lvs.cf"
    conf.write_text(
        f"serial_no = 1\nprimary = 10.0.1.1\nservice = lvs\nnetwork = nat\n"
        f'nat_router = 10.0.2.254 eth1\ncontrol_socket = "{tmp_path}/lvsd.sock"\n'
        f'state_dir = "{tmp_path}"\nsnapshot_keep = 1\n'
    )
    ipvs = _ipvs(fastpath)
    _fill(ipvs)
    cfg = _cfg(tmp_path)
    paths = []
    for now in (NOW, NOW + 1):
        cap = asyncio.run(snapshot.capture(ipvs.table, ipvs, now))
        cap = snapshot.Capture(cap.created_ms + now - NOW, cap.meta, cap.chunks, cap.count, 0)
        w = snapshot.write(tmp_path, snapshot.ident(cfg.control_socket), cap, cfg)
        paths.append(w.path)
    assert main(["snapshot", "-c", str(conf), "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 snapshots in")
    assert all(p and p.name in out for p in paths)
    assert main(["snapshot", "-c", str(conf), "show"]) == 0
    out = capsys.readouterr().out
    assert "4 entries" in out
    assert "192.0.2.10:443" in out
    assert "template" in out
    assert main(["snapshot", "-c", str(conf), "prune"]) == 0
    assert "pruned 1 snapshots" in capsys.readouterr().out
    assert [f.path for f in snapshot.list_files(tmp_path, snapshot.ident(cfg.control_socket))] == [
        paths[1]
    ]
