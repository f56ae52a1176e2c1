"""Does the operator's console cost forwarding anything? A data-plane run with and without
ten open console pages.

    sudo .venv/bin/python -m benchmarks.bench_console [--rounds N] [--seconds S] [--pages P]

One lab (``benchmarks.run``'s: one real with nginx and iperf3) and lvsd with the C fast
path (``benchmarks.peers.LvsdPeer``, its console on 127.0.0.1:9561 in the director's
namespace). Each round runs the data-plane tests twice, alternately: with no page open,
then with ``--pages`` pollers in the director's namespace, each doing what an open page
does (fetch the page and its two assets, then ``/console/state`` every two seconds). The
tests are ``benchmarks.run``'s ``conn_rate`` (wrk, a new connection per request) and
``latency`` (one keep-alive connection, p50/p99). The report gives each metric's median
without and with pages, their ratio, and the spread (max/min) of the rounds without
pages: the noise to compare the ratio with. Then, with no traffic, lvsd's CPU time per
second alone and with the pages polling: the console's own cost, free of the noise of
the load generators.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

from benchmarks.peers import LvsdPeer
from benchmarks.run import BenchError, Results, conn_rate, latency, prepare_lab
from lab.cluster import Lab, LabSpec

CONSOLE = "http://127.0.0.1:9561"
POLL_S = 2.0
STATE = "/console/state"
# A load generator that fails (iperf3 refused while its server ends the last test) is
# run again; every failure is reported.
TRIES = 3
MODES = ("no pages", "pages")
KEYS = (
    ("conn_per_s", "connection rate, conn/s"),
    ("lat_p50_us", "request/response p50, µs"),
    ("lat_p99_us", "request/response p99, µs"),
)


def poll(url: str, pages: int, seconds: float) -> dict[str, int]:
    """``pages`` threads polling as open console pages do, for ``seconds``; counts."""
    counts = {"requests": 0, "failed": 0, "state_bytes": 0}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def fetch(path: str) -> int:
        with urllib.request.urlopen(url + path, timeout=5) as res:
            return len(res.read())

    def page() -> None:
        for path in itertools.chain(("/", "/console.css", "/console.js"), itertools.repeat(STATE)):
            if time.monotonic() >= stop:
                return
            try:
                n = fetch(path)
            except OSError:
                with lock:
                    counts["failed"] += 1
                continue
            with lock:
                counts["requests"] += 1
                if path == STATE:
                    counts["state_bytes"] = n
            if path in (STATE, "/console.js"):
                time.sleep(POLL_S)

    threads = [threading.Thread(target=page) for _ in range(pages)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return counts


def _tests(
    lab: Lab, target: IPv4Address, seconds: float, peer: LvsdPeer
) -> dict[str, Callable[[], dict[str, float]]]:
    """The data-plane tests of one run, in ``benchmarks.run``'s order."""
    return {
        "conn_rate": lambda: conn_rate(lab, target, seconds),
        "latency": lambda: latency(lab, target, seconds),
    }


def _pollers(lab: Lab, pages: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "benchmarks.bench_console", "--poll", str(pages)]
    argv += ["--seconds", f"{seconds:g}"]
    with out.open("wb") as f:
        return lab.popen("director", argv, stdout=f, stderr=subprocess.STDOUT)


