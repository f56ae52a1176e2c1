"""The kernel offload keeps lvsd's counters, states and timers: identical runs, both modes.

    client 10.0.1.100 --br-pub-- eth0 [director: lvsd, tun lvs0, tc program] eth1 -- real1..3

The same traffic runs twice through the same lab, once on the TUN path (offload = 0) and
once with the kernel offload, each time under a fresh director: 20 HTTP connections one
after the other, then one UDP flow of 40 datagrams spread over three times its 2-second
udp_timeout (kept alive only if the kernel's last-seen times reach lvsd's timers:
otherwise it expires and a second connection is made). ``lvsadm -ln
--stats`` and the Prometheus counters of the UDP service must be identical across the
modes, the TCP services' connection counts too, and ``lvsadm -lnc`` must list the same
states. TCP packet counts are left out: how the kernels segment and acknowledge differs
from run to run in either mode. The offloaded run must really have gone through the
kernel (its map installed connections and the UDP datagrams after the first never reached
lvsd).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from director.dataplane.offload import OFFLOAD, TUN
from director.tools.demo import LabDirector
from lab.cluster import Lab, LabSpec
from tests.conftest import require_root
from tests.netns.conftest import DataPath, unique_lab_name
from tests.netns.test_dataplane import UDP_ECHO, UDP_PORT, VIP, lab_config

pytestmark = pytest.mark.netns

DATAGRAMS = 40
REQUESTS = 20
UDP_TIMEOUT_S = 2
# 40 datagrams 0.15 s apart: 6 s, three udp_timeouts; each answered before the next.
UDP_FLOW = f"""
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.0.1.100", 40000))
s.settimeout(10)
s.connect(("{VIP}", {UDP_PORT}))
for i in range({DATAGRAMS}):
    s.send(b"%03d" % i + bytes(97))
    assert s.recv(2000)[:3] == b"%03d" % i
    time.sleep(0.15)
print("done")
"""
METRICS = (
    "import urllib.request\n"
    "print(urllib.request.urlopen('http://127.0.0.1:9561/metrics', timeout=10).read().decode())"
)


def lvsadm(director: LabDirector, *args: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "director.ops.lvsadm",
            "--socket",
            str(director.socket_path),
            *list(args),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def udp_metrics(lab: Lab) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = lab.run("director", [sys.executable, "-c", METRICS]).stdout
    out = {}
    for fam in text_string_to_metric_families(text):
        if not fam.name.startswith(("lvsd_service_", "lvsd_backend_")):
            continue
        for s in fam.samples:
            if s.labels.get("local_port") == str(UDP_PORT) and "rate" not in s.name:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def run_mode(lab: Lab, mode: str) -> dict[str, Any]:
    """One director in ``mode``, the traffic, and what the operator then reads."""
    path = DataPath("c", mode)
    cfg = replace(path.configure(lab_config()), udp_timeout=UDP_TIMEOUT_S)
    with LabDirector(lab, cfg, env=path.env) as director:
        path.check(director.status())
        for _ in range(REQUESTS):
            lab.run(
                "client", ["curl", "-sS", "-o", "/dev/null", "--max-time", "10", f"http://{VIP}/"]
            )
        assert lab.run("client", [sys.executable, "-c", UDP_FLOW], timeout=60).stdout == "done\n"
        # The kernel's last counts reach the table on the next expiry tick (1 s).
        deadline = time.monotonic() + 20
        while (status := director.status()) and time.monotonic() < deadline:
            udp = next(s for s in status["services"] if s["addr"] == f"{VIP}:{UDP_PORT}")
            if udp["outpkts"] >= DATAGRAMS:
                break
            time.sleep(0.1)
        stats = lvsadm(director, "-L", "-n", "--stats")
        states = sorted(
            line.split()[0] + " " + line.split()[2]
            for line in lvsadm(director, "-L", "-n", "-c").splitlines()[2:]
        )
        return {
            "status": status,
            "stats": stats,
            "states": states,
            "metrics": udp_metrics(lab),
            "decided": status["decided"],
        }


def _service(stats: str, addr: str) -> list[str]:
    """The lines of ``lvsadm -ln --stats`` from the service ``addr`` to the next service."""
    lines = stats.splitlines()
    start = next(
        i for i, line in enumerate(lines) if addr in line and line.startswith(("TCP", "UDP"))
    )
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith(("TCP", "UDP"))),
        len(lines),
    )
    return lines[start:end]


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, dict[str, Any]]]:
    require_root()
    lab = Lab(LabSpec(), unique_lab_name())
    echoes: list[subprocess.Popen[bytes]] = []
    try:
        lab.up(reals=3)
        echoes += [lab.popen(real, [sys.executable, "-c", UDP_ECHO]) for real in lab.reals]
        yield {mode: run_mode(lab, mode) for mode in (TUN, OFFLOAD)}
    finally:
        for proc in echoes:
            proc.kill()
            proc.wait()
        lab.down()


def test_stats_metrics_and_states_are_the_same_in_both_modes(
    runs: dict[str, dict[str, Any]],
) -> None:
    tun, off = runs[TUN], runs[OFFLOAD]
    udp = f"{VIP}:{UDP_PORT}"
    # One connection, 40 datagrams each way of 128 IP bytes, in both modes.
    assert _service(off["stats"], udp) == _service(tun["stats"], udp), (tun["stats"], off["stats"])
    first = _service(tun["stats"], udp)[0].split()
    assert first[2:] == ["1", str(DATAGRAMS), str(DATAGRAMS), "5120", "5120"], first
    assert off["metrics"] == tun["metrics"]
    assert off["metrics"]
    # Every HTTP connection counted once, by the same reals.
    http_conns = {
        mode: [line.split()[:3] for line in _service(r["stats"], f"{VIP}:80")]
        for mode, r in runs.items()
    }
    assert http_conns[OFFLOAD] == http_conns[TUN]
    assert off["states"] == tun["states"]
    assert off["states"].count("UDP UDP") == 1


def test_the_offloaded_run_went_through_the_kernel(runs: dict[str, dict[str, Any]]) -> None:
    off = runs[OFFLOAD]["status"]["offload"]
    assert off["mode"] == OFFLOAD
    # Every HTTP connection and the UDP flow were installed once (the flow never expired
    # under way); the HTTP ones left the map at their FIN.
    assert off["installed"] == 1 + REQUESTS, json.dumps(off)
    assert off["removed"] == REQUESTS, json.dumps(off)
    assert runs[TUN]["status"]["offload"]["installed"] == 0
