"""The namespace lab: it builds the thesis's cluster and removes every trace of it.

client 10.0.1.100 ─┐ br-pub (in sw) ┌─ director eth0 10.0.1.1 ── eth1 192.168.1.1 ─┐
                   └────────────────┴─ backup   eth0 10.0.1.2 ── eth1 192.168.1.2 ─┤
                                                                  br-priv (in sw) ─┤
                               real1 192.168.1.10, real2 .11, real3 .12 ───────────┘

No lvsd runs here, so no fast path is involved: the lab alone is tested.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns

from lab.cluster import RUN_ROOT, Lab, LabSpec, lab_namespaces, namespace_pids
from lab.errors import LabError
from lab.server import expected_digest
from tests.conftest import require_root
from tests.netns.conftest import LabFactory, unique_lab_name

pytestmark = pytest.mark.netns

LVSD = str(Path(sys.executable).parent / "lvsd")
SPEC = LabSpec()


# The names a lab gives its links (bridges, and the switch's end of each node's veth):
# only these are compared in the root namespace, where other work may add links meanwhile.
LAB_LINK = re.compile(r"(br-pub|br-priv|(sw|client|director|backup|real\d+)-eth\d+)")


def root_links() -> set[str]:
    """The root namespace's links named as a lab names its own (``ip -o link``)."""
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    names = {m.group(1) for m in re.finditer(r"^\d+: ([^:@]+)", out, re.M)}
    return {name for name in names if LAB_LINK.fullmatch(name)}


def root_disable_ipv6() -> str:
    return Path("/proc/sys/net/ipv6/conf/all/disable_ipv6").read_text()


def running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (a zombie runs nothing and holds no namespace)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def lvsd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LVSD, *args], capture_output=True, text=True, check=False, timeout=120)


def get(lab: Lab, node: str, host: str, path: str) -> tuple[int, str | None, bytes]:
    conn = lab.http(node, host)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("X-Real"), resp.read()
    finally:
        conn.close()


def mac(lab: Lab, node: str, ifname: str) -> str:
    with IPRoute(netns=lab.ns(node)) as ipr:
        link = ipr.link("get", ifname=ifname)[0]
        return str(link.get_attr("IFLA_ADDRESS"))


def neighbour(lab: Lab, node: str, address: str) -> str | None:
    """The lladdr ``node`` has for ``address`` in its neighbour table, if any."""
    out = lab.run(node, ["ip", "neigh", "show", address]).stdout
    m = re.search(r"lladdr (\S+)", out)
    return m.group(1) if m else None


