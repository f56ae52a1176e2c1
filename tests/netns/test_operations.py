"""Operating a running director in the lab: lvsadm, reload under load, metrics, sd_notify.

    client 10.0.1.100 --br-pub-- eth0 10.0.1.1 [director: lvsd run, control socket,
                                  (VIP 10.0.1.5)  metrics on 127.0.0.1:9561] eth1
                                                                |
                                    br-priv -- real1 .10, real2 .11, real3 .12

The director starts on the thesis's lvs.cf without real3 (the reals serve HTTP and
FTP, the thesis's ports 80 and 21). lvsadm (run from the host: the control socket is a
file) changes the table and its listings are checked against ipvsadm's layout; -S,
-C, -R gives back the same listing. A reload under continuous load adds real3, removes
real2 and changes real1's weight with no failed request; reloads change which reals
nanny probes; lvsadm shows nanny's weight ramp; a broken file changes nothing. Metrics
are scraped inside the director's namespace and parsed with prometheus_client. A
second lab checks the sd_notify messages of a whole run: READY=1, RELOADING=1 then
READY=1, STOPPING=1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from director.config import parse_config
from director.ops import client
from director.tools.demo import THESIS_CF, LabDirector
from lab.cluster import Lab, LabSpec
from tests.conftest import require_root
from tests.netns.conftest import CROSSED, DataPath, data_paths, unique_lab_name
from tests.netns.test_nanny import logged_weights, start_http, stop_http

pytestmark = pytest.mark.netns

VIP = "10.0.1.5"
NOTIFY_TIMEOUT_S = 30.0
POLL_S = 0.1


def thesis() -> str:
    # One director, no heartbeat: this module is about operating a single daemon.
    return "heartbeat = 0\n" + THESIS_CF.read_text()


def without_real3(text: str) -> str:
    start = text.index("    server real3")
    end = text.index("}", start) + 2
    return text[:start] + text[end:]


def settled() -> str:
    """What the reload under load leaves running: real2 gone, real1 at weight 500."""
    text = thesis()
    start = text.index("    server real2")
    text = text[:start] + text[text.index("}", start) + 2 :]
    return text.replace("weight = 2000", "weight = 500")


def notices(director: LabDirector, sig: signal.Signals, last: bytes) -> list[bytes]:
    """Send ``sig`` to the daemon; its sd_notify datagrams up to one holding ``last``."""
    path = director.dir / "notify"
    path.unlink(missing_ok=True)
    messages: list[bytes] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(NOTIFY_TIMEOUT_S)
        assert director.proc is not None
        director.proc.send_signal(sig)
        while not messages or last not in messages[-1].split(b"\n"):
            messages.append(sock.recv(4096))
    return messages


def wait_for(what: str, cond: Callable[[], bool], within: float) -> None:
    """A bounded poll of the daemon (status, listings) until ``cond()`` holds."""
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within}s: {what}")
        time.sleep(POLL_S)


class Ops:
    def __init__(self, lab: Lab, director: LabDirector, implementation: str) -> None:
        self.lab = lab
        self.director = director
        self.implementation = implementation
        # The daemon's data-path line, kept by every configuration a test reloads.
        self.prefix = ""
        self.servers: list[subprocess.Popen[bytes]] = []

    def lvsadm(
        self, *args: str, stdin: str = "", ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "director.ops.lvsadm",
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
        return notices(self.director, signal.SIGHUP, b"READY=1")

    def reload_with(self, text: str) -> None:
        self.director.config_path.write_text(self.prefix + text)
        messages = self.reload()
        assert messages[0] == b"RELOADING=1", self.director.log()[-2000:]

    def probed(self) -> dict[str, str]:
        """nanny's targets, "vport real:port" -> health, from the status snapshot."""
        out = {}
        for h in self.director.status()["health"]:
            service, _, real = str(h["target"]).partition(" -> ")
            out[f"{service.rsplit(':', 1)[1]} {real}"] = str(h["health"])
        return out

    def listed_weight(self, real: str) -> int | None:
        """The weight ``lvsadm -Ln`` shows for ``real`` in TCP VIP:80 (None: not listed)."""
        lines = self.lvsadm("-L", "-n").stdout.splitlines()
        start = lines.index(f"TCP  {VIP}:80 wlc")
        for line in lines[start + 1 :]:
            if not line.startswith("  ->"):
                break
            if line.split()[1] == real:
                return int(line.split()[3])
        return None


def serving(lab: Lab, real: str) -> bool:
    """True if ``real``'s HTTP server answers the director on port 80."""
    conn = lab.http("director", f"192.168.1.{9 + int(real.removeprefix('real'))}")
    try:
        conn.request("GET", "/stats")
        return conn.getresponse().status == 200
    except ConnectionRefusedError:
        return False
    finally:
        conn.close()


