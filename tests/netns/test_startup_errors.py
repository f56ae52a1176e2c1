"""Start-up refusals of ``lvsd run``: one line naming the setting, exit status 1, and
``lvsd check`` refusing the same configurations with the same line.

Each ``lvsd run`` runs in a network namespace of its own (``unshare -n``), so a refusal
that did not happen could touch nothing outside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from director.config import parse_config
from director.tools.demo import LabDirector
from lab.cluster import Lab
from tests.conftest import require_root
from tests.netns.test_nanny import config
from tests.unit.test_config import many_virtuals

pytestmark = pytest.mark.netns

# In the new namespace: lo up, and with BUSY set, 127.0.0.1:9561 held by a listener the
# daemon inherits, so that the port is busy when it starts.
LAUNCH = """
import os, socket, subprocess, sys
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
if os.environ.get("BUSY"):
    s = socket.socket()
    s.bind(("127.0.0.1", 9561))
    s.listen()
    s.set_inheritable(True)
os.execv(sys.executable, [sys.executable, "-m", "director", *sys.argv[1:]])
"""


def lvsd(*args: str, busy: bool = False) -> subprocess.CompletedProcess[str]:
    require_root()
    env = {"BUSY": "1"} if busy else {}
    return subprocess.run(
        ["unshare", "-n", sys.executable, "-c", LAUNCH, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def write(tmp_path: Path, text: str, socket_path: Path | None = None) -> Path:
    sock = socket_path or tmp_path / "lvsd.sock"
    cf = tmp_path / "lvs.cf"
    cf.write_text(f"control_socket = {sock}\n" + text)
    return cf


def assert_one_line(done: subprocess.CompletedProcess[str], expected: str) -> None:
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"lvsd: {expected}\n", done.stderr


def test_busy_metrics_port(tmp_path: Path) -> None:
    cf = write(tmp_path, config())
    done = lvsd("run", "-c", str(cf), busy=True)
    assert_one_line(done, "metrics_address 127.0.0.1:9561: cannot listen: Address already in use")
    assert not (tmp_path / "lvsd.sock").exists()


def test_socket_directory_that_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    sock = tmp_path / "file" / "sub" / "lvsd.sock"
    done = lvsd("run", "-c", str(write(tmp_path, config(), sock)))
    assert_one_line(done, f"control_socket {sock}: cannot listen: Not a directory")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "max_connections = 2147483647\n" + config(),
            "{cf}:2: max_connections: must be an integer from 1 to 16777216, got '2147483647'",
            id="max_connections",
        ),
        pytest.param(
            many_virtuals(410, "80", 10),
            "{cf}:{line}: server: the fast path holds at most 4096 destinations (one per "
            "server and port); virtual 'v409' brings the active ones to 4100",
            id="destinations",
        ),
        pytest.param(
            many_virtuals(513, "80,443", 1),
            "{cf}:{line}: port: the fast path holds at most 1024 services; this virtual "
            "brings the active ones to 1026",
            id="services",
        ),
        pytest.param(
            config(
                servers="    server a {\n        address = 192.168.1.10\n"
                "        port = 8080\n    }\n"
            ).replace("network = nat", "network = direct"),
            "{cf}:{line}: port: with network = direct the real server receives the virtual's "
            "port (80) unchanged; remove port, got '8080'",
            id="network",
        ),
    ],
)
def test_check_and_run_refuse_alike(tmp_path: Path, text: str, expected: str) -> None:
    cf = write(tmp_path, text)
    lines = cf.read_text().splitlines()
    line = next((i + 1 for i, t in enumerate(lines) if t.startswith("virtual v409 ")), 0)
    if "1026" in expected:  # named where the block's port line is
        v512 = lines.index("virtual v512 {")
        line = next(i + 1 for i, t in enumerate(lines) if i > v512 and "port =" in t)
    if "remove port" in expected:  # named at the server's port line
        line = next(i + 1 for i, t in enumerate(lines) if "port = 8080" in t)
    want = expected.format(cf=cf, line=line)
    assert_one_line(lvsd("check", "-c", str(cf)), want)
    assert_one_line(lvsd("run", "-c", str(cf)), want)


def test_a_live_daemons_socket_is_not_taken_over(lab: Lab) -> None:
    cfg = parse_config(config(), "lvs.cf")
    with LabDirector(lab, cfg) as director:
        cf = director.dir / "second.cf"
        cf.write_text(director.config_path.read_text())
        done = lvsd("run", "-c", str(cf))
        assert_one_line(
            done,
            f"control_socket {director.socket_path}: another lvsd is serving it; refusing to start",
        )
        assert len(director.status()["services"]) == 1
