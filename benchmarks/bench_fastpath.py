"""Packets/s of ConnTable.process() for the C and Python fast paths, and bytes per connection.

``python -m benchmarks.bench_fastpath [--packets N] [--conns N] [--new-conns N] [--rounds N]``
prints a table: each golden FORWARD vector of tests/vectors (the packet is restored before
every call, as a fresh read would be) through both implementations; then the resident memory
a table grows by per tracked connection (C with 1,000,000 entries, Python with a tenth of
that); then the cost of a new connection, from its SYN read off the device to the rewritten
SYN written back, through the director's own packet loop (``Director._on_readable``: the fast
path's drain, the service lookup, the scheduler, the insert and the rewrite) over a socketpair
standing in for the TUN. The memory comes before it: the director's table would otherwise
leave freed pages resident for the memory test to reuse.
``pytest benchmarks/bench_fastpath.py`` runs the same packets under pytest-benchmark.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import socket
import statistics
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.unit.fastpath_ref import standard_table, syn
from tests.unit.test_director_loop import VIP as LOOP_VIP
from tests.unit.test_director_loop import loop_director
from tests.vectors.nat_vectors import VECTORS, Vector

FORWARD = [v for v in VECTORS if v.verdict == "FORWARD"]
BENCH = {v.number: v for v in FORWARD if v.number in (1, 2, 5)}


def _impl(name: str) -> ModuleType:
    return importlib.import_module(
        "director.dataplane._fastpath" if name == "c" else "director.dataplane._fastpath_py"
    )


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


# SYNs queued per loop wake-up: one, as at a moderate rate, and a burst well inside a
# socket's send buffer.
NEW_CONN_BATCHES = (1, 32)


def new_connection_us(impl: str, n: int, batch: int) -> float:
    """Microseconds per new connection: n distinct SYNs through ``Director._on_readable``.

    The SYNs are queued on one end of a SOCK_SEQPACKET socketpair, `batch` at a time;
    the timed part is the loop's wake-up, which drains them, decides each and writes back its
    rewritten SYN. The replies are read (and the first checked) outside the timing. Timed in
    the thread's CPU time (user and system), which a shared machine's other work leaves out.
    """
    d = loop_director(_impl(impl).ConnTable(n))
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    pkts = [syn(0xC6336400 + (i >> 16), 1024 + (i & 0x7FFF), LOOP_VIP, 80) for i in range(n)]
    spent = 0.0
    try:
        d._fd = ours.fileno()
        for b in range(0, n, batch):
            queued = pkts[b : b + batch]
            for p in queued:
                peer.send(p)
            start = time.thread_time()
            d._on_readable(d._fd, 0)
            spent += time.thread_time() - start
            replies = [peer.recv(2048) for _ in queued]
            if replies[0][26:30] == queued[0][26:30]:
                raise RuntimeError("new connection: the SYN came back unrewritten")
    finally:
        ours.close()
        peer.close()
    if len(d.table) != n:
        raise RuntimeError(f"new connection: {len(d.table)} connections, expected {n}")
    return spent / n * 1e6


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
    parser.add_argument("--new-conns", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
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
    print()
    print(f"new connection, SYN to rewritten SYN: µs, median of {args.rounds} rounds")
    print(f"{'SYNs per wake-up':<18} {'c':>8} {'py':>8}")
    for batch in NEW_CONN_BATCHES:
        cells = [
            statistics.median(
                new_connection_us(impl, args.new_conns, batch) for _ in range(args.rounds)
            )
            for impl in ("c", "py")
        ]
        print(f"{batch:<18} {cells[0]:>8.2f} {cells[1]:>8.2f}")


if __name__ == "__main__":
    main()
