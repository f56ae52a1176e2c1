"""Descriptor exhaustion: idle clients of the listeners never cost a healthy real its place.

    client 10.0.1.100 --br-pub-- [director: lvsd, ulimit -n 1024] --br-priv-- real1..3
                                  ^ 1,100 idle metrics clients (127.0.0.1:9561)
                                  ^ 200 idle control clients (the Unix socket)

The daemon runs with a hard descriptor limit of 1,024 (what ``ulimit -n 1024`` gives it),
probing every second with a two-second timeout. For 20 s a holder keeps 1,100 metrics
and 200 control connections open, opening a new one whenever the daemon hangs one up.
Meanwhile 50 requests through the VIP must all succeed, and afterwards every real must
still be in service, never having been taken out.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import pytest

from director.config import parse_config
from director.tools.demo import LabDirector, run_load
from lab.cluster import Lab
from tests.netns.test_nanny import config, dests

pytestmark = pytest.mark.netns

VIP = "10.0.1.5"
HOLD_S = 20
METRICS_CLIENTS, CONTROL_CLIENTS = 1100, 200

HOLDER = """
import asyncio, json, resource, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
n_metrics, n_control = int(sys.argv[1]), int(sys.argv[2])
sock, seconds = sys.argv[3], float(sys.argv[4])
counts = {"opened": 0, "hung_up": 0, "refused": 0}

async def hold(open_one, deadline):
    while (left := deadline - time.monotonic()) > 0:
        try:
            reader, writer = await open_one()
        except OSError:
            counts["refused"] += 1
            await asyncio.sleep(0.05)
            continue
        counts["opened"] += 1
        try:
            await asyncio.wait_for(reader.read(), left)
            counts["hung_up"] += 1
        except (OSError, asyncio.TimeoutError):
            pass
        writer.close()

async def main():
    deadline = time.monotonic() + seconds
    metrics = lambda: asyncio.open_connection("127.0.0.1", 9561)
    control = lambda: asyncio.open_unix_connection(sock)
    tasks = [asyncio.create_task(hold(metrics, deadline)) for _ in range(n_metrics)]
    tasks += [asyncio.create_task(hold(control, deadline)) for _ in range(n_control)]
    while counts["opened"] + counts["refused"] < n_metrics + n_control:
        await asyncio.sleep(0.01)
    print("holding", flush=True)
    await asyncio.gather(*tasks)
    print(json.dumps(counts), flush=True)

asyncio.run(main())
"""


def test_idle_listener_clients_under_ulimit_1024_take_no_real_out(lab: Lab) -> None:
    cfg = parse_config(config(), "lvs.cf")
    with LabDirector(lab, cfg, nofile=1024) as director:
        pid = director.proc.pid if director.proc else 0
        assert resource.prlimit(pid, resource.RLIMIT_NOFILE) == (1024, 1024)
        holder = lab.popen(
            "director",
            [
                sys.executable,
                "-c",
                HOLDER,
                str(METRICS_CLIENTS),
                str(CONTROL_CLIENTS),
                str(director.socket_path),
                str(HOLD_S),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "holding\n", holder.stderr
            # 50 requests spread over the hold: ten rounds of five, 1.5 s apart.
            ok = failed = 0
            for _ in range(10):
                result = run_load(lab, f"http://{VIP}/", 5)
                ok, failed = ok + result["ok"], failed + result["failed"]
                time.sleep(1.5)
            out, err = holder.communicate(timeout=HOLD_S + 60)
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
        counts = json.loads(out.splitlines()[-1])
        assert counts["opened"] >= METRICS_CLIENTS + CONTROL_CLIENTS, (counts, err)
        assert (ok, failed) == (50, 0)
        assert dests(director) == {"real1": 64, "real2": 64, "real3": 64}
        health = director.status()["health"]
        assert [h["health"] for h in health] == ["up"] * 3, health
        log = director.log()
        assert " down, " not in log, log[-3000:]
