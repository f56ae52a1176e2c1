"""The announcer against a real BIRD, in a network namespace of its own (``unshare -n``).

What BIRD holds is read with ``birdc``: the static protocol ``vips`` starts disabled
(nothing announced), ``announce`` enables it (the VIP's route is in BIRD's table, for the
BGP session to export), ``withdraw`` disables it; ``close`` ends BIRD and removes its
files; and BIRD dies with a director killed by SIGKILL (its parent-death signal).
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from director.daemon.announce import BgpSpec, bird_config
from tests.conftest import require_root

pytestmark = pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD (bird2) not installed")

SCRIPT = r"""
import asyncio, json, os, signal, subprocess, sys
from ipaddress import IPv4Address as A
from pathlib import Path
from director.daemon.announce import Announcer, BgpSpec

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
spec = BgpSpec(A("127.0.0.1"), 65001, A("127.0.0.2"), 65000, 3, (A("10.0.2.5"), A("10.0.2.6")))

def birdc(sock, *cmd):
    return subprocess.run(["birdc", "-s", str(sock), *cmd], capture_output=True, text=True).stdout

async def main():
    out = {}
    a = Announcer(spec, run_dir=Path(sys.argv[2]))
    await a.start()
    sock, d = a.socket_path, a.socket_path.parent
    out["start"] = birdc(sock, "show", "route", "protocol", "vips")
    await a.announce()
    out["announced"] = birdc(sock, "show", "route", "protocol", "vips")
    out["export"] = birdc(sock, "show", "route", "export", "uplink")
    await a.withdraw()
    out["withdrawn"] = birdc(sock, "show", "route", "protocol", "vips")
    pid = a.pid
    await a.close()
    out["gone"] = not os.path.exists(f"/proc/{pid}") and not d.exists()
    print(json.dumps(out))

if sys.argv[1] == "orphan":
    async def orphan():
        a = Announcer(spec, run_dir=Path(sys.argv[2]))
        await a.start()
        print(a.pid, flush=True)
        await asyncio.sleep(60)
    asyncio.run(orphan())
else:
    asyncio.run(main())
"""


def test_the_generated_configuration_parses() -> None:
    from ipaddress import IPv4Address as A  # noqa: PLC0415

    spec = BgpSpec(A("10.0.1.1"), 65001, A("10.0.1.254"), 65000, 3, (A("10.0.2.5"),))
    conf = bird_config(spec)
    assert "route 10.0.2.5/32 blackhole;" in conf
    assert "graceful restart off;" in conf
    done = subprocess.run(
        ["bird", "-p", "-c", "/dev/stdin"], input=conf, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_announce_withdraw_close_on_a_real_bird(tmp_path: Path) -> None:
    require_root()
    import json  # noqa: PLC0415

    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", SCRIPT, "main", str(tmp_path / "bird")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert "10.0.2.5/32" not in out["start"]
    assert "10.0.2.5/32" in out["announced"]
    assert "10.0.2.6/32" in out["announced"]
    assert "10.0.2.5/32" not in out["withdrawn"]
    assert out["gone"]


def test_bird_dies_with_a_killed_director(tmp_path: Path) -> None:
    require_root()
    with subprocess.Popen(
        ["unshare", "-n", sys.executable, "-c", SCRIPT, "orphan", str(tmp_path / "bird")],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        bird_pid = int(proc.stdout.readline())
        pidfd = os.pidfd_open(bird_pid)
        try:
            with open(f"/proc/{bird_pid}/comm") as f:
                assert f.read().strip() == "bird"
            proc.kill()  # unshare execs python: this is the director, killed
            proc.wait()
            # A pidfd turns readable when its process has exited.
            readable, _, _ = select.select([pidfd], [], [], 10.0)
            assert readable, f"bird {bird_pid} outlived its director"
        finally:
            os.close(pidfd)
