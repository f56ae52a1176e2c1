"""FTP through the VIP: the director's FTP helper (ip_vs_ftp) with vsftpd in the reals.

    client 10.0.1.100 -- br-pub -- director eth0 10.0.1.1 / eth1 192.168.1.1 -- br-priv
                                   (VIP 10.0.1.5, nat_router 192.168.1.254)      |
                                                     real1 .10  real2 .11  real3 .12
                                                     vsftpd on 21, no pasv_address

The director runs the thesis's lvs.cf (ports 80 and 21, wlc 2000/1000/1000). Each real's
vsftpd names its own private address in its 227 reply and connects from port 20 for
active transfers: every transfer below works only if the director rewrites the reply and
creates the data connection's entry. Files are compared by SHA-256 digest. ftplib trusts
the 227 address (``trust_server_pasv_ipv4_address = True``) and curl is told not to skip
it (``--no-ftp-skip-pasv-ip``), as ordinary clients behave.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from director.config import load_config
from director.tools.demo import THESIS_CF, LabDirector
from lab.cluster import Lab, LabSpec
from tests.conftest import require_root
from tests.netns.conftest import CROSSED, DataPath, LabFactory, data_paths, unique_lab_name
from tests.netns.test_failover import VIP, Pair, cluster_config

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        shutil.which("vsftpd") is None or shutil.which("curl") is None,
        reason="needs Debian's vsftpd and curl",
    ),
]

BIG = "big.bin"
SIZE = 64 << 20
REALS = {"192.168.1.10": "real1", "192.168.1.11": "real2", "192.168.1.12": "real3"}

# One ftplib session from the client: log in, fetch `name` in `mode`, list, fetch the
# real's name.txt (who served), quit. JSON on stdout. `progress` (a path or "") is written
# once 16 MiB have arrived; `rate` (bytes/s, 0: unlimited) paces the download.
FTPLIB = """
import ftplib, hashlib, json, socket, sys, time
vip, mode, name, progress = sys.argv[1:5]
rate = int(sys.argv[5])
ftp = ftplib.FTP(timeout=60)
ftp.trust_server_pasv_ipv4_address = True
welcome = ftp.connect(vip, 21)
login = ftp.login()
if mode == "EPSV":
    ftp.makepasv = lambda: ftplib.parse229(ftp.sendcmd("EPSV"), ftp.sock.getpeername())
elif mode in ("PORT", "EPRT"):
    ftp.set_pasv(False)
if mode == "EPRT":
    def makeport():
        sock = socket.create_server((ftp.sock.getsockname()[0], 0))
        host, port = sock.getsockname()
        ftp.sendcmd("EPRT |1|%s|%d|" % (host, port))
        return sock
    ftp.makeport = makeport
h = hashlib.sha256(); got = 0; start = time.monotonic(); told = False
def take(block):
    global got, told
    h.update(block); got += len(block)
    if progress and not told and got >= 16 << 20:
        open(progress, "w").close(); told = True
    if rate:
        ahead = got / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
done = ftp.retrbinary("RETR " + name, take, blocksize=65536)
names = ftp.nlst()
served = []
ftp.retrbinary("RETR name.txt", served.append)
ftp.quit()
real = b"".join(served).decode().strip()
print(json.dumps({"welcome": welcome, "login": login, "done": done, "bytes": got,
                  "sha256": h.hexdigest(), "names": names, "real": real}))
