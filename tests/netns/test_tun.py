"""The TUN device in a namespace: packets out of the kernel, packets into it, offload metadata.

    namespace lvsd-tt<pid>-N
      tun0 198.51.100.1/24   <- a UDP socket sends to 198.51.100.7: the packet is read from the fd
                             -> a packet written to the fd from 198.51.100.7 reaches a socket

The TUN is opened by ``roundtrip_main`` in a child process inside the namespace;
it prints one JSON object that the tests check. One fast path is enough: the TUN's
own reads and writes are tested, no connection table is involved.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from director.dataplane.tun import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_UDP_L4,
    VNET_HDR_LEN,
    VnetHdr,
    open_tun,
)
from director.errors import TunError
from tests.conftest import require_root

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 10.0
UDP_SEGMENT = 103
_serial = itertools.count()


@pytest.fixture
def netns() -> Iterator[str]:
    require_root()
    name = f"lvsd-tt{os.getpid()}-{next(_serial)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=TIMEOUT_S)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=TIMEOUT_S)


def run_in(ns: str, *args: str) -> dict[str, Any]:
    code = "from tests.netns.test_tun import roundtrip_main; roundtrip_main()"
    done = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S * 3,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4/UDP packet with both checksums computed in full."""

    def fold(data: bytes) -> int:
        if len(data) % 2:
            data += b"\0"
        total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return ~total & 0xFFFF

    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    ulen = 8 + len(payload)
    pseudo = s + d + struct.pack("!BBH", 0, socket.IPPROTO_UDP, ulen)
    udp = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    ucsum = fold(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", ucsum) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 1, 0, 64, socket.IPPROTO_UDP, 0, s, d)
    ip = ip[:10] + struct.pack("!H", fold(ip)) + ip[12:]
    return ip + udp


def test_read_and_write_through_the_tun(netns: str) -> None:
    r = run_in(netns, "roundtrip")
    assert r["name"] == "tun0"
    assert {"csum", "tso4", "tso6"} <= set(r["offloads"])

    # Out of the kernel: the datagram, with its UDP checksum left partial for us.
    out = bytes.fromhex(r["read"])
    hdr = VnetHdr.unpack(out)
    ip = out[VNET_HDR_LEN:]
    assert ip[:1] == b"\x45"
    assert ip[12:20] == socket.inet_aton("198.51.100.1") + socket.inet_aton("198.51.100.7")
    assert ip.endswith(b"from the stack")
    assert hdr.gso_type == VIRTIO_NET_HDR_GSO_NONE
    assert hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM
    assert (hdr.csum_start, hdr.csum_offset) == (20, 6)

    # Into the kernel: a written packet reached the bound socket.
    assert r["received"] == {"payload": "into the stack", "from": ["198.51.100.7", 4000]}


def test_udp_segmentation_offload_hands_over_one_super_packet(netns: str) -> None:
    r = run_in(netns, "uso")
    reads = [bytes.fromhex(x) for x in r["reads"]]
    if "uso4" not in r["offloads"]:
        # Kernel before 6.2: it segments for us.
        assert len(reads) == 4
        return
    assert len(reads) == 1
    hdr = VnetHdr.unpack(reads[0])
    assert hdr.gso_type == VIRTIO_NET_HDR_GSO_UDP_L4
    assert hdr.gso_size == 1000
    assert len(reads[0]) == VNET_HDR_LEN + 20 + 8 + 4000


def test_open_errors_name_the_device_and_errno(netns: str) -> None:
    r = run_in(netns, "errors")
    assert r["busy"] == "tun tun0: TUNSETIFF 0x5001: EBUSY (Device or resource busy)"
    assert r["no_vnet"] == "ValueError"


def test_vnet_hdr_round_trips() -> None:
    hdr = VnetHdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4, 28, 1000, 20, 6)
    assert len(hdr.pack()) == VNET_HDR_LEN
    assert VnetHdr.unpack(hdr.pack() + b"payload") == hdr
    with pytest.raises(ValueError, match="need 10 bytes, got 9"):
        VnetHdr.unpack(bytes(9))


# --- code run inside the namespace -----------------------------------------------------------


def _read(fd: int, dst: str, max_reads: int = 1) -> list[bytes]:
    want = socket.inet_aton(dst)
    got: list[bytes] = []
    for _ in range(64):
        ready, _, _ = select.select([fd], [], [], 1.0 if got else TIMEOUT_S)
        if not ready:
            break
        frame = os.read(fd, 65536 + VNET_HDR_LEN)
        if frame[VNET_HDR_LEN + 16 : VNET_HDR_LEN + 20] == want:
            got.append(frame)
            if len(got) == max_reads:
                break
    return got


def _bring_up(ifindex: int) -> None:
    with IPRoute() as ipr:
        ipr.link("set", index=1, state="up")
        ipr.link("set", index=ifindex, state="up")
        ipr.addr("add", index=ifindex, address="198.51.100.1", prefixlen=24)


def roundtrip_main() -> None:
    """Child side: run one scenario named in argv[1], print its observations as JSON."""
    result: dict[str, Any] = {}
    with open_tun("tun0") as tun:
        result |= {"name": tun.name, "offloads": sorted(tun.offloads)}
        _bring_up(tun.ifindex)
        match sys.argv[1]:
            case "roundtrip":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.sendto(b"from the stack", ("198.51.100.7", 9))
                result["read"] = _read(tun.fd, "198.51.100.7")[0].hex()
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind(("198.51.100.1", 5000))
                    s.settimeout(TIMEOUT_S)
                    packet = ipv4_udp("198.51.100.7", "198.51.100.1", 4000, 5000, b"into the stack")
                    os.write(tun.fd, VnetHdr().pack() + packet)
                    payload, peer = s.recvfrom(100)
                result["received"] = {"payload": payload.decode(), "from": list(peer)}
            case "uso":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, 1000)
                    s.sendto(bytes(4000), ("198.51.100.7", 9))
                result["reads"] = [f.hex() for f in _read(tun.fd, "198.51.100.7", 4)]
            case "errors":
                try:
                    open_tun("tun0")
                except TunError as e:
                    result["busy"] = str(e)
                try:
                    open_tun("tun1", vnet_hdr=False)
                except ValueError as e:
                    result["no_vnet"] = type(e).__name__
    print(json.dumps(result))
