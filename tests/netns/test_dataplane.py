"""The VS-NAT data plane end to end: real kernels, real servers, real clients.

    client 10.0.1.100 --br-pub-- eth0 10.0.1.1 [director: lvsd, tun lvs0] eth1 192.168.1.1
                                  (answers ARP for VIP 10.0.1.5)          + nat_router .254
                                                                                |
                                            br-priv -- real1 .10, real2 .11, real3 .12

The director serves the thesis's lvs.cf (TCP 80 and 21, wlc, weights 2000/1000/1000)
plus a UDP service on port 9000, where each real runs a UDP echo. Every test runs
against the C fast path with the kernel offload and the Python twin on the TUN path
(tests/netns/conftest.py's PAIRED).
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from director.config import DirectorConfig, parse_config
from director.ops import client
from director.tools.demo import THESIS_CF, LabDirector, run_load
from lab.cluster import Lab, LabSpec
from lab.server import expected_digest
from tests.conftest import require_root
from tests.netns.conftest import PAIRED, DataPath, data_paths, unique_lab_name

pytestmark = pytest.mark.netns

VIP = "10.0.1.5"
UDP_PORT = 9000
LOAD_300_SEQUENTIAL = ("--count", "300", "--concurrency", "1")
UDP_ECHO = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    f"s.bind(('0.0.0.0', {UDP_PORT}))\n"
    "while True:\n"
    "    data, peer = s.recvfrom(65535)\n"
    "    s.sendto(data, peer)\n"
)
UDP_VIRTUAL = f"""
virtual udpecho {{
    address = {VIP}
    protocol = udp
    port = {UDP_PORT}
    scheduler = rr
    server real1 {{
        address = 192.168.1.10
    }}
}}
"""


def lab_config() -> DirectorConfig:
    return parse_config(THESIS_CF.read_text() + UDP_VIRTUAL, "thesis-lvs.cf+udp")


class Cluster:
    """A lab, its director and the helpers the tests share."""

    def __init__(self, lab: Lab, director: LabDirector, path: DataPath) -> None:
        self.lab = lab
        self.director = director
        self.path = path
        self.implementation = path.implementation

    def client(self, code: str, timeout: float = 60.0) -> str:
        """Run Python ``code`` in the client node; its stdout."""
        return self.lab.run("client", [sys.executable, "-c", code], timeout=timeout).stdout

    def drops(self) -> dict[str, int]:
        drops = self.director.status()["drops"]
        assert isinstance(drops, dict)
        return {str(k): int(v) for k, v in drops.items()}


def _state_dump(lab: Lab, node: str) -> str:
    cmds = [
        "ip -d link show",
        "ip addr show",
        "ip route show table all",
        "ip rule show",
        "ip neigh show proxy",
        "sysctl net.ipv4.ip_forward net.ipv4.conf.all.rp_filter "
        "net.ipv4.conf.eth0.proxy_arp net.ipv4.neigh.eth0.proxy_delay",
    ]
    out = []
    for cmd in cmds:
        out.append(lab.run(node, ["sh", "-c", cmd]).stdout)
    # Neighbour caches and link counters change with traffic; the rest must not.
    return "\n".join(out)


def wait_udp_real_probed_up(director: LabDirector, within: float = 60.0) -> None:
    """Poll (bounded) until nanny has seen the UDP service's real pass a probe."""
    deadline = time.monotonic() + within
    while True:
        health = director.status()["health"]
        assert isinstance(health, list)
        udp = [h for h in health if h["target"].startswith(f"UDP {VIP}:{UDP_PORT} ")]
        if udp and all(h["health"] == "up" for h in udp):
            return
        assert time.monotonic() < deadline, f"UDP real not probed up within {within}s: {udp}"
        time.sleep(0.1)


