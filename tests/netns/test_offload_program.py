"""The tc offload program alone: loaded in a fresh namespace, it forwards what its map holds.

    ns cli                 ns dir (the program on both veths)        ns real
    10.0.1.2 ---- veth ---- 10.0.1.1 | 192.168.1.1 ---- veth ---- 192.168.1.2
                            no route for the VIP 10.0.1.100: only the program forwards

A child process in ``dir`` loads the object through the C loader and installs one UDP
connection 10.0.1.2:5000 -> 10.0.1.100:80 => 192.168.1.2:8080. A datagram from the
client must reach the real from the client to 192.168.1.2:8080 with valid checksums, and
the real's answer reach the client from the VIP; the loader's counters say one each way.
A datagram of another port is not forwarded (no entry: it goes to the kernel, which has
no route for it).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from director.dataplane import offload
from tests.conftest import require_root

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 10.0
_serial = itertools.count()


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, timeout=TIMEOUT_S)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str, str]]:
    require_root()
    base = f"lvsd-of{os.getpid()}-{next(_serial)}"
    cli, dr, real = f"{base}c", f"{base}d", f"{base}r"
    made: list[str] = []
    try:
        for ns in (cli, dr, real):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh("ip", "link", "add", "c0", "netns", cli, "type", "veth", "peer", "pub", "netns", dr)
        sh("ip", "link", "add", "r0", "netns", real, "type", "veth", "peer", "priv", "netns", dr)
        for ns, dev, addr in (
            (cli, "c0", "10.0.1.2/24"),
            (dr, "pub", "10.0.1.1/24"),
            (dr, "priv", "192.168.1.1/24"),
            (real, "r0", "192.168.1.2/24"),
        ):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", cli, "route", "add", "10.0.1.100/32", "via", "10.0.1.1")
        sh("ip", "-n", real, "route", "add", "default", "via", "192.168.1.1")
        yield cli, dr, real
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False, timeout=TIMEOUT_S)


def loader_main() -> None:
    """In the director's namespace: load, install, say ready, report counters on a line."""
    mod = offload.load_module()
    assert mod is not None
    idx = {name: socket.if_nametoindex(name) for name in ("pub", "priv")}
    off = mod.Offload(str(offload.OBJECT_PATH), 16, (idx["pub"], idx["priv"]))
    conn = (17, 0x0A000102, 5000, 0x0A000164, 80, 0xC0A80102, 8080)
    off.install(*conn, 3, idx["priv"], idx["pub"])
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps({"take": off.take(*conn), "len": len(off)}), flush=True)
    sys.stdin.readline()
    print(json.dumps({"uninstall": off.uninstall(*conn), "len": len(off)}), flush=True)
    sys.stdin.readline()
    off.close()


def in_ns(ns: str, code: str) -> str:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    )
    return out.stdout.strip()


REAL = """
import socket, json
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.168.1.2", 8080))
s.settimeout(5)
print("listening", flush=True)
data, peer = s.recvfrom(100)
s.sendto(b"pong", peer)
print(json.dumps([data.decode(), peer[0], peer[1]]))
"""

CLIENT = """
import socket, json
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.0.1.2", 5000))
s.settimeout(5)
s.sendto(b"ping", ("10.0.1.100", 80))
data, peer = s.recvfrom(100)
print(json.dumps([data.decode(), peer[0], peer[1]]))
"""

# After uninstall the real must see nothing: a bounded wait, then "nothing".
SILENT = """
import select, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.168.1.2", 8080))
print("listening", flush=True)
print("received" if select.select([s], [], [], 1.5)[0] else "nothing")
"""

SEND = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.0.1.2", 5000))
s.sendto(b"ping", ("10.0.1.100", 80))
"""


def tell(loader: subprocess.Popen[str]) -> dict[str, Any]:
    assert loader.stdin is not None
    assert loader.stdout is not None
    loader.stdin.write("\n")
    loader.stdin.flush()
    line = loader.stdout.readline()
    return json.loads(line) if line.strip() else {}


@pytest.mark.skipif(not offload.available(), reason="offload not built (no clang or libbpf)")
def test_program_forwards_an_installed_connection_both_ways(
    namespaces: tuple[str, str, str],
) -> None:
    cli, dr, real = namespaces
    code = "from tests.netns.test_offload_program import loader_main; loader_main()"
    loader = subprocess.Popen(
        ["ip", "netns", "exec", dr, sys.executable, "-c", code],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert loader.stdout is not None
        assert loader.stdout.readline().strip() == "ready"
        server = subprocess.Popen(
            ["ip", "netns", "exec", real, sys.executable, "-c", REAL],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            assert server.stdout.readline().strip() == "listening"
            client = in_ns(cli, CLIENT)
            served, _ = server.communicate(timeout=TIMEOUT_S)
        finally:
            server.kill()
            server.communicate()
        # The real saw the client itself; the client saw the VIP answer.
        assert json.loads(served) == ["ping", "10.0.1.2", 5000]
        assert json.loads(client) == ["pong", "10.0.1.100", 80]
        # 32 bytes: 20 of IP, 8 of UDP, 4 of payload, each way.
        report = tell(loader)
        in_pkts, in_bytes, out_pkts, out_bytes, last_ns, slot = report["take"]
        assert (in_pkts, in_bytes, out_pkts, out_bytes, slot) == (1, 32, 1, 32, 3)
        assert 0 < last_ns <= time.monotonic_ns()
        assert report["len"] == 1
        assert tell(loader) == {"uninstall": [0, 0, 0, 0, last_ns, 3], "len": 0}
        # Uninstalled: the kernel, with no route to the VIP, forwards nothing.
        silent = subprocess.Popen(
            ["ip", "netns", "exec", real, sys.executable, "-c", SILENT],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert silent.stdout is not None
            assert silent.stdout.readline().strip() == "listening"
            in_ns(cli, SEND)
            assert silent.communicate(timeout=TIMEOUT_S)[0].strip() == "nothing"
        finally:
            silent.kill()
            silent.communicate()
        tell(loader)
        assert loader.wait(timeout=TIMEOUT_S) == 0
    finally:
        loader.kill()
        loader.communicate()
