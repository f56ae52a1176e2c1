"""Packets/s of ConnTable.process() for the C and Python fast paths, and bytes per connection.

``python -m benchmarks.bench_fastpath [--packets N] [--conns N]`` prints a table: each golden
FORWARD vector of tests/vectors (the packet is restored before every call, as a fresh read
would be) through both implementations, then the resident memory a table grows by per
tracked connection (C with 1,000,000 entries, Python with a tenth of that).
``pytest benchmarks/bench_fastpath.py`` runs the same packets under pytest-benchmark.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.unit.fastpath_ref import standard_table
from tests.vectors.nat_vectors import VECTORS, Vector

FORWARD = [v for v in VECTORS if v.verdict == "FORWARD"]
BENCH = {v.number: v for v in FORWARD if v.number in (1, 2, 5)}


def _impl(name: str) -> ModuleType:
    return importlib.import_module("director._fastpath" if name == "c" else "director._fastpath_py")


def _loop(fp: ModuleType, v: Vector, n: int) -> float:
    """Seconds for n process() calls of vector v on a table holding its connection."""
    t = standard_table(fp, max_conns=1024)
    fn = t.process_vnet if v.vnet else t.process
    orig = v.before
    buf = bytearray(orig)
    now = 0
    start = time.perf_counter()
    for _ in range(n):
        buf[:] = orig
        fn(buf, now)
    return time.perf_counter() - start


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def bytes_per_conn(fp: ModuleType, count: int) -> float:
    """Resident memory grown by creating a table and inserting `count` TCP connections."""
    gc.collect()
    base = rss_bytes()
    t: Any = fp.ConnTable(count)
    t.set_dest(0, 0, 0xC0A8010A, 80, 0, 0)
    for i in range(count):
        t.insert(6, 0x0A000000 + (i >> 16), i & 0xFFFF, 0x0A000105, 80, 0xC0A8010A, 80, 0, i)
    assert len(t) == count
    return (rss_bytes() - base) / count


@pytest.mark.parametrize("impl", ["c", "py"])
@pytest.mark.parametrize("number", sorted(BENCH))
def test_process(benchmark: Any, impl: str, number: int) -> None:
    v = BENCH[number]
    fp = _impl(impl)
    t = standard_table(fp, max_conns=1024)
    buf = bytearray(v.before)

    def one() -> int:
        buf[:] = v.before
        r: int = t.process(buf, 0)
        return r

    assert benchmark(one) == fp.FORWARD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--conns", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"{'vector':<72} {'c pkt/s':>12} {'py pkt/s':>10} {'c/py':>6}")
    for v in FORWARD:
        c = args.packets / _loop(_impl("c"), v, args.packets)
        py = (args.packets // 10) / _loop(_impl("py"), v, args.packets // 10)
        print(f"{v.number:>2} {v.description[:69]:<69} {c:>12,.0f} {py:>10,.0f} {c / py:>6.1f}")
    print()
    c_mem = bytes_per_conn(_impl("c"), args.conns)
    print(f"c : {args.conns:,} connections, {c_mem:.1f} bytes each (RSS growth)")
    py_mem = bytes_per_conn(_impl("py"), args.conns // 10)
    print(f"py: {args.conns // 10:,} connections, {py_mem:.1f} bytes each (RSS growth)")


if __name__ == "__main__":
    main()
