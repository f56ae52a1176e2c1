"""What lvsd costs a small box: resident memory idle, and CPU per admin command.

``python -m benchmarks.bench_footprint [--repeat N] [--idle S]`` (root: it builds a lab)
reports, as medians of N rounds:

- ``lvsd run`` on the thesis's lvs.cf, idle in the lab after ``S`` seconds: the daemon's
  resident set (VmRSS) and each helper process's (the dead-man reaper);
- ``lvsadm -L -n`` against it, and ``lvsd check`` of the thesis's file: CPU seconds
  (user + system) of the command's whole process, from ``wait4``.

Goals (the product's, for a Pentium-class box): daemon ≤ 40 MiB, each helper ≤ 15 MiB,
``lvsadm -L -n`` ≤ 0.15 s of CPU, ``lvsd check`` ≤ 0.3 s. The report says which hold.
A figure, never an assertion: tests do not time anything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from director.config import load_config
from director.tools.demo import THESIS_CF, LabDirector
from lab.cluster import Lab, LabSpec

MIB = 1024 * 1024
GOALS = {
    "daemon RSS (MiB)": 40.0,
    "helper RSS (MiB)": 15.0,
    "lvsadm -L -n CPU (s)": 0.15,
    "lvsd check CPU (s)": 0.3,
}


@dataclass(frozen=True, slots=True)
class Round:
    daemon_rss_mib: float
    helper_rss_mib: float
    lvsadm_cpu_s: float
    check_cpu_s: float


def rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` in MiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MIB
    raise RuntimeError(f"pid {pid}: no VmRSS")


def live_rss_mib(pid: int) -> float | None:
    """``rss_mib(pid)``, or None for a child that exited meanwhile: a probe's short-lived
    command (nanny's ``ssh ... uptime``) may be a zombie, which has no VmRSS, or gone."""
    try:
        return rss_mib(pid)
    except (RuntimeError, FileNotFoundError, ProcessLookupError):
        return None


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (every thread's list)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def cpu_seconds(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Run ``argv`` to completion; its user + system CPU seconds (children included)."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env or os.environ.copy()
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}")
    return usage.ru_utime + usage.ru_stime


def one_round(idle_s: float, lab_name: str) -> Round:
    lab = Lab(LabSpec(), lab_name)
    lab.up(reals=3)
    try:
        with LabDirector(lab, load_config(THESIS_CF)) as director:
            assert director.proc is not None
            time.sleep(idle_s)  # idle on purpose: the figure is the resting footprint
            daemon = rss_mib(director.proc.pid)
            helpers = [r for c in children(director.proc.pid) if (r := live_rss_mib(c)) is not None]
            lvsadm = cpu_seconds(
                lab.exec_argv(
                    "director",
                    [sys.executable, "-m", "director.ops.lvsadm", "--socket",
                     str(director.socket_path), "-L", "-n"],
                )
            )  # fmt: skip
    finally:
        lab.down()
    check = cpu_seconds([sys.executable, "-m", "director", "check", "-c", str(THESIS_CF)])
    return Round(daemon, max(helpers, default=0.0), lvsadm, check)


def report(rounds: list[Round]) -> str:
    figures = {
        "daemon RSS (MiB)": statistics.median(r.daemon_rss_mib for r in rounds),
        "helper RSS (MiB)": statistics.median(r.helper_rss_mib for r in rounds),
        "lvsadm -L -n CPU (s)": statistics.median(r.lvsadm_cpu_s for r in rounds),
        "lvsd check CPU (s)": statistics.median(r.check_cpu_s for r in rounds),
    }
    lines = [
        f"footprint, median of {len(rounds)} rounds",
        "",
        "| figure | median | goal | holds |",
        "|---|---|---|---|",
    ]
    for name, value in figures.items():
        goal = GOALS[name]
        lines.append(f"| {name} | {value:.3f} | ≤ {goal:g} | {'yes' if value <= goal else 'NO'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_footprint")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--idle", type=float, default=5.0, help="idle seconds before reading")
    parser.add_argument("--lab", default=f"fp{os.getpid() % 100000}", help="the lab's name")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_footprint: needs root (it builds a lab)", file=sys.stderr)
        return 2
    rounds = []
    for i in range(args.repeat):
        rounds.append(one_round(args.idle, args.lab))
        print(f"round {i + 1}: {rounds[-1]}", file=sys.stderr)
    print(report(rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
