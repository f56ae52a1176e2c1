"""drain() on a real TUN device opened with IFF_VNET_HDR, inside a namespace of its own.

    namespace fp<pid>x<n>
    +--------------------------------------------------------------+
    |  client socket 10.9.0.1:* ---> route 10.9.0.100 (VIP) via fptun0
    |                                   |  kernel writes the datagram to the TUN
    |                          fptun0 fd: drain() -> NEW -> insert -> FORWARD, written back
    |                                   |  kernel receives it on fptun0 (accept_local=1)
    |  server socket 10.9.1.1:5300 (lo) <---  dst rewritten VIP:53 -> RIP:5300
    +--------------------------------------------------------------+

The kernel, not the test, checks the rewritten checksums: a datagram with a bad UDP
checksum is dropped before the server socket sees it. With TUNSETOFFLOAD(TUN_F_CSUM) the
kernel hands over NEEDS_CSUM packets and completes the partial sum on write.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import require_root

pytestmark = pytest.mark.netns
_names = itertools.count()

CHILD = r"""
import fcntl, json, os, select, socket, struct, subprocess, sys
from director.dataplane import _fastpath, _fastpath_py
impl = _fastpath if sys.argv[1] == "c" else _fastpath_py
offload = sys.argv[2] == "1"
def sh(*a): subprocess.run(a, check=True)
fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
# TUNSETIFF with IFF_TUN | IFF_NO_PI | IFF_VNET_HDR
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", b"fptun0", 0x0001 | 0x1000 | 0x4000))
if offload:
    fcntl.ioctl(fd, 0x400454D0, 0x01)  # TUNSETOFFLOAD TUN_F_CSUM
sh("ip", "link", "set", "lo", "up")
sh("ip", "addr", "add", "10.9.0.1/24", "dev", "fptun0")
sh("ip", "link", "set", "fptun0", "up")
sh("ip", "addr", "add", "10.9.1.1/32", "dev", "lo")
for k in ("all", "fptun0"):
    sh("sysctl", "-qw", f"net.ipv4.conf.{k}.accept_local=1", f"net.ipv4.conf.{k}.rp_filter=0")
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("10.9.1.1", 5300))
server.setblocking(False)
client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
client.bind(("10.9.0.1", 0))
cport = client.getsockname()[1]
t = impl.ConnTable(16)
t.set_dest(0, 0, 0x0A090101, 5300, 0, 0)
vip = bytes([10, 9, 0, 100])


def ours(p):
    return len(p) > 30 and p[19] == 17 and p[26:30] == vip


def pump(now):
    # drain until our datagram is handed over (NEW) or reaches the server; bounded
    out = []
    for _ in range(20):
        select.select([fd], [], [], 1)
        t.drain(fd, now, out)
        mine = [p for v, p in out if v == impl.NEW and ours(p)]
        if mine:
            return mine[0]
        try:
            return server.recvfrom(100)
        except BlockingIOError:
            pass
    raise SystemExit("nothing arrived")


got = []
first = None
for i in range(3):
    client.sendto(b"hello %d" % i, ("10.9.0.100", 53))
    r = pump(1000 + i)
    if isinstance(r, bytearray):
        first = bytes(r)
        pkt = r
        t.insert(17, 0x0A090001, cport, 0x0A090064, 53, 0x0A090101, 5300, 0, 1000)
        assert t.process_vnet(pkt, 1000) == impl.FORWARD
        os.write(fd, pkt)
        server.settimeout(5)
        r = server.recvfrom(100)
        server.setblocking(False)
    data, src = r
    got.append([data.decode(), src[0], src[1] == cport])
print(json.dumps({"got": got, "vnet_flags": first[0], "drops": t.drops(), "len": len(t),
                  "inpkts": t.dest_buffer()[impl.DEST_INPKTS]}))
"""


@pytest.mark.parametrize("offload", [False, True], ids=["full-csum", "needs-csum"])
@pytest.mark.parametrize("impl", [pytest.param("c", marks=pytest.mark.c_extension), "py"])
def test_drain_forwards_through_a_real_tun(impl: str, offload: bool) -> None:
    require_root()
    ns = f"fp{os.getpid()}x{next(_names)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", CHILD, impl, str(int(offload))],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)
    assert result["got"] == [[f"hello {i}", "10.9.0.1", True] for i in range(3)]
    assert result["len"] == 1
    assert result["inpkts"] == 3
    assert bool(result["vnet_flags"] & 1) is offload
    assert result["drops"]["DROP_TX"] == 0