@pytest.fixture(scope="module", params=data_paths(PAIRED))
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    require_root()
    path: DataPath = request.param
    lab = Lab(LabSpec(), unique_lab_name())
    echoes: list[subprocess.Popen[bytes]] = []
    try:
        lab.up(reals=3)
        echoes += [lab.popen(real, [sys.executable, "-c", UDP_ECHO]) for real in lab.reals]
        before = _state_dump(lab, "director")
        director = LabDirector(lab, path.configure(lab_config()), env=path.env).start()
        try:
            path.check(director.status())
            # Probed up before any load: a real that has never passed a probe leaves at its
            # first failure, and the UDP probe's first try may meet a saturating download.
            wait_udp_real_probed_up(director)
            yield Cluster(lab, director, path)
        finally:
            assert director.stop() == 0, director.log()
        # After SIGTERM the director's namespace is exactly as before lvsd ran.
        assert _state_dump(lab, "director") == before
    finally:
        for proc in echoes:
            proc.kill()
            proc.wait()
        lab.down()


def test_requests_spread_as_wlc_says(cluster: Cluster) -> None:
    # One request at a time: each connection is closed (inactive) before the next is
    # scheduled, so wlc's choices are exact: weights 2000/1000/1000 give 2:1:1.
    done = cluster.lab.run(
        "client",
        [sys.executable, "-m", "lab.loadgen", f"http://{VIP}/", *LOAD_300_SEQUENTIAL],
        check=False,
    )
    assert '"failed": 0' in done.stdout, done.stdout
    assert '"by_real": {"real1": 150, "real2": 75, "real3": 75}' in done.stdout
    status = cluster.director.status()
    http = next(s for s in status["services"] if s["addr"] == f"{VIP}:80")
    assert http["conns"] >= 300


def test_concurrent_requests_all_answered(cluster: Cluster) -> None:
    result = run_load(cluster.lab, f"http://{VIP}/", 300)
    assert result["failed"] == 0
    assert set(result["by_real"]) == {"real1", "real2", "real3"}


def test_ping_to_the_vip_is_answered(cluster: Cluster) -> None:
    cluster.lab.run("client", ["ping", "-c", "3", "-i", "0.2", "-W", "2", VIP])


def _download(cluster: Cluster, size: int) -> None:
    out = cluster.lab.run(
        "client",
        ["sh", "-c", f"curl -sS --max-time 240 http://{VIP}/bytes/{size} | sha256sum"],
        timeout=300,
    ).stdout
    assert out.split()[0] == expected_digest(size)


def _big(cluster: Cluster) -> int:
    # The twin forwards each packet through Python; a smaller file keeps its run short.
    return 1 << 30 if cluster.implementation == "c" else 64 << 20


def test_large_download_arrives_intact(cluster: Cluster) -> None:
    _download(cluster, _big(cluster))


def test_udp_round_trip_and_fragmented_datagram_arrives_whole(cluster: Cluster) -> None:
    code = f"""
import hashlib, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(30)  # a bound, not an expectation: the answer ends the wait
s.connect(('{VIP}', {UDP_PORT}))
for size in (64, 4000):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    s.send(payload)
    got = s.recv(65535)
    print(size, len(got), got == payload)
"""
    before = cluster.director.status()["reassembly"]
    lines = cluster.client(code).split("\n")
    assert lines[:2] == ["64 64 True", "4000 4000 True"]
    # The 4000-byte datagram crossed the 1500-byte links in fragments both ways: lvsd
    # put each direction's fragments back together before rewriting it.
    assert cluster.director.status()["reassembly"] - before == 2


