"""An IPIP decapsulator for a lab real server whose kernel has no ipip module.

``python -m lab.decap --vip 10.0.1.5`` runs inside an LVS-TUN real's namespace. It opens a
TUN device ``tunl0`` (IFF_TUN, no packet information), gives it the VIP and brings it up
with ``rp_filter`` off, then reads every IP-in-IP packet (IP protocol 4) from a raw socket
and writes the inner packet to ``tunl0``: the kernel receives it on ``tunl0`` exactly as
its own ipip device would have handed it over, and the real answers from the VIP. It
prints ``ready`` once it listens. Standard library only; production reals use the
kernel's ``ipip`` device (``ip link add tunl0 type ipip``) instead.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Sequence

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IPPROTO_IPIP = 4


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.decap", description=__doc__)
    p.add_argument("--vip", required=True, help="the VIP the real serves")
    p.add_argument("--dev", default="tunl0", help="the TUN device to create (default tunl0)")
    args = p.parse_args(argv)
    tun = open_tun(args.dev)
    for cmd in (
        ["ip", "addr", "add", f"{args.vip}/32", "dev", args.dev],
        ["ip", "link", "set", args.dev, "up"],
        ["sysctl", "-q", "-w", f"net.ipv4.conf.{args.dev}.rp_filter=0"],
    ):
        subprocess.run(cmd, check=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
    print("ready", flush=True)
    while True:
        packet = sock.recv(65535)
        if len(packet) < 40 or packet[0] >> 4 != 4:
            continue
        inner = packet[(packet[0] & 15) * 4 :]
        if inner[0] >> 4 == 4:
            try:
                os.write(tun, inner)
            except OSError as e:
                print(f"decap: {e}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