def run(rounds: int, seconds: float, pages: int, idle: float, log: bool = True) -> str:
    results = {mode: Results() for mode in MODES}
    idle_cpu: dict[str, float] = {}
    polled: list[dict[str, int]] = []
    cpu_with = cpu_without = 0.0
    errors: list[str] = []
    with Lab(LabSpec(), f"bcon{os.getpid() % 100000}") as lab:
        prepare_lab(lab)
        target = lab.spec.vip
        with tempfile.TemporaryDirectory(prefix="lvsbench-console-") as tmp:
            for r in range(rounds):
                for mode in MODES:
                    # A fresh daemon for each run, as benchmarks.run starts each peer anew.
                    peer = LvsdPeer()
                    peer.start(lab, Path(tempfile.mkdtemp(dir=tmp)))
                    proc = None
                    try:
                        if mode == "pages":
                            window = 3 * (seconds + 5)
                            proc = _pollers(lab, pages, window, Path(tmp) / f"poll{r}.json")
                            time.sleep(1.0)  # the pages have loaded
                        cpu0 = peer.cpu_seconds()
                        got: dict[str, float] = {}
                        tests = _tests(lab, target, seconds, peer)
                        for name, test in tests.items():
                            for attempt in range(TRIES):
                                try:
                                    got.update(test())
                                    break
                                except BenchError as e:
                                    errors.append(f"round {r + 1} {mode} {name} #{attempt}: {e}")
                                    time.sleep(2.0)
                        cpu = peer.cpu_seconds() - cpu0
                        if mode == "pages":
                            cpu_with += cpu
                        else:
                            cpu_without += cpu
                        results[mode].add("lvsd-c", got)
                        if log:
                            print(
                                f"round {r + 1} {mode}: "
                                + ", ".join(f"{k}={v:.3g}" for k, v in got.items()),
                                file=sys.stderr,
                            )
                    finally:
                        if proc is not None:
                            proc.kill()
                            proc.wait(timeout=30)
                        peer.stop(lab)
            # Without traffic: lvsd's CPU time over ``idle`` seconds alone, then while the
            # pages poll (a complete poller run, whose counts are reported).
            peer = LvsdPeer()
            peer.start(lab, Path(tempfile.mkdtemp(dir=tmp)))
            try:
                cpu0 = peer.cpu_seconds()
                time.sleep(idle)
                idle_cpu["no pages"] = (peer.cpu_seconds() - cpu0) / idle
                cpu0 = peer.cpu_seconds()
                polled.append(_count_polls(lab, pages, idle, Path(tmp)))
                idle_cpu["pages"] = (peer.cpu_seconds() - cpu0) / idle
            finally:
                peer.stop(lab)
    text = report(results, rounds, seconds, pages, polled, cpu_with, cpu_without)
    if idle_cpu:
        text += (
            f"\nWithout traffic, lvsd's CPU over {idle:g} s: "
            f"{idle_cpu['no pages'] * 1e3:.1f} ms/s alone, "
            f"{idle_cpu['pages'] * 1e3:.1f} ms/s with {pages} pages polling."
        )
    return text + "".join(f"\nFAILED {e}" for e in errors)


def _count_polls(lab: Lab, pages: int, seconds: float, tmp: Path) -> dict[str, int]:
    out = tmp / "count.json"
    proc = _pollers(lab, pages, seconds, out)
    proc.wait(timeout=seconds + 60)
    counts: dict[str, int] = json.loads(out.read_text())
    return counts


def report(
    results: dict[str, Results],
    rounds: int,
    seconds: float,
    pages: int,
    polled: list[dict[str, int]],
    cpu_with: float,
    cpu_without: float,
) -> str:
    lines = [
        f"{rounds} rounds of {seconds:g} s tests, lvsd C fast path, {pages} console pages "
        "polling every 2 s in the 'pages' rows",
        "",
        "| metric | no pages | pages | ratio | noise (max/min, no pages) |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in KEYS:
        base = results["no pages"].samples.get("lvsd-c", {}).get(key, [])
        with_pages = results["pages"].samples.get("lvsd-c", {}).get(key, [])
        if not base or not with_pages:
            continue
        a, b = statistics.median(base), statistics.median(with_pages)
        noise = max(base) / min(base) if min(base) > 0 else float("nan")
        lines.append(f"| {label} | {a:.4g} | {b:.4g} | {b / a:.3f} | {noise:.3f} |")
    if polled:
        p = polled[-1]
        lines += [
            "",
            f"The pages' requests in the idle run: {p['requests']}, {p['failed']} failed; "
            f"state document {p['state_bytes']} bytes. lvsd CPU over the tests: "
            f"{cpu_without:.2f} s without pages, {cpu_with:.2f} s with.",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of the idle cost")
    parser.add_argument("--poll", type=int, help=argparse.SUPPRESS)  # the pollers' child
    args = parser.parse_args()
    if args.poll is not None:
        print(json.dumps(poll(CONSOLE, args.poll, args.seconds)))
        return 0
    print(run(args.rounds, args.seconds, args.pages, args.idle))
    return 0


if __name__ == "__main__":
    sys.exit(main())
