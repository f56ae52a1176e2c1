"""Connections that outlive the director process: kill -9 and restart, hot takeover, a full
state directory.

    client 10.0.1.100 -- director (VIP 10.0.1.5, nat_router 192.168.1.254) -- real1..3

The client runs a rate-limited 256 MiB download and, beside it, a keep-alive HTTP request
every 20 ms, through the VIP; the director process is replaced under them. The download is
checked byte for byte (its sha256), every request must succeed, and the longest silence of
each is printed (``-s`` shows it), never asserted. C fast path only: the twin restores the
same records (tests/unit/daemon/test_snapshot.py runs both) and the lab suite must stay short.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from director.config import DirectorConfig, parse_config
from director.daemon import snapshot
from director.dataplane.offload import OFFLOAD
from director.tools.demo import THESIS_CF, LabDirector
from lab.cluster import Lab
from tests.netns.conftest import LabFactory
from tests.netns.test_failover import Pair, cluster_config

pytestmark = pytest.mark.netns

VIP = "10.0.1.5"
SIZE = 256 * 1024 * 1024
RATE = 24 * 1024 * 1024  # bytes per second: about 11 s for the whole download
WAIT_S = 30.0

CLIENT = """
import hashlib, http.client, json, socket, threading, time
from lab.server import expected_digest
n, rate, vip = {size}, {rate}, "{vip}"
result = {{}}

def download():
    s = socket.create_connection((vip, 80), timeout=60)
    s.sendall(b"GET /bytes/%d HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" % n)
    buf = b""
    while b"\\r\\n\\r\\n" not in buf:
        buf += s.recv(4096)
    _, body = buf.split(b"\\r\\n\\r\\n", 1)
    h = hashlib.sha256(body); got = len(body)
    start = last = time.monotonic(); gap = 0.0; error = None
    try:
        while got < n:
            chunk = s.recv(min(262144, n - got))
            if not chunk:
                error = "closed early"; break
            now = time.monotonic(); gap = max(gap, now - last); last = now
            h.update(chunk); got += len(chunk)
            ahead = got / rate - (now - start)
            if ahead > 0:
                time.sleep(ahead)
    except OSError as e:
        error = repr(e)
    result.update(ok=error is None and h.hexdigest() == expected_digest(n), error=error,
                  bytes=got, max_gap_s=gap)

t = threading.Thread(target=download); t.start()
conn = http.client.HTTPConnection(vip, 80, timeout=60)
ok = failed = 0; gap = 0.0; errors = []; last = time.monotonic()
print("started", flush=True)
while t.is_alive():
    try:
        conn.request("GET", "/")
        r = conn.getresponse(); r.read()
        ok += r.status == 200; failed += r.status != 200
        now = time.monotonic(); gap = max(gap, now - last); last = now
    except (OSError, http.client.HTTPException) as e:
        failed += 1; errors.append(repr(e))
        conn.close(); conn = http.client.HTTPConnection(vip, 80, timeout=60)
    time.sleep(0.02)
t.join()
print(json.dumps({{"download": result, "requests": ok, "failed": failed, "errors": errors[:5],
                  "request_gap_s": gap}}), flush=True)
