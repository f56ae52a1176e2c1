"""Each lab real's own load average, as the kernel computes it, for the real's ``uptime``.

The lab's reals are network namespaces on one kernel, and /proc/loadavg is that kernel's
(every real would report the whole machine's load, other labs' and other users' work
included). A real host's load average counts its own runnable tasks; so this meter does
the kernel's calc_global_load over the tasks whose network namespace is the real's:
every 5 s it counts those in state R or D, and folds the count into the 1, 5 and 15
minute averages with the kernel's factors (exp(-5/60), exp(-5/300), exp(-5/900)). It
writes them in /proc/loadavg's format to ``<run_dir>/<real>/loadavg``, which the lab
bind-mounts over /proc/loadavg in the mount namespace of that real's sshd, so
``ssh REAL uptime`` reports the real's own load.

Run by the lab inside its ``sw`` node (so ``lab down`` ends it with the lab):
``python -m lab.loadmeter RUN_DIR NS_PATH:REAL ...``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

LOAD_FREQ_S = 5.0
EXP = (math.exp(-5 / 60), math.exp(-5 / 300), math.exp(-5 / 900))


def fold(loads: tuple[float, float, float], active: int) -> tuple[float, float, float]:
    """One 5-second step of the kernel's calc_load for each of the three averages."""
    a, b, c = (old * e + active * (1 - e) for old, e in zip(loads, EXP, strict=True))
    return (a, b, c)


def loadavg_text(loads: tuple[float, float, float], running: int, total: int) -> str:
    """/proc/loadavg's line: three averages, running/total tasks, the last pid (0 here)."""
    return f"{loads[0]:.2f} {loads[1]:.2f} {loads[2]:.2f} {running}/{total} 0\n"


def count_tasks(ns_inode: tuple[int, int]) -> tuple[int, int]:
    """(tasks in state R or D, all tasks) of the processes in the network namespace."""
    active = total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry.name}/ns/net")
            if (st.st_dev, st.st_ino) != ns_inode:
                continue
            for task in os.scandir(f"/proc/{entry.name}/task"):
                stat = Path(task.path, "stat").read_text()
                state = stat.rsplit(")", 1)[1].split()[0]
                total += 1
                active += state in ("R", "D")
        except (FileNotFoundError, ProcessLookupError, IndexError, PermissionError):
            continue
    return active, total


def _write(path: Path, text: str) -> None:
    # In place (a bind mount pins the inode): one write of a few bytes from offset 0,
    # then the length; a reader sees a whole first line either way.
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def run(run_dir: Path, reals: Sequence[tuple[str, str]], rounds: int | None = None) -> None:
    """Meter ``reals`` ((namespace path, real name)) every LOAD_FREQ_S seconds."""
    inodes = {}
    loads: dict[str, tuple[float, float, float]] = {}
    for ns_path, real in reals:
        st = os.stat(ns_path)
        inodes[real] = (st.st_dev, st.st_ino)
        loads[real] = (0.0, 0.0, 0.0)
        _write(run_dir / real / "loadavg", loadavg_text(loads[real], 0, 0))
    n = 0
    next_at = time.monotonic()
    while rounds is None or n < rounds:
        next_at += LOAD_FREQ_S
        time.sleep(max(0.0, next_at - time.monotonic()))
        for real, inode in inodes.items():
            active, total = count_tasks(inode)
            loads[real] = fold(loads[real], active)
            _write(run_dir / real / "loadavg", loadavg_text(loads[real], active, total))
        n += 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.loadmeter")
    p.add_argument("run_dir", type=Path)
    p.add_argument("reals", nargs="+", help="NS_PATH:REAL, one per real")
    args = p.parse_args(argv)
    reals = [tuple(r.rsplit(":", 1)) for r in args.reals]
    run(args.run_dir, [(ns, real) for ns, real in reals])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
