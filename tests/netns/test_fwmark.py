"""Firewall-mark services end to end: the operator's nft rule marks, lvsd schedules by mark.

    client 10.0.1.100 --br-pub-- eth0 10.0.1.1 [director: lvsd] eth1 192.168.1.1
                                  nft: ip daddr VIP tcp dport {80, 8080} mark set 1
                                  unmarked -> lvs0, mark 1 -> lvs0m1 (rule 1002, table 470)
                                                                   |
                                  br-priv -- real1 .10, real2 .11, real3 .12 (HTTP on 80, 8080)

The director serves one virtual, ``fwmark = 1``, persistent, rr over three reals: the
client's connections to both ports must all land on one real (the <IPPROTO_IP, caddr,
0, fwmark, 0> template), which rr alone would never do. After SIGTERM the director's
namespace is exactly as before lvsd ran. Runs against the C fast path and the twin.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from director import control
from director.config import parse_config
from director.demo import LabDirector
from director.lab import Lab
from tests.netns.conftest import LabFactory
from tests.netns.test_dataplane import _state_dump

pytestmark = pytest.mark.netns

VIP = "10.0.1.5"
PORTS = (80, 8080)
REQUESTS_PER_PORT = 6
FWMARK_CF = f"""\
network = nat
nat_router = 192.168.1.254 eth1:1

virtual marked {{
    address = {VIP} eth0:1
    fwmark = 1
    port = 80
    persistent = 300
    scheduler = rr
    server real1 {{
        address = 192.168.1.10
    }}
    server real2 {{
        address = 192.168.1.11
    }}
    server real3 {{
        address = 192.168.1.12
    }}
}}
"""
MARK_RULES = (
    "add table ip operator",
    "add chain ip operator pre { type filter hook prerouting priority mangle; }",
    f"add rule ip operator pre ip daddr {VIP} tcp dport {{ {PORTS[0]}, {PORTS[1]} }} "
    "meta mark set 1",
)


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


@pytest.mark.parametrize("implementation", ["c", "py"])
@pytest.mark.parametrize("persistent", [300, 0])
def test_marked_ports_share_one_persistent_real(
    lab_factory: LabFactory, implementation: str, persistent: int
) -> None:
    """Persistent: every connection on either port lands on one real. Not persistent: rr
    spreads them. Either way a server without ``port`` gets each packet's own port."""
    lab = lab_factory(reals=3)
    for rule in MARK_RULES:
        lab.run("director", ["nft", rule])
    before = _state_dump(lab, "director")
    env = {"DIRECTOR_NO_EXTENSIONS": "1"} if implementation == "py" else {}
    text = FWMARK_CF.replace("    persistent = 300\n", f"    persistent = {persistent}\n")
    cfg = parse_config(text, "fwmark-lvs.cf")
    servers: list[subprocess.Popen[str]] = []
    director = LabDirector(lab, cfg, env=env).start()
    try:
        assert director.status()["fastpath"] == implementation, director.log()
        for real in lab.reals:
            argv = [sys.executable, "-m", "director.labserver", "--name", real]
            proc = lab.popen(
                real, [*argv, "--port", str(PORTS[1])], stderr=subprocess.PIPE, text=True
            )
            servers.append(proc)
            assert proc.stderr is not None
            line = proc.stderr.readline()  # written once the socket listens
            assert "listening on" in line, line
        answered = [_answered_by(lab, port) for _ in range(REQUESTS_PER_PORT) for port in PORTS]
        assert len(set(answered)) == (1 if persistent else len(lab.reals)), answered
        conns = control.request(director.socket_path, "connections")
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
        with pytest.raises(control.ControlError, match=r"FWM 2: .*\(steered: 1\)"):
            control.request(director.socket_path, "add_service", proto="tcp", fwmark=2)
    finally:
        for proc in servers:
            proc.kill()
            proc.communicate()
        assert director.stop() == 0, director.log()
    # No TUN, rule, route or table entry of lvsd is left.
    assert _state_dump(lab, "director") == before