@pytest.fixture(scope="module", params=data_paths(CROSSED))
def running(request: pytest.FixtureRequest) -> Iterator[Ops]:
    require_root()
    lab = Lab(LabSpec(), unique_lab_name())
    try:
        lab.up(reals=3, ftp=True)
        cfg = parse_config(without_real3(thesis()), "thesis-lvs.cf")
        path: DataPath = request.param
        director = LabDirector(lab, path.configure(cfg), env=path.env).start()
        path.check(director.status())
        ops = Ops(lab, director, path.implementation)
        ops.prefix = path.text("")
        try:
            yield ops
        finally:
            for server in ops.servers:
                server.kill()
                server.wait()
            assert director.stop() == 0, director.log()
    finally:
        lab.down()


@pytest.fixture
def ops(running: Ops) -> Ops:
    """The module's director, put back on its starting configuration before each test.

    No test depends on what an earlier one left: the thesis's lvs.cf without real3, real1
    at 2000 and real2 at 1000 on TCP VIP:80, every real's HTTP server answering.
    """
    assert running.director.status()["fastpath"] == running.implementation
    running.reload_with(without_real3(thesis()))
    for real in running.lab.reals:
        if not serving(running.lab, real):
            running.servers.append(start_http(running.lab, real))
    wait_for(
        "the starting table",
        lambda: (
            (
                running.listed_weight("192.168.1.10:80"),
                running.listed_weight("192.168.1.11:80"),
                running.listed_weight("192.168.1.12:80"),
            )
            == (2000, 1000, None)
        ),
        within=30,
    )
    return running