"""

CURL_FLAGS = {
    "PASV": ["--disable-epsv", "--no-ftp-skip-pasv-ip"],
    "EPSV": [],
    "PORT": ["--ftp-port", "-", "--disable-eprt"],
    "EPRT": ["--ftp-port", "-"],
}


def make_big_file(lab: Lab, reals: list[str]) -> str:
    """A 64 MiB file in every real's FTP root (one file, hard links); its SHA-256."""
    first = lab.ftp_root(reals[0]) / BIG
    h = hashlib.sha256()
    seed = hashlib.sha256(b"lvsd-ftp").digest()
    block = (seed * ((1 << 20) // len(seed)))[: 1 << 20]
    with first.open("wb") as f:
        for i in range(SIZE >> 20):
            chunk = bytes(b ^ (i & 0xFF) for b in block[:256]) + block[256:]
            f.write(chunk)
            h.update(chunk)
    for real in reals[1:]:
        target = lab.ftp_root(real) / BIG
        if not target.exists():
            os.link(first, target)
    return h.hexdigest()


def ftplib_session(lab: Lab, mode: str, name: str = BIG) -> dict[str, Any]:
    done = lab.run("client", [sys.executable, "-c", FTPLIB, VIP, mode, name, "", "0"], check=False)
    assert done.returncode == 0, f"ftplib {mode}: {done.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def curl_digest(lab: Lab, mode: str) -> str:
    argv = ["curl", "-sS", "--max-time", "120", *CURL_FLAGS[mode], f"ftp://{VIP}/{BIG}"]
    script = " ".join(f"'{a}'" for a in argv) + " | sha256sum"
    done = lab.run("client", ["bash", "-o", "pipefail", "-c", script], check=False)
    assert done.returncode == 0, f"curl {mode}: {done.stderr[-2000:]}"
    return str(done.stdout.split()[0])


class Cluster:
    def __init__(self, lab: Lab, director: LabDirector, digest: str) -> None:
        self.lab = lab
        self.director = director
        self.digest = digest

    def ftp(self) -> dict[str, Any]:
        status = self.director.status()
        ftp = status["ftp"]
        assert isinstance(ftp, dict)
        return ftp

    def exported_ftp(self) -> dict[str, float]:
        """The helper's counters as a Prometheus scrape of the director shows them."""
        done = self.lab.run(
            "director", ["curl", "-sS", "--max-time", "10", "http://127.0.0.1:9561/metrics"]
        )
        names = {
            "lvsd_ftp_control_packets_total": "packets",
            "lvsd_ftp_replies_rewritten_total": "rewritten",
            "lvsd_ftp_data_connections_expected_total": "expected",
            'lvsd_ftp_ignored_total{reason="malformed"}': "malformed",
            'lvsd_ftp_ignored_total{reason="split"}': "split",
        }
        out: dict[str, float] = {}
        for line in done.stdout.splitlines():
            sample, _, value = line.rpartition(" ")
            if sample in names:
                out[names[sample]] = float(value)
        return out


@pytest.fixture(scope="module", params=data_paths(CROSSED))
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The lab and a director on the thesis's lvs.cf, once per data path (C on the TUN
    path, then the twin with the kernel offload: the data connections are offloaded)."""
    require_root()
    lab = Lab(LabSpec(), unique_lab_name())
    path: DataPath = request.param
    try:
        lab.up(reals=3, ftp=True)
        digest = make_big_file(lab, ["real1", "real2", "real3"])
        with LabDirector(lab, path.configure(load_config(THESIS_CF)), env=path.env) as director:
            path.check(director.status())
            yield Cluster(lab, director, digest)
    finally:
        lab.down()


@pytest.mark.parametrize("mode", ["PASV", "EPSV", "PORT", "EPRT"])
def test_ftplib_transfer_through_the_vip_arrives_intact(cluster: Cluster, mode: str) -> None:
    before = cluster.ftp()
    r = ftplib_session(cluster.lab, mode)
    assert r["welcome"].startswith("220")
    assert r["login"].startswith("230")
    assert r["done"].startswith("226")
    assert r["bytes"] == SIZE
    assert r["sha256"] == cluster.digest
    assert {BIG, "name.txt"} <= set(r["names"])
    after = cluster.ftp()
    # Three data connections per session (the file, the listing, name.txt), each expected.
    assert after["expected"] - before["expected"] == 3
    if mode == "PASV":
        assert after["rewritten"] - before["rewritten"] == 3
    assert after["malformed"] == before["malformed"]
    assert cluster.exported_ftp() == {k: float(v) for k, v in after.items()}


@pytest.mark.parametrize("mode", ["PASV", "EPSV", "PORT", "EPRT"])
def test_curl_transfer_through_the_vip_arrives_intact(cluster: Cluster, mode: str) -> None:
    before = cluster.ftp()
    assert curl_digest(cluster.lab, mode) == cluster.digest
    assert cluster.ftp()["expected"] - before["expected"] == 1


def test_directory_listings_work_with_curl(cluster: Cluster) -> None:
    for flags in (["--disable-epsv", "--no-ftp-skip-pasv-ip"], ["--ftp-port", "-"]):
        done = cluster.lab.run(
            "client", ["curl", "-sS", "--max-time", "30", "-l", *flags, f"ftp://{VIP}/"]
        )
        assert {BIG, "name.txt"} <= set(done.stdout.split()), flags


def _wlc_pick(status: dict[str, Any]) -> str:
    """The real wlc picks now for TCP VIP:21 (ip_vs_wlc.c: least (256*active+inactive)/weight
    by cross products, list order, the first wins ties)."""
    [svc] = [s for s in status["services"] if s["addr"] == f"{VIP}:21"]
    best: dict[str, Any] | None = None
    for d in svc["dests"]:
        if d["weight"] <= 0:
            continue
        if best is None:
            best = d
            continue
        loh = best["active"] * 256 + best["inactive"]
        doh = d["active"] * 256 + d["inactive"]
        if loh * d["weight"] > doh * best["weight"]:
            best = d
    assert best is not None
    return REALS[str(best["addr"]).split(":")[0]]


def test_six_sessions_in_a_row_spread_as_wlc_says(cluster: Cluster) -> None:
    served: list[str] = []
    for _ in range(6):
        expected = _wlc_pick(cluster.director.status())
        r = ftplib_session(cluster.lab, "PASV", "name.txt")
        assert r["real"] == expected, (served, r["real"], expected)
        served.append(r["real"])
    assert len(set(served)) >= 2, served


def test_passive_download_survives_kill_9_of_the_active_director(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    lab = lab_factory(reals=3, backup=True, ftp=True)
    digest = make_big_file(lab, ["real1", "real2", "real3"])
    pair = Pair(lab, cluster_config(tmp_path, 0.2, 1))
    progress = tmp_path / "progress"
    try:
        pair.primary.start()
        pair.backup.start()
        pair.wait("primary active", lambda: pair.role(pair.primary) == "MASTER")
        pair.wait("backup standby", lambda: pair.role(pair.backup) == "BACKUP")
        # 64 MiB at 6 MiB/s: about 11 s, killed after the first 16 MiB.
        argv = [sys.executable, "-c", FTPLIB, VIP, "PASV", BIG, str(progress), str(6 << 20)]
        client = lab.popen("client", argv, stdout=subprocess.PIPE, text=True)
        pair.wait("16 MiB to arrive", progress.exists, within=60)
        pair.wait("the standby to hold the transfer", lambda: pair.shadow(pair.backup) >= 2)
        assert pair.primary.proc is not None
        pair.primary.proc.kill()
        pair.primary.proc.wait()
        pair.wait("the backup to take over", lambda: pair.role(pair.backup) == "MASTER")
        out, _ = client.communicate(timeout=180)
        assert client.returncode == 0, pair.backup.log()[-3000:]
        r = json.loads(out)
        assert r["done"].startswith("226")
        assert r["sha256"] == digest
    finally:
        pair.backup.stop()
        pair.primary.stop()


# Log in, PASV (the 227 names the VIP; the director expects the data connection), say so
# in `ready`, wait (bounded) for `go`, then open the data connection and fetch `name`.
PASV_THEN_WAIT = """
import ftplib, hashlib, json, os, socket, sys, time
vip, name, ready, go = sys.argv[1:5]
ftp = ftplib.FTP(vip, timeout=60)
ftp.trust_server_pasv_ipv4_address = True
ftp.login()
ftp.voidcmd("TYPE I")
host, port = ftp.makepasv()
with open(ready + ".tmp", "w") as f:
    f.write(host)
os.rename(ready + ".tmp", ready)
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.05)
conn = socket.create_connection((host, port), timeout=60)
start = ftp.sendcmd("RETR " + name)
h = hashlib.sha256(); got = 0
while chunk := conn.recv(65536):
    h.update(chunk); got += len(chunk)
