"""``python -m fuzz.run [--seconds S] [--asan DIR] [NAME ...]``: every fuzz target (or those
named) for S seconds each, one process per target; exit status 1 if any crashed.

Each target is fuzzed with coverage guidance (atheris's libFuzzer, the C extension as
installed), its corpus growing in build/fuzz-corpus/NAME. With ``--asan DIR`` (an
AddressSanitizer + UBSan build of the C extension, ``make fuzz``) the whole corpus is then
replayed against that build, the sanitizers' runtimes preloaded: ASan's runtime and
libFuzzer's coverage cannot share one process, so guidance and sanitizers take turns. A
crashing input is written to fuzz/crashes/NAME-crash-*; replay it with
``python -m fuzz.targets NAME FILE``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from fuzz.targets import TARGETS

CRASHES = Path(__file__).resolve().parent / "crashes"


def _sanitizer_runtimes() -> str:
    libs = []
    for name in ("libasan.so", "libubsan.so"):
        path = subprocess.run(
            ["gcc", f"-print-file-name={name}"], capture_output=True, text=True, check=True
        ).stdout.strip()
        libs.append(path)
    return " ".join(libs)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__)
    p.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    p.add_argument("--asan", help="directory of the AddressSanitizer build")
    p.add_argument("names", nargs="*", choices=[*TARGETS, []], default=[])
    args = p.parse_args()
    CRASHES.mkdir(exist_ok=True)
    plain = dict(os.environ)
    env = dict(os.environ)
    if args.asan:
        env["LVSD_FUZZ_ASAN_LIB"] = str(Path(args.asan).resolve())
        env["LD_PRELOAD"] = _sanitizer_runtimes()
        # CPython's own allocations look like leaks at exit; overflows are what we want.
        env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"
        env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
    failed = []
    for name in args.names or TARGETS:
        print(f"fuzz: {name} for {args.seconds}s", flush=True)
        common = [sys.executable, "-m", "fuzz.targets", name, f"-artifact_prefix={CRASHES}/{name}-"]
        done = subprocess.run(
            [*common, f"-max_total_time={args.seconds}", "-rss_limit_mb=4096"],
            env=plain,
            check=False,
            timeout=args.seconds + 300,
        )
        if done.returncode == 0 and args.asan:
            print(f"fuzz: {name}: the corpus under AddressSanitizer", flush=True)
            done = subprocess.run(
                [*common, "-runs=0"], env=env, check=False, timeout=args.seconds + 600
            )
        if done.returncode != 0:
            failed.append(name)
    print("fuzz: " + (f"crashed: {', '.join(failed)}" if failed else "all clean"), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
