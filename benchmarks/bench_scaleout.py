"""Aggregate connection rate through 1, 2 and 3 active directors behind the ECMP router.

Run ``sudo .venv/bin/python -m benchmarks.bench_scaleout [--seconds S] [--repeat N]``: it
builds the scale-out lab (``lab.router``: client, BIRD router with ECMP, three directors,
three nginx reals in direct routing), then for N = 1, 2, 3 starts lvsd on director1..N
(``active_active = 1``, ``rr``), waits until the router's FIB has N next hops, and runs
``wrk`` from the client (new connection per request: ``Connection: close``) for S seconds,
on a fresh lab each time. It reports, per N, the median connections/s over the rounds and
the share each director scheduled (its own counters). Measured, not asserted.
``--no-sync`` runs the same with ``syncdaemon = 0``: the difference is what the group's
connection sync costs.

Every process shares this machine's cores: the client, the router's forwarding, the
directors and the reals. The figures say how the group adds up here, not what separate
machines would do (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from director.config import parse_config
from director.tools.demo import LabDirector
from lab import router
from lab.cluster import Lab, LabSpec, lab_namespaces

WAIT_S = 30.0


def _wait(what: str, cond: object) -> None:
    assert callable(cond)
    deadline = time.monotonic() + WAIT_S
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench_scaleout: timed out waiting for {what}")
        time.sleep(0.05)


def _wrk(lab: Lab, spec: router.RouterSpec, seconds: float) -> tuple[float, int]:
    """(requests/s, errors) of one wrk run with a new connection per request."""
    out = lab.run(
        "client",
        [
            "wrk", "-t2", "-c32", f"-d{seconds:g}s", "-H", "Connection: close",
            f"http://{spec.vip}/",
        ],
        timeout=seconds + 30,
    ).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failed = int(non2xx.group(1)) if non2xx else 0
    if errors:
        failed += sum(int(n) for n in re.findall(r"\d+", errors.group(1)))
    return rate, failed


def _cpu_s(d: LabDirector) -> float:
    """CPU seconds (user + system) the director's lvsd process has used."""
    assert d.proc is not None
    fields = Path(f"/proc/{d.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _conns(d: LabDirector) -> int:
    return sum(int(x["conns"]) for s in d.status()["services"] for x in s["dests"])


def run(seconds: float, repeat: int, name: str, sync: bool = True) -> str:
    spec = router.RouterSpec(directors=3, reals=3)
    lab = Lab(LabSpec(mode="direct"), name)
    tmp = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    if lab_namespaces(name):
        raise RuntimeError(f"bench_scaleout: lab {name} exists; run: lvsd lab down --name {name}")
    key = tmp / "group.key"
    key.write_bytes(b"bench-scale-out-key-0123456789abcdef")
    extra = "" if sync else "syncdaemon = 0\n"
    cfg = parse_config(router.director_config(spec, key_file=key, extra=extra), "bench lvs.cf")
    rates: dict[int, list[float]] = {1: [], 2: [], 3: []}
    shares: dict[int, list[int]] = {n: [0] * n for n in rates}
    failed = dict.fromkeys(rates, 0)
    busy: dict[int, list[float]] = {n: [] for n in rates}
    for _ in range(repeat):
        for n in rates:
            # A fresh lab for every run: a run leaves the reals' TIME_WAIT sockets and the
            # tables' entries for the client's recycled ports (a SYN that meets one is not
            # scheduled, nor counted); each figure is then a first run.
            router.up(lab, spec, nginx=True)
            directors: list[LabDirector] = []
            try:
                for node in spec.director_names()[:n]:
                    directors.append(LabDirector(lab, cfg, node=node).start())
                want = {str(spec.director_address(i)) for i in range(1, n + 1)}
                _wait(f"{n} next hops", lambda w=want: router.ecmp_next_hops(lab, spec) == w)
                cpu = [_cpu_s(d) for d in directors]
                rate, errs = _wrk(lab, spec, seconds)
                # The busiest director's share of one core during the run.
                busy[n].append(
                    max(_cpu_s(d) - c for d, c in zip(directors, cpu, strict=True)) / seconds
                )
                rates[n].append(rate)
                failed[n] += errs
                for i, d in enumerate(directors):
                    shares[n][i] += _conns(d)
                print(f"bench_scaleout: {n} directors: {rate:.0f} conn/s", file=sys.stderr)
            finally:
                for d in directors:
                    d.stop()
                lab.down()
    rows = []
    for n, got in rates.items():
        total = sum(shares[n]) or 1
        split = " / ".join(f"{100 * s / total:.0f}%" for s in shares[n])
        load = f"{100 * statistics.median(busy[n]):.0f}%"
        rows.append((n, statistics.median(got), min(got), max(got), failed[n], split, load))
    lines = [
        f"Connection rate through N active directors (wrk -t2 -c32, Connection: close, "
        f"{seconds:g} s x {repeat}; median [min-max]; connection sync "
        f"{'on' if sync else 'off'})",
        "",
        "| directors | conn/s | min | max | errors | scheduled by each director "
        "| busiest lvsd's CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {m:.0f} | {lo:.0f} | {hi:.0f} | {f} | {s} | {c} |"
        for n, m, lo, hi, f, s, c in rows
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_scaleout", description=__doc__)
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per wrk run (default 5)")
    p.add_argument("--repeat", type=int, default=3, help="wrk runs per N (default 3)")
    p.add_argument("--lab", default="benchso", help="lab name (default benchso)")
    p.add_argument(
        "--no-sync", action="store_true", help="syncdaemon = 0: what the sync costs, by difference"
    )
    args = p.parse_args(argv)
    sys.stdout.write(run(args.seconds, args.repeat, args.lab, sync=not args.no_sync))
    return 0


if __name__ == "__main__":
    sys.exit(main())