"""


def wait(what: str, cond: Callable[[], bool], limit: float = WAIT_S) -> float:
    start = time.monotonic()
    for _ in range(int(limit / 0.05) + 1):
        if cond():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def single_director_cf(extra: str = "") -> DirectorConfig:
    text = "heartbeat = 0\n" + THESIS_CF.read_text() + extra
    return parse_config(text, "continuity.cf")


def start_client(lab: Lab) -> subprocess.Popen[str]:
    proc = lab.popen(
        "client",
        [sys.executable, "-c", CLIENT.format(size=SIZE, rate=RATE, vip=VIP)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    return proc


def client_result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=180)
    result: dict[str, Any] = json.loads(out)
    return result


def held_in_snapshot(d: LabDirector, after_ms: int, entries: int) -> bool:
    """Whether a snapshot taken after ``after_ms`` (Unix) holds ``entries`` or more."""
    files = snapshot.list_files(d.cfg.state_dir, snapshot.ident(d.cfg.control_socket))
    return bool(files) and files[0].created_ms > after_ms and _count(files[0].path) >= entries


def _count(path: Path) -> int:
    try:
        return snapshot.read(path).count
    except snapshot.SnapshotError:
        return 0


def test_kill_9_and_a_plain_restart_keep_the_download_and_the_requests(
    lab_factory: LabFactory,
) -> None:
    lab = lab_factory(reals=3)
    director = LabDirector(lab, single_director_cf()).start()
    try:
        t0 = time.time_ns() // 1_000_000
        client = start_client(lab)
        # The download and the keep-alive connection (and nothing else) are in a snapshot.
        wait("a snapshot holding both connections", lambda: held_in_snapshot(director, t0, 2))
        assert director.proc is not None
        director.proc.kill()
        director.proc.wait()
        killed = time.monotonic()
        director.start()
        serving = time.monotonic() - killed
        result = client_result(client)
        down = result["download"]
        print(
            f"\nkill -9 + restart: serving again after {serving:.2f} s; download gap "
            f"{down['max_gap_s']:.2f} s; request gap {result['request_gap_s']:.2f} s "
            f"({result['requests']} requests)"
        )
        assert down["ok"], down
        assert result["failed"] == 0, result
        assert "restored 2 connections and templates" in director.log(), director.log()[-3000:]
        # Both connections went on through the restarted daemon: no new one was scheduled
        # for them (the keep-alive's requests all went over the one connection).
        assert director.status()["decided"] == 0
    finally:
        director.stop()


def test_takeover_keeps_the_download_and_every_request_and_the_old_daemon_exits(
    lab_factory: LabFactory,
) -> None:
    lab = lab_factory(reals=3)
    director = LabDirector(lab, single_director_cf()).start()
    old = director.proc
    assert old is not None
    try:
        client = start_client(lab)
        # Well into the download (a few MiB), then a new lvsd takes over.
        wait("both connections", lambda: _conns(director) >= 2)
        wait("a few MiB into the download", lambda: _bytes(director.status()) > 4 << 20)
        before = director.status()
        director.start(["--takeover"])
        assert old.wait(timeout=WAIT_S) == 0, director.log()[-3000:]
        result = client_result(client)
        down = result["download"]
        print(
            f"\ntakeover: download gap {down['max_gap_s']:.2f} s; request gap "
            f"{result['request_gap_s']:.2f} s ({result['requests']} requests)"
        )
        assert down["ok"], down
        assert result["failed"] == 0, result
        log = director.log()
        assert f"took over from pid {old.pid}" in log, log[-3000:]
        assert f"takeover: pid {director.proc.pid if director.proc else 0} serves now" in log
        # The new daemon forwarded the rest: it scheduled nothing new, and its counters
        # grew past the old one's (the services' packet counts are its own, from zero).
        after = director.status()
        assert after["decided"] == 0
        assert _packets(after) > 0
        assert before["decided"] >= 2
        # The old daemon left the hook to its successor (offload is on by default, and
        # built here): the kernel forwards with the new daemon's program; its exit
        # detached nothing.
        assert after["offload"]["mode"] == OFFLOAD, after["offload"]
        assert _tc_programs(lab) == 2, director.log()[-3000:]
        assert after["offload"]["installed"] >= 1, after["offload"]
    finally:
        director.stop()
        if old.poll() is None:
            old.kill()
            old.wait()


def _tc_programs(lab: Lab) -> int:
    """The director's interfaces whose ingress holds a tc BPF program."""
    shown = (
        lab.run("director", ["tc", "filter", "show", "dev", dev, "ingress"]).stdout
        for dev in ("eth0", "eth1")
    )
    return sum(" bpf " in out for out in shown)


def _conns(d: LabDirector) -> int:
    return int(d.status()["connections"])


def _bytes(status: dict[str, Any]) -> int:
    return sum(int(s["inbytes"]) + int(s["outbytes"]) for s in status["services"])


def _packets(status: dict[str, Any]) -> int:
    return sum(int(s["inpkts"]) + int(s["outpkts"]) for s in status["services"])


def _get(lab: Lab) -> str:
    """One request through the VIP on a new connection: the real that answered."""
    conn = lab.http("client", VIP, 80)
    try:
        conn.request("GET", "/")
        r = conn.getresponse()
        r.read()
        return str(r.getheader("X-Real"))
    finally:
        conn.close()