def test_cli_up_down_leaves_nothing_behind() -> None:
    require_root()
    name = unique_lab_name()
    links_before, sysctl_before = root_links(), root_disable_ipv6()
    try:
        up = lvsd("lab", "up", "--name", name, "--reals", "3", "--backup")
        assert up.returncode == 0, up.stderr
        nodes = ["sw", "client", "director", "backup", "real1", "real2", "real3"]
        assert lab_namespaces(name) == [f"lvsd-{name}-{n}" for n in nodes]
        assert "192.168.1.12/24" in up.stdout
        pids = [pid for ns in lab_namespaces(name) for pid in namespace_pids(ns)]
        assert len(pids) == 3, "one HTTP server per real"
        assert root_links() == links_before

        down = lvsd("lab", "down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert lab_namespaces(name) == []
        assert not any(running(pid) for pid in pids)
        assert root_links() == links_before
        assert root_disable_ipv6() == sysctl_before
        assert not (RUN_ROOT / name).exists()
        status = lvsd("lab", "status", "--name", name)
        assert status.returncode == 1
        assert "not up" in status.stdout
    finally:
        Lab(SPEC, name).down()


def test_cli_exec_runs_in_the_node_and_returns_its_status(lab: Lab) -> None:
    ok = lvsd("lab", "exec", "--name", lab.name, "real2", "--", "ip", "-4", "-o", "addr")
    assert ok.returncode == 0
    assert "192.168.1.11/24" in ok.stdout
    assert "10.0.1." not in ok.stdout
    failed = lvsd("lab", "exec", "--name", lab.name, "client", "--", "sh", "-c", "exit 7")
    assert failed.returncode == 7
    missing = lvsd("lab", "exec", "--name", lab.name, "backup", "--", "true")
    assert missing.returncode == 1
    assert "no node 'backup'" in missing.stderr


def test_two_labs_up_at_once_are_independent(lab_factory: LabFactory) -> None:
    first, second = lab_factory(reals=2), lab_factory(reals=1, backup=True)
    assert first.nodes == ("sw", "client", "director", "real1", "real2")
    assert second.nodes == ("sw", "client", "director", "backup", "real1")
    assert set(lab_namespaces(first.name)).isdisjoint(lab_namespaces(second.name))
    for lab in (first, second):
        assert get(lab, "director", "192.168.1.10", "/") == (200, "real1", b"real1\n")
    second.down()
    assert get(first, "director", "192.168.1.11", "/") == (200, "real2", b"real2\n")


def test_up_refuses_a_lab_that_exists(lab: Lab) -> None:
    with pytest.raises(LabError, match="already exists"):
        Lab(SPEC, lab.name).up(reals=1)
    assert get(lab, "director", "192.168.1.10", "/")[0] == 200


def test_client_has_no_route_into_the_private_segment(lab: Lab) -> None:
    with pytest.raises(subprocess.CalledProcessError):
        lab.run("client", ["ip", "route", "get", "192.168.1.10"])
    assert not lab.ping("client", "192.168.1.10", timeout=0.5)
    routes = lab.run("real1", ["ip", "route", "show", "default"]).stdout
    assert routes.split()[:3] == ["default", "via", "192.168.1.254"]


def test_arp_resolves_across_the_bridges(lab: Lab) -> None:
    assert neighbour(lab, "client", "10.0.1.1") is None
    assert lab.ping("client", "10.0.1.1")
    assert neighbour(lab, "client", "10.0.1.1") == mac(lab, "director", "eth0")

    assert neighbour(lab, "real1", "192.168.1.1") is None
    assert lab.ping("real1", "192.168.1.1")
    assert neighbour(lab, "real1", "192.168.1.1") == mac(lab, "director", "eth1")

    fdb = lab.run("sw", ["bridge", "fdb", "show", "br", "br-priv"]).stdout
    assert f"{mac(lab, 'real1', 'eth0')} dev real1-eth0 master br-priv" in fdb


def test_vip_and_nat_router_are_configured_nowhere(lab: Lab) -> None:
    for node in lab.nodes:
        addrs = lab.run(node, ["ip", "-4", "-o", "addr"]).stdout
        assert str(SPEC.vip) not in addrs
        assert str(SPEC.nat_router) not in addrs
    assert not lab.ping("director", SPEC.vip, timeout=0.5)


def test_each_real_answers_the_director_with_its_name(lab: Lab) -> None:
    for i, real in enumerate(lab.reals, start=1):
        status, header, body = get(lab, "director", str(SPEC.real_address(i)), "/")
        assert (status, header, body) == (200, real, f"{real}\n".encode())


def test_labserver_keeps_the_connection_alive_and_counts(lab: Lab) -> None:
    conn = lab.http("director", "192.168.1.12")
    try:
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"real3\n"
        first_sock = conn.sock
        for _ in range(2):
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"real3\n"
        conn.request("GET", "/stats")
        stats = json.loads(conn.getresponse().read())
        assert conn.sock is first_sock, "all four requests went over one connection"
    finally:
        conn.close()
    assert stats["name"] == "real3"
    assert stats["requests"] == 3
    assert stats["paths"] == {"/": 3}


@pytest.mark.parametrize("n", [0, 1, 65535, 65537, 3 * (1 << 20) + 7])
def test_bytes_digest_matches_expected_digest(lab: Lab, n: int) -> None:
    conn = lab.http("director", "192.168.1.10")
    try:
        conn.request("GET", f"/bytes/{n}")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Length") == str(n)
        digest = hashlib.sha256(resp.read()).hexdigest()
    finally:
        conn.close()
    assert digest == expected_digest(n)


@pytest.mark.slow
def test_one_gib_download_streams_through_the_bridge(lab: Lab) -> None:
    n = 1 << 30
    conn = lab.http("director", "192.168.1.11", timeout=60)
    h, got = hashlib.sha256(), 0
    try:
        conn.request("GET", f"/bytes/{n}")
        resp = conn.getresponse()
        while chunk := resp.read(1 << 20):
            h.update(chunk)
            got += len(chunk)
    finally:
        conn.close()
    assert got == n
    assert h.hexdigest() == expected_digest(n)


def test_down_after_up_was_killed_midway() -> None:
    require_root()
    name = unique_lab_name()
    # SIGKILL at a known point: everything is built and the servers are starting.
    crash = (
        "import os, signal\n"
        "from lab.cluster import Lab, LabSpec\n"
        "Lab._wait_accepting = lambda *args: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"Lab(LabSpec(), {name!r}).up(reals=2, backup=True)\n"
    )
    links_before = root_links()
    try:
        up = subprocess.run([sys.executable, "-c", crash], check=False, timeout=120)
        assert up.returncode == -9
        assert len(lab_namespaces(name)) == 6, "the killed up left its namespaces"
        # The servers were started just before the kill; `ip netns exec` moves each into its
        # node right after: poll (bounded) for them there, no event tells this process.
        deadline = time.monotonic() + 10
        while not (pids := [p for ns in lab_namespaces(name) for p in namespace_pids(ns)]):
            assert time.monotonic() < deadline, "the killed up left no servers"
            time.sleep(0.05)

        down = lvsd("lab", "down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert lab_namespaces(name) == []
        assert not any(running(pid) for pid in pids)
        assert root_links() == links_before
        assert not (RUN_ROOT / name).exists()
    finally:
        Lab(SPEC, name).down()


def test_down_removes_a_half_built_lab_and_only_its_processes(lab_factory: LabFactory) -> None:
    bystander = lab_factory(reals=1)
    name = unique_lab_name()
    half = Lab(SPEC, name)
    survivor = subprocess.Popen(["sleep", "300"])  # root namespace: down must not touch it
    stray = None
    try:
        # What an `up` killed mid-way leaves: some namespaces, a veth, a server, no client.
        for node in ("sw", "director", "real1"):
            netns.create(half.ns(node))
        with IPRoute(netns=half.ns("sw")) as ipr:
            ipr.link("add", ifname="br-priv", kind="bridge")
            ipr.link(
                "add",
                ifname="real1-eth0",
                kind="veth",
                peer={"ifname": "eth0", "net_ns_fd": half.ns("real1")},
            )
        stray = half.popen(
            "real1",
            [sys.executable, "-m", "lab.server", "--name", "real1", "--port", "8080"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Written once it listens: by then `ip netns exec` has moved it into real1.
        assert stray.stderr is not None
        assert "listening on" in stray.stderr.readline()
        assert stray.pid in namespace_pids(half.ns("real1"))
        assert half.nodes == ("sw", "director", "real1")

        down = lvsd("lab", "down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert stray.wait(timeout=10) == -15
        assert lab_namespaces(name) == []
        assert survivor.poll() is None
        assert get(bystander, "director", "192.168.1.10", "/") == (200, "real1", b"real1\n")
    finally:
        half.down()
        survivor.kill()
        survivor.wait()
        if stray is not None:
            stray.kill()
            stray.communicate()


def test_lab_api_runs_commands_and_refuses_unknown_nodes(lab: Lab) -> None:
    assert lab.run("director", ["ip", "-4", "-o", "addr", "show", "eth1"]).stdout.split()[3] == (
        "192.168.1.1/24"
    )
    with pytest.raises(LabError, match="unknown node 'routers'"):
        lab.ns("routers")
    with pytest.raises(LabError, match="no node 'real9'"):
        lab.run("real9", ["true"])
    proc = lab.popen("client", ["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate("hello\n", timeout=10)
    assert (proc.returncode, out) == (0, "hello\n")


def test_context_manager_downs_the_lab() -> None:
    require_root()
    with Lab(SPEC, unique_lab_name()) as lab:
        lab.up(reals=1)
        server_pids = namespace_pids(lab.ns("real1"))
        assert len(server_pids) == 1
    assert lab_namespaces(lab.name) == []
    assert not any(running(pid) for pid in server_pids)


@pytest.mark.skipif(
    shutil.which("nginx") is None or shutil.which("vsftpd") is None,
    reason="needs Debian's nginx-light and vsftpd",
)
def test_nginx_and_vsftpd_reals_answer_with_their_names(lab_factory: LabFactory) -> None:
    lab = lab_factory(reals=2, nginx=True, ftp=True)
    assert get(lab, "director", "192.168.1.11", "/") == (200, "real2", b"real2\n")
    fetch_name = (
        "import ftplib, io\n"
        "ftp = ftplib.FTP('192.168.1.10', timeout=10)\n"
        "ftp.login()\n"
        "buf = io.BytesIO()\n"
        "ftp.retrbinary('RETR name.txt', buf.write)\n"
        "ftp.quit()\n"
        "print(buf.getvalue().decode(), end='')\n"
    )
    assert lab.run("director", [sys.executable, "-c", fetch_name]).stdout == "real1\n"
    assert (lab.run_dir / "real1" / "nginx.conf").is_file()
    name = lab.name
    lab.down()
    assert not any(p.name.startswith(f"lvsd-{name}-") for p in Path("/run/netns").iterdir())
