"""The thesis's load monitor in the lab: ``load_monitor = uptime`` over ``rsh_command = ssh``.

    client 10.0.1.100 --br-pub-- [director: lvsd + nanny] --br-priv-- real1 .10  (sshd)
                                  VIP 10.0.1.5     ssh REAL uptime     real2 .11  (sshd)

Every real runs Debian's sshd (key-based, the lab's keys) and reports its own load
average (lab.loadmeter: the kernel's averaging over the real's own tasks). nanny reads
it every 20 s with ``ssh REAL uptime`` and moves the weight by Piranha's formula: up
while the load is under 1, down (never below the configured weight) above it. Loading
real1 with CPU work (three busy loops, bounded by ``timeout``) lowers its weight in
``lvsadm -L -n`` while real2's keeps growing; ending the work brings real1's back up.
Waits are bounded polls of the listing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from director.config import parse_config
from director.tools.demo import LabDirector
from tests.netns.conftest import LabFactory

pytestmark = [pytest.mark.netns, pytest.mark.slow]

VIP = "10.0.1.5"
REALS = {"real1": "192.168.1.10", "real2": "192.168.1.11"}
WEIGHT = 4
BURNERS = 3
BURN_LIMIT_S = 300
POLL_S = 0.5
# A reading every 20 s, and a 1-minute average that needs ~25-50 s to cross 1.
STEP_WITHIN_S = 200.0

CONFIG = f"""\
primary = 10.0.1.1
rsh_command = ssh
network = nat
nat_router = 192.168.1.254 eth1:1
virtual web {{
    address = {VIP}
    port = 80
    scheduler = wlc
    load_monitor = uptime
    timeout = 4
    probe_interval = 1
    http_path = /stats
    server real1 {{
        address = {REALS["real1"]}
        weight = {WEIGHT}
    }}
    server real2 {{
        address = {REALS["real2"]}
        weight = {WEIGHT}
    }}
}}
"""


def weights(director: LabDirector) -> dict[str, int]:
    """Real name -> weight, read from ``lvsadm -L -n`` as an operator would."""
    out = subprocess.run(
        [sys.executable, "-m", "director.ops.lvsadm", "--socket", str(director.socket_path),
         "-L", "-n"],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    names = {f"{addr}:80": name for name, addr in REALS.items()}
    got = {}
    for line in out.splitlines():
        fields = line.split()
        if line.startswith("  -> ") and fields[1] in names:
            got[names[fields[1]]] = int(fields[3])
    return got


def wait_for(
    director: LabDirector, what: str, cond: Callable[[dict[str, int]], bool]
) -> dict[str, int]:
    deadline = time.monotonic() + STEP_WITHIN_S
    seen = weights(director)
    while not cond(seen):
        if time.monotonic() > deadline:
            pytest.fail(
                f"{what}: not within {STEP_WITHIN_S:.0f} s: {seen}\n{director.log()[-3000:]}"
            )
        time.sleep(POLL_S)
        seen = weights(director)
    return seen


@pytest.fixture
def director(lab_factory: LabFactory) -> Iterator[LabDirector]:
    lab = lab_factory(reals=len(REALS), sshd=True)
    with LabDirector(lab, parse_config(CONFIG), ssh=True) as d:
        yield d


def test_cpu_work_on_a_real_lowers_its_weight_and_its_end_restores_it(
    director: LabDirector,
) -> None:
    lab = director.lab
    # Idle reals: load under 1, so nanny raises both weights above the configured one.
    idle = wait_for(director, "idle weights rise", lambda w: min(w.values()) > WEIGHT)
    burners = [
        lab.popen(
            "real1",
            ["timeout", str(BURN_LIMIT_S), "nice", "-n", "19", "sh", "-c", "while :; do :; done"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(BURNERS)
    ]
    try:
        peak: dict[str, int] = dict(idle)

        def real1_down(w: dict[str, int]) -> bool:
            peak["real1"] = max(peak["real1"], w["real1"])
            return w["real1"] < peak["real1"]

        loaded = wait_for(director, "real1's weight falls under CPU work", real1_down)
        assert loaded["real2"] >= idle["real2"], loaded  # the idle real is not touched
        assert loaded["real1"] >= WEIGHT  # never below the configured weight
        assert "no load average" not in director.log()
    finally:
        for proc in burners:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    low = loaded["real1"]
    wait_for(director, "real1's weight rises again", lambda w: w["real1"] > low)
