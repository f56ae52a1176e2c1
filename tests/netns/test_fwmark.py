"""Firewall-mark services end to end: the operator's nft rule marks, lvsd schedules by mark.

    client 10.0.1.100 --br-pub-- eth0 10.0.1.1 [director: lvsd] eth1 192.168.1.1
                                  nft: ip daddr VIP tcp dport {80, 8080} mark set 1
                                  unmarked -> lvs0, mark 1 -> lvs0m1 (rule 1002, table 470)
                                                                   |
                                  br-priv -- real1 .10, real2 .11, real3 .12 (HTTP on 80, 8080)

The director serves one virtual, ``fwmark = 1``, rr over three reals without a port of
their own. Persistent, the client's connections to both ports must all land on one real
(the <IPPROTO_IP, caddr, 0, fwmark, 0> template), which rr alone would never do; not
persistent, rr spreads them. Either way each connection keeps the client's port. After
SIGTERM the director's namespace is exactly as before lvsd ran. Runs against the C fast
path and the twin. ``fwmark_virtual`` and ``mark_rules`` serve test_failover too.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from director.config import parse_config
from director.ops import client
from director.tools.demo import LabDirector
from lab.cluster import Lab
from tests.netns.conftest import PAIRED, DataPath, LabFactory, data_paths
from tests.netns.test_dataplane import _state_dump

pytestmark = pytest.mark.netns

VIP = "10.0.1.5"
PORTS = (80, 8080)
REQUESTS_PER_PORT = 6


def fwmark_virtual(address: str, port: int, persistent: int = 300) -> str:
    """A ``fwmark = 1`` virtual, rr over real1..real3, which have no port of their own."""
    servers = "".join(
        f"    server real{i} {{\n        address = 192.168.1.{9 + i}\n    }}\n" for i in (1, 2, 3)
    )
    return (
        f"virtual marked {{\n    address = {address}\n    fwmark = 1\n    port = {port}\n"
        f"    persistent = {persistent}\n    scheduler = rr\n{servers}}}\n"
    )


def mark_rules(ports: tuple[int, ...]) -> tuple[str, ...]:
    """nft commands (one ``nft`` call each) marking TCP to the VIP on ``ports`` with 1."""
    return (
        "add table ip operator",
        "add chain ip operator pre { type filter hook prerouting priority mangle; }",
        f"add rule ip operator pre ip daddr {VIP} tcp dport {{ {', '.join(map(str, ports))} }} "
        "meta mark set 1",
    )


NAT_GLOBALS = "network = nat\nnat_router = 192.168.1.254 eth1:1\n\n"


def _answered_by(lab: Lab, port: int) -> str:
    """One HTTP request from the client to VIP:port on a new connection; the real's name."""
    conn = lab.http("client", VIP, port)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200
        real = response.getheader("X-Real")
        assert real is not None
        assert body == f"{real}\n".encode()
        return real
    finally:
        conn.close()


def _sysfs(lab: Lab, path: str) -> str:
    return lab.run("director", ["cat", path]).stdout.strip()


@pytest.mark.parametrize("path", data_paths(PAIRED))
@pytest.mark.parametrize("persistent", [300, 0])
def test_marked_ports_share_a_persistent_real_and_keep_their_port(
    lab_factory: LabFactory, path: DataPath, persistent: int
) -> None:
    """Persistent: every connection on either port lands on one real. Not persistent: rr
    spreads them. Either way a server without ``port`` gets each packet's own port."""
    lab = lab_factory(reals=3)
    for rule in mark_rules(PORTS):
        lab.run("director", ["nft", rule])
    before = _state_dump(lab, "director")
    text = NAT_GLOBALS + fwmark_virtual(f"{VIP} eth0:1", PORTS[0], persistent)
    cfg = path.configure(parse_config(text, "fwmark-lvs.cf"))
    servers: list[subprocess.Popen[str]] = []
    director = LabDirector(lab, cfg, env=path.env).start()
    try:
        path.check(director.status())
        for real in lab.reals:
            argv = [sys.executable, "-m", "lab.server", "--name", real]
            proc = lab.popen(
                real, [*argv, "--port", str(PORTS[1])], stderr=subprocess.PIPE, text=True
            )
            servers.append(proc)
            assert proc.stderr is not None
            line = proc.stderr.readline()  # written once the socket listens
            assert "listening on" in line, line
        answered = [_answered_by(lab, port) for _ in range(REQUESTS_PER_PORT) for port in PORTS]
        assert len(set(answered)) == (1 if persistent else len(lab.reals)), answered
        conns = client.request(director.socket_path, "connections")
        assert isinstance(conns, list)
        ports = {(c["virtual"], c["destination"].rsplit(":", 1)[1]) for c in conns}
        client_ports = {(f"{VIP}:{p}", str(p)) for p in PORTS}
        assert client_ports <= ports, ports
        # The SYNs came through the mark's TUN, not the address TUN.
        assert int(_sysfs(lab, "/sys/class/net/lvs0m1/statistics/tx_packets")) > 0
        status = director.status()
        (svc,) = status["services"]
        assert (svc["fwmark"], svc["persistent"]) == (1, persistent)
        assert svc["conns"] == REQUESTS_PER_PORT * len(PORTS)
        assert status["no_service"] == 0
        # No TUN steers mark 2 here: lvsadm -A -f 2 is refused, naming the mark and why.
        with pytest.raises(client.ControlError, match=r"FWM 2: .*\(steered: 1\)"):
            client.request(director.socket_path, "add_service", proto="tcp", fwmark=2)
    finally:
        for proc in servers:
            proc.kill()
            proc.communicate()
        assert director.stop() == 0, director.log()
    # No TUN, rule, route or table entry of lvsd is left.
    assert _state_dump(lab, "director") == before
