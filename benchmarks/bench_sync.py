"""Cost of one connection sync tick on the active director, at 10k, 100k and 1M connections.

Run ``python -m benchmarks.bench_sync`` for a table (seconds per tick, median of repeats):
the steady tick (the changes of one 0.1 s interval plus the refresh slice) and a dump tick
(one slice of a full dump), each with its encoding into messages, with the C table and
``failover.sync.Streamer`` as ``director.daemon.pulse`` drives them (sending not included).
Connections are ESTABLISHED TCP, filled as
``t.insert(6, 0x0A000000 + (i >> 16), i & 0xFFFF, 0x0A000105, 80, 0xC0A8010A, 80, 0, i)``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from director.daemon.pulse import SYNC_INTERVAL_S, SYNC_LOG_CAPACITY
from director.dataplane import fastpath
from failover import sync

SIZES = (10_000, 100_000, 1_000_000)
INTERVAL_MS = int(SYNC_INTERVAL_S * 1000)


def fill(n: int) -> fastpath.ConnTable:
    t = fastpath.ConnTable(n + 1024)
    t.set_dest(0, 0, 0xC0A8010A, 80, 0, 0)
    for i in range(n):
        h = t.insert(6, 0x0A000000 + (i >> 16), i & 0xFFFF, 0x0A000105, 80, 0xC0A8010A, 80, 0, i)
        t.set_state(h, fastpath.ESTABLISHED, i)
    return t


def measure(n: int, churn: int, repeat: int) -> tuple[float, float]:
    """(steady tick s, dump tick s): medians over ``repeat`` ticks; ``churn`` changes a tick."""
    t = fill(n)
    t.enable_sync_log(SYNC_LOG_CAPACITY)
    s = sync.Streamer()
    now = n
    s.tick(t, now)
    steady = []
    for k in range(repeat):
        for j in range(churn):
            i = k * churn + j
            # Every call changes the state: FIN_WAIT on the first pass, back on the next.
            t.set_state(i % n, fastpath.ESTABLISHED if i // n % 2 else fastpath.FIN_WAIT, now)
        now += INTERVAL_MS
        t0 = time.perf_counter()
        sync.encode(s.tick(t, now).entries)
        steady.append(time.perf_counter() - t0)
    dump = []
    for _ in range(repeat):
        if not s.dumping:
            s.start_dump()
        now += INTERVAL_MS
        t0 = time.perf_counter()
        sync.encode(s.tick(t, now).entries)
        dump.append(time.perf_counter() - t0)
    return statistics.median(steady), statistics.median(dump)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--churn", type=int, default=100, help="state changes per tick")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    print(f"fast path {fastpath.IMPLEMENTATION}, {args.churn} changes per tick")
    print("| connections | steady tick, s | dump tick, s |")
    print("|---:|---:|---:|")
    for n in map(int, args.sizes.split(",")):
        steady, dump = measure(n, args.churn, args.repeat)
        print(f"| {n:,} | {steady:.4f} | {dump:.4f} |", flush=True)


if __name__ == "__main__":
    main()
