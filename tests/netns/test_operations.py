"""Operating a running director in the lab: lvsadm, reload under load, metrics, sd_notify.

    client 10.0.1.100 --br-pub-- eth0 10.0.1.1 [director: lvsd run, control socket,
                                  (VIP 10.0.1.5)  metrics on 127.0.0.1:9561] eth1
                                                                |
                                    br-priv -- real1 .10, real2 .11, real3 .12

The director starts on the thesis's lvs.cf without real3. lvsadm (run from the
host: the control socket is a file) changes the table and its listings are checked
against ipvsadm's layout; -S, -C, -R gives back the same listing. A reload under
continuous load adds real3, removes real2 and changes real1's weight with no failed
request; a broken file changes nothing. Metrics are scraped inside the director's
namespace and parsed with prometheus_client.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from director import control
from director.config import parse_config
from director.demo import THESIS_CF, LabDirector
from director.lab import Lab, LabSpec
from tests.conftest import require_root
from tests.netns.conftest import unique_lab_name

pytestmark = pytest.mark.netns

VIP = "10.0.1.5"
NOTIFY_TIMEOUT_S = 30.0


def thesis() -> str:
    # One director, no heartbeat: this module is about operating a single daemon.
    return "heartbeat = 0\n" + THESIS_CF.read_text()


def without_real3(text: str) -> str:
    start = text.index("    server real3")
    end = text.index("}", start) + 2
    return text[:start] + text[end:]


class Ops:
    def __init__(self, lab: Lab, director: LabDirector) -> None:
        self.lab = lab
        self.director = director

    def lvsadm(
        self, *args: str, stdin: str = "", ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "director.lvsadm",
                "--socket",
                str(self.director.socket_path),
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    def reload(self) -> list[bytes]:
        """SIGHUP the daemon; the sd_notify messages up to READY=1."""
        path = self.director.dir / "notify"
        path.unlink(missing_ok=True)
        messages: list[bytes] = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(path))
            sock.settimeout(NOTIFY_TIMEOUT_S)
            assert self.director.proc is not None
            self.director.proc.send_signal(signal.SIGHUP)
            while not messages or b"READY=1" not in messages[-1].split(b"\n"):
                messages.append(sock.recv(4096))
        return messages


@pytest.fixture(scope="module")
def ops() -> Iterator[Ops]:
    require_root()
    lab = Lab(LabSpec(), unique_lab_name())
    try:
        lab.up(reals=3)
        cfg = parse_config(without_real3(thesis()), "thesis-lvs.cf")
        director = LabDirector(lab, cfg).start()
        try:
            yield Ops(lab, director)
        finally:
            assert director.stop() == 0, director.log()
    finally:
        lab.down()


def test_lvsadm_changes_and_lists_the_running_table(ops: Ops) -> None:
    ops.lvsadm("-A", "-t", f"{VIP}:8080", "-s", "rr")
    ops.lvsadm("-a", "-t", f"{VIP}:8080", "-r", "192.168.1.10:80", "-m", "-w", "3")
    ops.lvsadm("-a", "-t", f"{VIP}:8080", "-r", "192.168.1.12:80", "-m")
    ops.lvsadm("-e", "-t", f"{VIP}:8080", "-r", "192.168.1.12:80", "-m", "-w", "5")
    refused = ops.lvsadm("-a", "-t", f"{VIP}:8080", "-r", "192.168.1.12:80", ok=False)
    assert (refused.returncode, refused.stderr) == (255, "Destination already exists\n")
    got = ops.lab.run("client", ["curl", "-sS", "--max-time", "10", f"http://{VIP}:8080/"])
    assert got.returncode == 0
    listing = ops.lvsadm("-L", "-n").stdout
    assert listing.startswith(
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  10.0.1.5:21 wlc\n"
    )
    assert (
        "TCP  10.0.1.5:80 wlc\n"
        "  -> 192.168.1.10:80              Masq    2000   0          0         \n"
        "  -> 192.168.1.11:80              Masq    1000   0          0         \n"
    ) in listing
    assert "TCP  10.0.1.5:8080 rr\n  -> 192.168.1.10:80              Masq    3      " in listing
    stats = ops.lvsadm("-L", "-n", "--stats").stdout.splitlines()
    line = next(s for s in stats if s.startswith("TCP  10.0.1.5:8080"))
    assert line == f"{'TCP  10.0.1.5:8080':<33}" + line[33:]
    assert int(line[33:42]) == 1
    assert ops.lvsadm("-L", "-n", "--rate").stdout.splitlines()[1].split()[-5:] == [
        "CPS",
        "InPPS",
        "OutPPS",
        "InBPS",
        "OutBPS",
    ]
    conns = ops.lvsadm("-L", "-n", "-c").stdout.splitlines()
    assert conns[0] == "IPVS connection entries"
    assert any(f"{VIP}:8080" in c and "10.0.1.100:" in c for c in conns[2:])
    ops.lvsadm("-d", "-t", f"{VIP}:8080", "-r", "192.168.1.10:80")
    ops.lvsadm("-D", "-t", f"{VIP}:8080")
    assert "8080" not in ops.lvsadm("-L", "-n").stdout


def test_save_clear_restore_gives_the_same_listing(ops: Ops) -> None:
    before = ops.lvsadm("-L", "-n").stdout
    rules = ops.lvsadm("-S", "-n").stdout
    ops.lvsadm("-C")
    assert ops.lvsadm("-L", "-n").stdout.count("\n") == 3
    ops.lvsadm("-R", stdin=rules)
    assert ops.lvsadm("-L", "-n").stdout.replace(" 1      ", " 0      ") == before.replace(
        " 1      ", " 0      "
    )


def test_reload_under_load_fails_no_request(ops: Ops) -> None:
    load = ops.lab.popen(
        "client",
        [
            sys.executable,
            "-m",
            "director.loadgen",
            f"http://{VIP}/",
            "--count",
            "1500",
            "--concurrency",
            "4",
            "--deadline",
            "120",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # Reload once the load is flowing: the service has counted connections.
        for _ in range(10_000):
            status = ops.director.status()
            http = next(s for s in status["services"] if s["addr"] == f"{VIP}:80")
            if http["conns"] >= 50 or load.poll() is not None:
                break
        text = thesis()
        start = text.index("    server real2")
        text = text[:start] + text[text.index("}", start) + 2 :]
        text = text.replace("weight = 2000", "weight = 500")
        ops.director.config_path.write_text(text)
        messages = ops.reload()
        out, _ = load.communicate(timeout=180)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    assert messages[0] == b"RELOADING=1"
    assert messages[-1].split(b"\n")[0] == b"READY=1"
    result = json.loads(out)
    assert result["failed"] == 0, result
    assert "real3" in result["by_real"]
    listing = ops.lvsadm("-L", "-n").stdout
    assert "192.168.1.11:80" not in listing
    assert "  -> 192.168.1.10:80              Masq    500    " in listing
    assert "  -> 192.168.1.12:80              Masq    1000   " in listing


def test_broken_reload_changes_nothing(ops: Ops) -> None:
    before = ops.lvsadm("-S", "-n").stdout
    ops.director.config_path.write_text("virtual broken {\n  address = nonsense\n")
    ops.reload()
    assert ops.lvsadm("-S", "-n").stdout == before
    assert "reload refused" in ops.director.log()


def test_metrics_scraped_in_the_director_namespace(ops: Ops) -> None:
    code = (
        "import urllib.request\n"
        "print(urllib.request.urlopen('http://127.0.0.1:9561/metrics', timeout=10).read().decode())"
    )
    text = ops.lab.run("director", [sys.executable, "-c", code]).stdout
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    weights = {
        (s.labels["local_address"], s.labels["local_port"], s.labels["remote_address"]): s.value
        for s in fams["node_ipvs_backend_weight"].samples
    }
    assert weights[(VIP, "80", "192.168.1.10")] == 500.0
    assert set(fams["node_ipvs_backend_weight"].samples[0].labels) == {
        "local_address",
        "local_port",
        "remote_address",
        "remote_port",
        "proto",
        "local_mark",
    }
    assert fams["node_ipvs_connections"].samples[0].value > 0
    assert fams["lvsd_fastpath_info"].samples[0].labels["implementation"] in ("c", "py")


def test_lvsd_save_writes_the_running_state(ops: Ops, tmp_path: Path) -> None:
    out = tmp_path / "saved.cf"
    ops.director.config_path.write_text(thesis())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "director",
            "save",
            "-c",
            str(ops.director.config_path),
            "--socket",
            str(ops.director.socket_path),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr
    saved = parse_config(out.read_text(), str(out))
    (v,) = [v for v in saved.virtuals if v.active]
    assert {(s.name, s.weight) for s in v.servers} == {("real1", 500), ("real3", 1000)}
    assert control.request(ops.director.socket_path, "timeouts") == [900, 120, 300]
