"""Cost of one scheduling decision for every scheduler, with 3, 100 and 1,000 destinations.

Run ``python -m benchmarks.bench_schedulers`` for a table (median of repeats, microseconds
per decision). Destinations have weights 1..10 and random counters; flows cycle through
4,096 pre-built source/destination addresses, so hash schedulers see varied keys.
"""

from __future__ import annotations

import argparse
import random
import statistics
import timeit
from collections.abc import Callable
from dataclasses import dataclass

from scheduling import SCHEDULERS, get_scheduler
from scheduling.base import FlowKey

SIZES = (3, 100, 1000)


@dataclass(eq=False, slots=True)
class BenchDest:
    """A plain destination, like the director's: fields read directly."""

    addr: int
    port: int
    weight: int
    last_weight: int
    active_conns: int
    inactive_conns: int
    available: bool = True
    overloaded: bool = False


def make_decision(name: str, size: int) -> Callable[[], object]:
    """A zero-argument callable making one decision on a bound scheduler."""
    rnd = random.Random(size)
    dests = []
    for i in range(size):
        w = rnd.randint(1, 10)
        dests.append(BenchDest(0x0A000000 + i, 80, w, w, rnd.randint(0, 50), rnd.randint(0, 500)))
    sched = get_scheduler(name, rand=random.Random(1).randrange)
    sched.update(dests, "init")
    flows = [
        FlowKey(6, rnd.getrandbits(32), rnd.getrandbits(16), rnd.getrandbits(12), 80, 1000 * i)
        for i in range(4096)
    ]
    it = iter(range(1 << 62))
    schedule = sched.schedule

    def decide() -> object:
        return schedule(flows[next(it) & 4095])

    for _ in range(4096):  # warm caches (lblc tables) before timing
        decide()
    return decide


def measure(name: str, size: int, number: int, repeat: int) -> float:
    """Median microseconds per decision."""
    decide = make_decision(name, size)
    runs = timeit.repeat(decide, number=number, repeat=repeat)
    return statistics.median(runs) / number * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=2000, help="decisions per repeat")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"{'scheduler':<10}" + "".join(f"{f'{n} dests':>14}" for n in SIZES))
    for name in sorted(SCHEDULERS):
        cells = [measure(name, n, args.number, args.repeat) for n in SIZES]
        print(f"{name:<10}" + "".join(f"{c:>11.2f} us" for c in cells))


def test_schedulers_smoke(benchmark: Callable[[Callable[[], object]], object]) -> None:
    """pytest-benchmark entry (``pytest benchmarks/bench_schedulers.py``): wlc at 100."""
    benchmark(make_decision("wlc", 100))


if __name__ == "__main__":
    main()