def test_icmp_frag_needed_from_a_real_reaches_the_client_translated(cluster: Cluster) -> None:
    # The client opens a UDP flow through the VIP; real1 (the rr service's only real)
    # answers it with a fragmentation-needed error quoting the packet it received.
    opener = f"""
import socket, struct, time
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
raw.settimeout(60)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('10.0.1.100', 40123))
s.sendto(b'hello', ('{VIP}', {UDP_PORT}))
print('sent', flush=True)
# Bounds, not expectations: the error ends the wait; the sender's scapy import alone can
# take seconds on a loaded machine.
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    pkt = raw.recv(65535)
    if pkt[20] == 3 and pkt[21] == 4:
        print(pkt.hex())
        break
"""
    sender = """
import sys
from scapy.all import IP, ICMP, UDP, Raw, send, conf
conf.verb = 0
inner = IP(src='10.0.1.100', dst='192.168.1.10', ttl=63) / UDP(sport=40123, dport=9000)
inner = inner / Raw(b'hello')
error = ICMP(type=3, code=4, nexthopmtu=1400)
send(IP(src='192.168.1.10', dst='10.0.1.100') / error / bytes(inner)[:28])
"""
    proc = cluster.lab.popen(
        "client",
        [sys.executable, "-c", opener],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "sent"
        # The error only translates once lvsd has the flow: wait for its connection (the
        # twin on a loaded machine may not have read the datagram yet).
        deadline = time.monotonic() + 30
        while not any(c["source"] == "10.0.1.100:40123" for c in connections(cluster.director)):
            assert time.monotonic() < deadline, "no connection for the client's datagram"
            time.sleep(0.05)
        cluster.lab.run("real1", [sys.executable, "-c", sender], timeout=60)
        out, _ = proc.communicate(timeout=90)
    finally:
        proc.kill()
        proc.communicate()
    assert out.strip(), "no fragmentation-needed error reached the client"
    pkt = bytes.fromhex(out.strip())
    assert socket.inet_ntoa(pkt[12:16]) == VIP  # outer source: the VIP, not the real
    inner = pkt[28:]
    assert socket.inet_ntoa(inner[12:16]) == "10.0.1.100"
    assert socket.inet_ntoa(inner[16:20]) == VIP  # the quoted packet as the client sent it
    assert struct.unpack("!HH", inner[20:24]) == (40123, UDP_PORT)
    assert struct.unpack("!H", pkt[26:28])[0] == 1400  # next-hop MTU kept
    assert _inet_checksum(pkt[20:]) == 0
    assert _inet_checksum(inner[:20]) == 0


def connections(director: LabDirector) -> list[dict[str, str]]:
    conns = client.request(director.socket_path, "connections")
    assert isinstance(conns, list)
    return conns


def _inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def test_malformed_packets_are_counted_by_reason_and_service_goes_on(cluster: Cluster) -> None:
    before = cluster.drops()
    # What the director's kernel forwards unchanged into the TUN: IP options, an
    # unknown protocol, a TCP header cut short, a TCP segment of no connection.
    code = f"""
from scapy.all import IP, IPOption_NOP, TCP, Raw, send, conf
conf.verb = 0
vip = '{VIP}'
send(IP(dst=vip, options=[IPOption_NOP()] * 4) / TCP(dport=80, flags='S'), count=3)
send(IP(dst=vip, proto=253) / Raw(b'x' * 20), count=4)
send(IP(dst=vip, proto=6) / Raw(b'\\x00' * 10), count=5)
send(IP(dst=vip) / TCP(sport=55555, dport=80, flags='A', seq=1, ack=1), count=6)
"""
    cluster.client(code)
    expected = {
        "DROP_IP_OPTIONS": 3,
        "DROP_UNKNOWN_PROTO": 4,
        "DROP_TRUNCATED": 5,
        "DROP_NO_CONN": 6,
    }
    # The sends above returned; the daemon counts each packet once it has read it.
    deadline = time.monotonic() + 10
    while True:
        after = cluster.drops()
        got = {k: after[k] - before.get(k, 0) for k in expected}
        if got == expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert got == expected
    result = run_load(cluster.lab, f"http://{VIP}/", 30)
    assert result["failed"] == 0


def test_download_intact_without_transmit_checksum_offload(cluster: Cluster) -> None:
    # veth hands packets over with partial checksums, which hides checksum bugs; with
    # transmit offload off on every lab link, every checksum on the wire is complete.
    for node in cluster.lab.nodes:
        links = cluster.lab.run(node, ["ls", "/sys/class/net"]).stdout.split()
        for link in links:
            if link.startswith(("eth", "br", "veth", "v")) and link != "lo":
                cluster.lab.run(node, ["ethtool", "-K", link, "tx", "off"], check=False)
    _download(cluster, _big(cluster))
    result = run_load(cluster.lab, f"http://{VIP}/", 50)
    assert result["failed"] == 0


def test_state_dump_helper_sees_a_change(cluster: Cluster) -> None:
    # The leftover check after SIGTERM compares dumps; prove a leftover would show.
    before = _state_dump(cluster.lab, "director")
    cluster.lab.run("director", ["ip", "rule", "add", "priority", "31000", "lookup", "main"])
    try:
        assert _state_dump(cluster.lab, "director") != before
    finally:
        cluster.lab.run("director", ["ip", "rule", "del", "priority", "31000"])
