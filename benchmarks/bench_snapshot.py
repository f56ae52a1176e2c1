"""What a connection table snapshot costs, at 10k, 100k and 1M connections.

``python -m benchmarks.bench_snapshot [--conns N,N,...] [--impl c|py]`` fills a table with
established TCP connections (one service, ten reals), then measures, per size:

- ``loop``: the time the event loop spends copying the table out (``ConnTable.dump_from``
  in slices of 65,536 entries, the largest the writer takes) and ``slice``, the longest
  single copy;
- ``stall``: the worst lateness of a 1 ms ticker running beside a whole ``write_once``
  (copy on the loop, prune + write + fsync in a worker thread), as ``bench_stall``
  measures the other heavy operations;
- ``write``: the worker thread's time (checksum, write, fsync, rename) and the file size;
- ``restore``: reading, checking and restoring the file into an empty table, which a
  plain restart pays once before serving (and a takeover while no TUN is read).

The state directory is a temporary directory (on whatever file system holds /tmp).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import tempfile
import time
from pathlib import Path
from types import ModuleType

import uvloop

from benchmarks.bench_stall import stall
from director.config import DirectorConfig
from director.daemon import snapshot
from director.ipvs.service import IPVS

VIP, CLIENTS = 0x0A000105, 0xC6330000
ESTABLISHED = 1


def build(fp: ModuleType, conns: int) -> IPVS:
    ipvs = IPVS(fp.ConnTable(conns + 16, 64, 8))
    svc = ipvs.add_service(6, VIP, 80, "wlc")
    for j in range(10):
        svc.add_dest(0xC0A8010A + j, 80)
    slots = [d.slot for d in svc.dests]
    addrs = [d.addr for d in svc.dests]
    t = ipvs.table
    now = 1_000_000
    for i in range(conns):
        k = i % 10
        h = t.insert(
            6, CLIENTS + (i >> 15), 1024 + (i & 0x7FFF), VIP, 80, addrs[k], 80, slots[k], now
        )
        t.set_state(h, ESTABLISHED, now)
    return ipvs


async def measure(ipvs: IPVS, state: Path) -> dict[str, float]:
    cfg = DirectorConfig(state_dir=state, control_socket=state / "bench.sock", snapshot_keep=2)
    now = 1_000_500
    # The copy alone, in the largest slices.
    longest = total = 0.0
    start = 0
    while start >= 0:
        t0 = time.perf_counter()
        _, start = ipvs.table.dump_from(start, snapshot.SLICE_ENTRIES, now)
        took = time.perf_counter() - t0
        longest, total = max(longest, took), total + took
    # A whole write_once beside a 1 ms ticker.
    writer = snapshot.SnapshotWriter(ipvs.table, lambda: ipvs, lambda: cfg, lambda: now)
    written: list[bool] = []

    async def write() -> None:
        written.append(await writer.write_once())

    worst, whole = await stall(write)
    assert written == [True], writer.failures
    s = writer.statistics()
    # Restore into an empty table of the same shape.
    fresh = IPVS(type(ipvs.table)(len(ipvs.table) + 16, 64, 8))
    svc = fresh.add_service(6, VIP, 80, "wlc")
    for j in range(10):
        svc.add_dest(0xC0A8010A + j, 80)
    path = snapshot.list_files(state, snapshot.ident(cfg.control_socket))[0].path
    t0 = time.perf_counter()
    snap = snapshot.read(path)
    got = snapshot.restore(fresh.table, fresh, snap, now, snap.created_ms)
    restore = time.perf_counter() - t0
    assert got.restored == len(ipvs.table), got
    return {
        "loop_ms": total * 1000,
        "slice_ms": longest * 1000,
        "stall_ms": worst * 1000,
        "write_ms": s.last_write_s * 1000,
        "whole_s": whole,
        "bytes": float(s.last_bytes),
        "restore_s": restore,
    }


async def main(sizes: list[int], impl: str) -> None:
    fp = importlib.import_module(
        "director.dataplane._fastpath" if impl == "c" else "director.dataplane._fastpath_py"
    )
    load = os.getloadavg()[0]
    print(f"{impl} fast path; state directory in {tempfile.gettempdir()}; load {load:.1f}")
    print(
        f"{'connections':>12} {'loop ms':>8} {'slice ms':>9} {'stall ms':>9} "
        f"{'write ms':>9} {'MiB':>7} {'restore s':>10}"
    )
    for n in sizes:
        ipvs = build(fp, n)
        gc.freeze()
        with tempfile.TemporaryDirectory() as tmp:
            r = await measure(ipvs, Path(tmp))
        print(
            f"{n:>12,} {r['loop_ms']:>8.1f} {r['slice_ms']:>9.1f} {r['stall_ms']:>9.1f} "
            f"{r['write_ms']:>9.1f} {r['bytes'] / (1 << 20):>7.1f} {r['restore_s']:>10.2f}"
        )
        del ipvs
        gc.unfreeze()
        gc.collect()


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_snapshot", description=__doc__)
    p.add_argument("--conns", default="10000,100000,1000000")
    p.add_argument("--impl", choices=("c", "py"), default="c")
    args = p.parse_args()
    uvloop.run(main([int(x) for x in args.conns.split(",")], args.impl))