def test_a_full_state_directory_is_pruned_counted_and_never_stops_serving(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    lab = lab_factory(reals=3)
    state = tmp_path / "state"
    state.mkdir()
    size = 256 * 1024
    # A small tmpfs on the state directory, in the daemon's own mount namespace (ip netns
    # exec gives it one, no propagation to the host's): gone when the daemon exits.
    mount = f'mount -t tmpfs -o size={size},mode=0700 lvsd-test-state "$0" && exec "$@"'
    cfg = single_director_cf(
        f'state_dir = "{state}"\nsnapshot_interval = 0.1\nsnapshot_keep = 1000\n'
    )
    director = LabDirector(lab, cfg, prefix=["sh", "-c", mount, str(state)]).start()
    assert director.proc is not None
    pid = str(director.proc.pid)

    def inside(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", "-t", pid, "-m", "--", *argv], capture_output=True, text=True, check=False
        )

    def stats() -> dict[str, Any]:
        result: dict[str, Any] = director.status()["snapshots"]
        return result

    def used() -> int:
        out = inside("df", "-B1", "--output=used", str(state)).stdout.split()
        return int(out[-1])

    try:
        assert _get(lab).startswith("real")
        # Snapshots every 0.1 s with room for 1,000 of them: the file system's free space
        # (less its reserve) is what bounds them, and old ones are pruned to stay within it.
        wait("pruning for free space", lambda: stats()["pruned_files"] > 0)
        assert stats()["failures"] == {}
        assert used() < size
        # Something else fills the file system, and takes whatever lvsd frees: lvsd gives
        # way (prunes its own oldest files to write a new one) until it has nothing left
        # to prune, then counts each snapshot it has no room for, and serves on.
        for _ in range(200):
            inside("dd", "if=/dev/zero", f"of={state}/junk", "bs=4096", "oflag=append",
                   "conv=notrunc")  # fmt: skip
            if stats()["failures"].get("no_space", 0) > 0:
                break
            time.sleep(0.05)
        assert stats()["failures"].get("no_space", 0) > 0, stats()
        assert set(stats()["failures"]) == {"no_space"}
        # What it keeps is less than one more snapshot and the file system's reserve
        # (5% of 256 KiB): at most four files of one 4 KiB block.
        files = inside("ls", str(state)).stdout.split()
        assert sum(1 for f in files if f.endswith(".snap")) <= 4, files
        assert _get(lab).startswith("real")
        written = stats()["written"]
        refused = stats()["failures"]["no_space"]
        # Room again: snapshots resume.
        inside("rm", f"{state}/junk")
        wait("snapshots written again", lambda: stats()["written"] > written + 3)
        assert director.proc.poll() is None
        print(
            f"\nfull state_dir: {refused} snapshots refused for space, "
            f"{stats()['pruned_files']} pruned ({stats()['pruned_bytes']} bytes), "
            f"{stats()['written']} written"
        )
    finally:
        director.stop()
    assert not list(state.iterdir()), "the tmpfs leaked into the host's mount namespace"


KEEPALIVE_ONCE_MORE = """
import http.client, json, sys, time
conn = http.client.HTTPConnection("{vip}", 80, timeout=60)
conn.request("GET", "/"); r = conn.getresponse(); r.read()
print("first", r.status, flush=True)
sys.stdin.readline()  # the director is replaced meanwhile
start = time.monotonic()
try:
    conn.request("GET", "/"); r = conn.getresponse(); r.read()
    outcome = "answered %d" % r.status
except (OSError, http.client.HTTPException) as e:
    outcome = type(e).__name__
print(json.dumps({{"outcome": outcome, "after_s": time.monotonic() - start}}), flush=True)
"""


def test_a_connection_lost_in_a_restart_is_reset_not_left_hanging(
    lab_factory: LabFactory,
) -> None:
    # No snapshots: the restarted director knows nothing of the keep-alive connection.
    # Its next request finds no entry, and the director answers with a reset as the
    # kernel's stack does for IPVS: the client learns at once instead of after 60 s.
    lab = lab_factory(reals=3)
    director = LabDirector(lab, single_director_cf("snapshot_interval = 0\n")).start()
    proc = lab.popen(
        "client",
        [sys.executable, "-c", KEEPALIVE_ONCE_MORE.format(vip=VIP)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert proc.stdout.readline().split() == ["first", "200"]
        assert director.proc is not None
        director.proc.kill()
        director.proc.wait()
        director.start()
        proc.stdin.write("\n")
        proc.stdin.flush()
        result = json.loads(proc.stdout.readline())
        print(f"\nlost connection: {result['outcome']} after {result['after_s']:.2f} s")
        assert result["outcome"] in ("ConnectionResetError", "RemoteDisconnected"), result
        assert director.status()["resets"] >= 1
    finally:
        proc.kill()
        proc.communicate()  # and closes its pipes
        director.stop()


def test_takeover_of_the_active_director_of_a_pair_keeps_it_active(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    # The primary, active, is replaced by a takeover: the new process starts active (the
    # failover role is handed over), the backup never takes over, nothing is lost.
    lab = lab_factory(reals=3, backup=True)
    pair = Pair(lab, cluster_config(tmp_path, 0.2, 1), "c")
    try:
        pair.start()
        old = pair.primary.proc
        assert old is not None
        client = lab.popen(
            "client",
            [sys.executable, "-c", CLIENT.format(size=64 << 20, rate=RATE, vip=VIP)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "started"
        pair.wait("the standby to hold both connections", lambda: pair.shadow(pair.backup) >= 2)
        pair.primary.start(["--takeover"])
        assert old.wait(timeout=WAIT_S) == 0
        assert pair.role(pair.primary) == "MASTER"
        result = client_result(client)
        assert result["download"]["ok"], result
        assert result["failed"] == 0, result
        assert pair.role(pair.primary) == "MASTER"
        assert pair.role(pair.backup) == "BACKUP"
        assert "failover role MASTER" in pair.primary.log()
        assert pair.served_by(pair.backup)[1] == 0  # the backup forwarded nothing
    finally:
        pair.backup.stop()
        pair.primary.stop()