conn.close()
done = ftp.voidresp()
ftp.quit()
print(json.dumps({"host": host, "start": start, "done": done, "bytes": got,
                  "sha256": h.hexdigest()}))
"""


def test_a_takeover_between_227_and_the_data_connection_loses_nothing(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    """The expected data connection and the control connection's offsets are synced: the
    new active director lets the client's data connection in and keeps the control
    connection's numbering."""
    lab = lab_factory(reals=3, backup=True, ftp=True)
    digest = make_big_file(lab, ["real1", "real2", "real3"])
    pair = Pair(lab, cluster_config(tmp_path, 0.2, 1))
    ready, go = tmp_path / "ready", tmp_path / "go"
    try:
        pair.primary.start()
        pair.backup.start()
        pair.wait("primary active", lambda: pair.role(pair.primary) == "MASTER")
        pair.wait("backup standby", lambda: pair.role(pair.backup) == "BACKUP")
        argv = [sys.executable, "-c", PASV_THEN_WAIT, VIP, BIG, str(ready), str(go)]
        client = lab.popen("client", argv, stdout=subprocess.PIPE, text=True)
        pair.wait("the 227 reply", ready.exists)
        assert ready.read_text() == VIP
        # The control connection (ESTABLISHED) and the expected one (LISTEN).
        pair.wait("the standby to hold both", lambda: pair.shadow(pair.backup) >= 2)
        assert pair.primary.proc is not None
        pair.primary.proc.kill()
        pair.primary.proc.wait()
        pair.wait("the backup to take over", lambda: pair.role(pair.backup) == "MASTER")
        go.touch()
        out, _ = client.communicate(timeout=180)
        assert client.returncode == 0, pair.backup.log()[-3000:]
        r = json.loads(out)
        assert r["start"].startswith("150")
        assert r["done"].startswith("226")
        assert r["sha256"] == digest
    finally:
        pair.backup.stop()
        pair.primary.stop()


def test_persistence_keeps_a_client_on_one_real_through_the_ftp_template(
    lab_factory: LabFactory,
) -> None:
    """persistent = 300: port 21's template is <TCP, client, 0, VIP, 0> (vport 0, as the
    kernel keys FTP), so every session of the client goes to one real, data included."""
    lab = lab_factory(reals=3, ftp=True)
    cfg = load_config(THESIS_CF)
    cfg = replace(cfg, virtuals=(replace(cfg.virtuals[0], persistent=300),))
    with LabDirector(lab, cfg) as director:
        served = {ftplib_session(lab, mode, "name.txt")["real"] for mode in ("PASV", "PORT")}
        served |= {ftplib_session(lab, "EPSV", "name.txt")["real"]}
        assert len(served) == 1, served
        [svc] = [s for s in director.status()["services"] if s["addr"] == f"{VIP}:21"]
        assert sum(d["persist"] for d in svc["dests"]) == 1