def test_lvsadm_changes_and_lists_the_running_table(ops: Ops) -> None:
    ops.lvsadm("-A", "-t", f"{VIP}:8080", "-s", "rr")
    ops.lvsadm("-a", "-t", f"{VIP}:8080", "-r", "192.168.1.10:80", "-m", "-w", "3")
    ops.lvsadm("-a", "-t", f"{VIP}:8080", "-r", "192.168.1.12:80", "-m")
    ops.lvsadm("-e", "-t", f"{VIP}:8080", "-r", "192.168.1.12:80", "-m", "-w", "5")
    # -m: without a method -a means -g, whose real takes the virtual's port (8080), a new one.
    refused = ops.lvsadm("-a", "-t", f"{VIP}:8080", "-r", "192.168.1.12:80", "-m", ok=False)
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
    """Load flows before the SIGHUP and still flows after READY=1, with no failed request;
    a keep-alive connection to the real the reload removes is answered across it."""
    load = ops.lab.popen(
        "client",
        [
            sys.executable,
            "-m",
            "lab.loadgen",
            f"http://{VIP}/",
            "--count",
            "3000",
            "--concurrency",
            "4",
            "--deadline",
            "240",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    kept = ops.lab.http("client", VIP)
    try:

        def http_conns() -> int:
            status = ops.director.status()
            return int(next(s for s in status["services"] if s["addr"] == f"{VIP}:80")["conns"])

        # A connection to real2, which the reload removes: wlc gives it a third of them.
        for _ in range(60):
            kept.close()
            kept.request("GET", "/")
            answer = kept.getresponse()
            answer.read()
            if answer.getheader("X-Real") == "real2":
                break
        else:
            pytest.fail("no connection reached real2 in 60 tries")
        # Reload once the load is flowing: the service has counted connections.
        wait_for("load flowing", lambda: http_conns() >= 50 or load.poll() is not None, 60)
        assert load.poll() is None, "the load ended before the reload"
        ops.director.config_path.write_text(settled())
        messages = ops.reload()
        # The load outlived the reload: requests were in flight across it.
        assert load.poll() is None, "the load ended before the reload was done"
        at_ready = http_conns()
        kept.request("GET", "/")
        answer = kept.getresponse()
        answer.read()
        assert (answer.status, answer.getheader("X-Real")) == (200, "real2")
        kept.close()
        out, _ = load.communicate(timeout=300)
    finally:
        kept.close()
        if load.poll() is None:
            load.kill()
            load.wait()
    assert messages[0] == b"RELOADING=1"
    assert messages[-1].split(b"\n")[0] == b"READY=1"
    result = json.loads(out)
    assert result["failed"] == 0, result
    assert http_conns() > at_ready  # connections scheduled after the reload
    # real2 served before the reload only, real3 (added by it) after it only.
    assert {"real2", "real3"} <= set(result["by_real"]), result
    # The removed real is drained: deleted at the director's next expiry tick once it
    # has no active connection left (docs/operations.md).
    wait_for(
        "the removed real drained and deleted",
        lambda: "192.168.1.11:80" not in ops.lvsadm("-L", "-n").stdout,
        within=10,
    )
    listing = ops.lvsadm("-L", "-n").stdout
    assert "192.168.1.11:80" not in listing
    assert "  -> 192.168.1.10:80              Masq    500    " in listing
    assert "  -> 192.168.1.12:80              Masq    1000   " in listing


def test_reloads_change_which_reals_nanny_probes(ops: Ops) -> None:
    real2, real3 = "192.168.1.11", "192.168.1.12"
    ops.reload_with(without_real3(thesis()).replace("weight = 2000", "weight = 500"))
    assert not any(real3 in target for target in ops.probed())
    wait_for(
        "real2 probed and up on 80 and 21",
        lambda: all(ops.probed().get(f"{p} {real2}:{p}") == "up" for p in (80, 21)),
        30,
    )
    assert ops.listed_weight(f"{real2}:80") == 1000
    assert ops.listed_weight(f"{real3}:80") is None
    ops.reload_with(settled())
    assert not any(real2 in target for target in ops.probed())
    wait_for(
        "real3 probed and up on 80 and 21",
        lambda: all(ops.probed().get(f"{p} {real3}:{p}") == "up" for p in (80, 21)),
        30,
    )
    assert ops.listed_weight(f"{real2}:80") is None


def test_lvsadm_lists_nannys_weight_ramp(ops: Ops) -> None:
    # Short probe times, applied by a reload to the running nanny.
    quick = settled().replace(
        "    timeout = 10\n    reentry = 180\n",
        "    timeout = 2\n    probe_interval = 1\n    reentry = 2\n",
    )
    assert quick != settled()
    ops.reload_with(quick)
    wait_for("real3 in TCP VIP:80", lambda: ops.listed_weight("192.168.1.12:80") == 1000, 30)
    real3 = "192.168.1.12:80"
    stop_http(ops.lab, "real3")
    wait_for("real3 out of TCP VIP:80", lambda: ops.listed_weight(real3) is None, 15)
    logged = len(ops.director.log())
    ops.servers.append(start_http(ops.lab, "real3"))
    wait_for("real3 back at weight 1000", lambda: ops.listed_weight(real3) == 1000, 30)
    # 1000 >> 5, doubled at each passed probe, capped at the configured weight: every
    # step from the daemon's log (a poll of the listing could miss one).
    ramp = logged_weights(ops.director.log()[logged:], real3)
    assert ramp == [31, 62, 124, 248, 496, 992, 1000], ramp


def test_broken_reload_changes_nothing(ops: Ops) -> None:
    before = ops.lvsadm("-S", "-n").stdout
    ops.director.config_path.write_text("virtual broken {\n  address = nonsense\n")
    ops.reload()
    assert ops.lvsadm("-S", "-n").stdout == before
    assert "reload refused" in ops.director.log()


def test_metrics_scraped_in_the_director_namespace(ops: Ops) -> None:
    ops.reload_with(settled())
    wait_for(
        "real1 probed at weight 500, real2 gone",
        lambda: (
            "192.168.1.11:80" not in ops.lvsadm("-L", "-n").stdout
            and any(
                h["health"] == "up" and h["target"].endswith("192.168.1.10:80")
                for h in ops.director.status()["health"]
            )
        ),
        30,
    )
    run = ops.lab.run("client", ["curl", "-sS", "--max-time", "10", f"http://{VIP}/"])
    assert run.returncode == 0
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
    (info,) = fams["lvsd_fastpath_info"].samples
    assert info.labels["implementation"] == ops.implementation
    health = {
        (s.labels["local_port"], s.labels["remote_address"], s.labels["state"]): s.value
        for s in fams["lvsd_backend_health"].samples
    }
    assert health[("80", "192.168.1.10", "up")] == 1.0
    assert ("80", "192.168.1.11", "up") not in health  # removed by the reload
    probes = {
        (s.labels["remote_address"], s.labels["result"]): s.value
        for s in fams["lvsd_backend_probes"].samples
        if s.labels["local_port"] == "80"
    }
    assert probes[("192.168.1.10", "passed")] >= 1.0
    assert fams["lvsd_failover_enabled"].samples[0].value == 0.0  # heartbeat = 0


def test_lvsd_save_writes_the_running_state(ops: Ops, tmp_path: Path) -> None:
    out = tmp_path / "saved.cf"
    ops.reload_with(settled())
    wait_for("real2 gone", lambda: ops.listed_weight("192.168.1.11:80") is None, 30)
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
    assert client.request(ops.director.socket_path, "timeouts") == [900, 120, 300]


def test_sd_notify_ready_reloading_stopping(tmp_path: Path) -> None:
    require_root()
    lab = Lab(LabSpec(), unique_lab_name())
    try:
        lab.up(reals=1)
        cfg = parse_config(thesis().replace("port = 80,21", "port = 80"), "thesis-lvs.cf")
        director = LabDirector(lab, cfg)
        try:
            director.start()  # returns at the daemon's READY=1 on our NOTIFY_SOCKET
            assert director.status()["services"]
            director.config_path.write_text(director.config_path.read_text())
            reload = notices(director, signal.SIGHUP, b"READY=1")
            assert reload[0] == b"RELOADING=1"
            assert reload[-1].split(b"\n")[0] == b"READY=1"
            assert reload[-1].split(b"\n")[1].startswith(b"STATUS=")
            stop = notices(director, signal.SIGTERM, b"STOPPING=1")
            assert stop == [b"STOPPING=1"]
            assert director.proc is not None
            assert director.proc.wait(30) == 0, director.log()
        finally:
            director.stop()
    finally:
        lab.down()
