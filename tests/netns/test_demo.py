"""``lvsd demo`` as a user runs it: the thesis's cluster built, serving, reported, removed.

    client 10.0.1.100 --br-pub-- director (lvsd run, VIP 10.0.1.5) --br-priv-- real1..real3

The command builds its own lab (named here so runs never collide), starts the director
on examples/thesis-lvs.cf, sends the requests, prints ipvsadm's listing and who
answered, and takes the lab down. Both fast paths: the daemon inherits
DIRECTOR_NO_EXTENSIONS from the command's environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab.cluster import Lab, LabSpec, lab_namespaces
from tests.conftest import require_root
from tests.netns.conftest import unique_lab_name

pytestmark = pytest.mark.netns

LVSD = str(Path(sys.executable).parent / "lvsd")
REQUESTS = 60


@pytest.mark.parametrize("implementation", ["c", "py"])
def test_demo_serves_reports_and_removes_its_lab(implementation: str) -> None:
    require_root()
    name = unique_lab_name()
    env = {k: v for k, v in os.environ.items() if k != "DIRECTOR_NO_EXTENSIONS"}
    if implementation == "py":
        env["DIRECTOR_NO_EXTENSIONS"] = "1"
    try:
        done = subprocess.run(
            [LVSD, "demo", "--name", name, "--requests", str(REQUESTS)],
            capture_output=True, text=True, timeout=240, check=False, env=env,
        )  # fmt: skip
    finally:
        Lab(LabSpec(), name).down()
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"lvsd demo: building lab {name!r} (client, director, 3 real servers)" in out
    assert ("TCP  10.0.1.5:80 wlc\n  -> 192.168.1.10:80              Masq    2000   ") in out
    assert f"fast path: {implementation};" in out
    assert f"requests: {REQUESTS} answered, 0 failed" in out
    answered = {m[0]: int(m[1]) for m in re.findall(r"^  (real\d): (\d+)$", out, re.M)}
    assert set(answered) == {"real1", "real2", "real3"}
    assert sum(answered.values()) == REQUESTS
    # The --stats listing counted one connection per request on TCP VIP:80.
    (conns,) = re.findall(r"^TCP  10\.0\.1\.5:80 +(\d+) ", out, re.M)
    assert int(conns) == REQUESTS
    assert f"lvsd demo: lab {name!r} removed" in out
    assert lab_namespaces(name) == []
