"""Fragments through the director: a big ping to the VIP is answered, a SYN in fragments
with a hole is not reassembled into a connection.

    client 10.0.1.100 --br-pub-- [director: lvsd, tun lvs0] --br-priv-- real1..3
                                  VIP 10.0.1.5
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from director.config import parse_config
from director.tools.demo import LabDirector
from lab.cluster import Lab
from tests.netns.conftest import CROSSED, DataPath, data_paths
from tests.netns.test_nanny import config

pytestmark = pytest.mark.netns

VIP = "10.0.1.5"

# From the client: a raw IP socket sends three hand-made fragments of a SYN to VIP:80,
# [0,8) with MF, [16,24) last, [32,40) with MF, so bytes 8..16 never arrive.
HOLE_SYN = f"""
import socket, struct
from scapy.layers.inet import IP, TCP
syn = bytes(IP(src="10.0.1.100", dst="{VIP}") / TCP(sport=40000, dport=80, flags="S")
            / (b"x" * 20))[20:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for start, more in ((0, True), (16, False), (32, True)):
    frag = bytes(IP(src="10.0.1.100", dst="{VIP}", id=4321, proto=6,
                    flags="MF" if more else 0, frag=start // 8) / syn[start:start + 8])
    s.sendto(frag, ("{VIP}", 0))
print("sent")
"""


# In a real: print a line for every TCP segment from the client that arrives, for 20 s.
SNIFF = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
s.settimeout(0.2)
print("ready", flush=True)
end = time.monotonic() + 20
while time.monotonic() < end:
    try:
        data = s.recv(65535)
    except TimeoutError:
        continue
    if data[12:16] == bytes([10, 0, 1, 100]):
        print("segment", flush=True)
"""


@pytest.mark.parametrize("path", data_paths(CROSSED))
def test_a_3000_byte_ping_to_the_vip_is_answered(lab: Lab, path: DataPath) -> None:
    cfg = path.configure(parse_config(config(), "lvs.cf"))
    with LabDirector(lab, cfg, env=path.env) as director:
        path.check(director.status())
        done = lab.run(
            "client", ["ping", "-c", "3", "-W", "2", "-s", "3000", VIP], check=False, timeout=30
        )
        assert " 0% packet loss" in done.stdout, done.stdout + done.stderr
        assert "3008 bytes from 10.0.1.5" in done.stdout
        assert director.status()["echo_replies"] >= 3


def test_a_syn_in_fragments_with_a_hole_makes_no_connection(lab: Lab) -> None:
    with LabDirector(lab, parse_config(config(), "lvs.cf")) as director:
        sniffers = [
            lab.popen(real, [sys.executable, "-c", SNIFF], stdout=subprocess.PIPE, text=True)
            for real in lab.reals
        ]
        try:
            for sniffer in sniffers:
                assert sniffer.stdout is not None
                assert sniffer.stdout.readline() == "ready\n"
            done = lab.run("client", [sys.executable, "-c", HOLE_SYN], timeout=30)
            assert done.stdout == "sent\n"
            # The three fragments have reached the director once a later ping is answered.
            assert lab.ping("client", VIP, timeout=5)
            status = director.status()
        finally:
            for sniffer in sniffers:
                sniffer.terminate()
        seen = [sniffer.communicate(timeout=30)[0] for sniffer in sniffers]
        assert status["connections"] == 0
        assert status["decided"] == 0
        assert status["drops"]["fragment_beyond_end"] == 1
        assert seen == ["", "", ""]
