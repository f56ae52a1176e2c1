"""The peers of the data-plane benchmark: what each one sets up in the lab's director node.

Every peer serves the same two things on the same lab (client 10.0.1.100, director
10.0.1.1 / 192.168.1.1, real1 192.168.1.10): TCP port 80 (the real's HTTP server) and
TCP+UDP port 5201 (the real's iperf3 server), both with real1 as the only destination,
so every peer forwards to the same backend. ``start`` builds the peer in the director
namespace (the client's routing too, for the ``routing`` peer) and ``stop`` removes all
of it; :func:`namespace_state` lets the harness check that nothing was left behind.

* ``lvsd-c`` / ``lvsd-py``: ``lvsd run`` on the TUN path alone (``offload = 0``) with the
  C fast path / the Python twin (``DIRECTOR_NO_EXTENSIONS=1``); ready when it sends
  ``READY=1`` to ``NOTIFY_SOCKET``.
* ``lvsd-offload``: ``lvsd run``, C fast path, with the kernel offload (``offload = 1``,
  the default): established connections are forwarded by the tc program.
* ``lvsd-dr``: ``lvsd run`` (C fast path) with ``network = direct``: the director frames
  the client's packets to real1's MAC, and real1 (an LVS-DR real of the ``--mode
  direct`` lab: the VIP on ``lo``, a leg on the public segment) answers the client itself.
  TCP only: iperf3's UDP server answers from the address the kernel picks for the
  client, real1's public one, not the VIP, so its UDP handshake never completes.
* ``lvsd-tun``: the same with ``network = tunnel``: IPIP to real1, which decapsulates
  with ``lab.decap`` (the VIP also on its ``tunl0``). TCP only, as ``lvsd-dr``.
* ``nftables``: the kernel's NAT: the VIP as a local address on eth0, a prerouting
  ``dnat`` to real1, ``ip_forward=1`` and the reals' gateway 192.168.1.254 on eth1.
* ``routing``: the ceiling: plain forwarding, the client talks to real1's own address
  through a route via the director.
* ``haproxy``: HAProxy in ``mode tcp`` bound to the VIP (TCP only: it proxies no UDP).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Protocol

from director.ops import client
from lab.cluster import Lab

IPERF_PORT = 5201
HTTP_PORT = 80
START_TIMEOUT = 20.0
"""Seconds a peer may take to become ready."""
STOP_TIMEOUT = 10.0
"""Seconds a peer's process may take to exit after SIGTERM before it gets SIGKILL."""

_CLK_TCK = os.sysconf("SC_CLK_TCK")


class PeerError(RuntimeError):
    """A peer could not be started or stopped cleanly."""


def namespace_state(lab: Lab, node: str) -> str:
    """Addresses, routes, rules, nftables ruleset and forwarding flag of ``node``, as text."""
    parts = [
        lab.run(node, ["ip", "-br", "addr"]).stdout,
        lab.run(node, ["ip", "route", "show", "table", "all"]).stdout,
        lab.run(node, ["ip", "rule"]).stdout,
        lab.run(node, ["ip", "neigh", "show", "proxy"]).stdout,
        lab.run(node, ["nft", "list", "ruleset"]).stdout,
        lab.run(node, ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout,
    ]
    return "\n".join(parts)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_busy_seconds() -> float:
    """The whole machine's busy time from /proc/stat: user, nice, system, irq and softirq
    summed over every CPU, in seconds (idle, iowait and steal left out). Counts the
    director's work wherever it runs, in a process or in the kernel, and the client's and
    the real's too: every peer pays the same load generator and server."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[1:8])
    return (user + nice + system + irq + softirq) / _CLK_TCK


def softirq_seconds() -> float:
    """Machine-wide softirq time from /proc/stat, seconds summed over every CPU.

    Kernel forwarding and NAT run in softirq context on whichever CPU the packet is on,
    so this includes the client's transmit and the real's receive work too: an upper bound
    on the director's share.
    """
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[7]) / _CLK_TCK


class Peer(Protocol):
    """One way of getting the client's traffic to real1."""

    name: str
    udp: bool
    """Whether the peer forwards UDP (HAProxy does not)."""

    def target(self, lab: Lab) -> IPv4Address:
        """The address the client connects to: the VIP, or real1's own for ``routing``."""
        ...

    def start(self, lab: Lab, workdir: Path) -> None: ...

    def stop(self, lab: Lab) -> None: ...

    def cpu_seconds(self) -> float:
        """The CPU time attributed to the peer: its process's, or the machine's softirq time."""
        ...

    def detail(self) -> str:
        """A short note for the results table (e.g. which fast path lvsd reported)."""
        ...


def _kernel_forwarding(lab: Lab, on: bool) -> None:
    """ip_forward and the reals' gateway address (nat_router) on the director's eth1."""
    gateway = f"{lab.spec.nat_router}/{lab.spec.private_net.prefixlen}"
    if on:
        lab.run("director", ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        lab.run("director", ["ip", "addr", "add", gateway, "dev", "eth1"])
    else:
        lab.run("director", ["ip", "addr", "del", gateway, "dev", "eth1"], check=False)
        lab.run("director", ["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"])


def _tail(path: Path, limit: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError as e:
        return str(e)


def _stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def wait_accepting(lab: Lab, node: str, addr: IPv4Address, port: int, timeout: float) -> None:
    """Poll a TCP connect from ``node`` to ``addr:port`` until it is accepted."""
    deadline = time.monotonic() + timeout
    while True:
        with lab.socket(node) as s:
            s.settimeout(1.0)
            if s.connect_ex((str(addr), port)) == 0:
                return
        if time.monotonic() > deadline:
            raise PeerError(f"{node}: {addr}:{port} does not accept after {timeout:.0f} s")
        time.sleep(0.05)


LVS_CF = """\
primary = {primary}
network = {network}
offload = {offload}
nat_router = {nat_router} eth1:1
control_socket = {control}
# One probe an hour, and an hour of failures before a removal: health checks stay out of
# the measurement (a loaded real may miss a 10 s probe). iperf3 answers no UDP probe (its
# UDP socket exists only during a test, so a datagram gets port unreachable), and a real
# never probed up leaves at its first failure: the UDP service's probe is /bin/true.

virtual bench-tcp {{
    address = {vip}
    protocol = tcp
    port = {http},{iperf}
    scheduler = rr
    timeout = 3600
    probe_interval = 3600
    server real1 {{
        address = {real}
        weight = 1
    }}
}}

virtual bench-udp {{
    address = {vip}
    protocol = udp
    port = {iperf}
    scheduler = rr
    timeout = 3600
    probe_interval = 3600
    send_program = /bin/true
    server real1 {{
        address = {real}
        weight = 1
    }}
}}
"""


@dataclass(slots=True)
class LvsdPeer:
    """``lvsd run`` in the director node, C fast path or Python twin."""

    python_twin: bool = False
    udp: bool = True
    direct: bool = False
    tunnel: bool = False
    offload: bool = False
    name: str = field(init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _control: Path | None = field(default=None, init=False)
    _implementation: str = field(default="?", init=False)
    _mode: str = field(default="?", init=False)

    def __post_init__(self) -> None:
        self.name = "lvsd-py" if self.python_twin else "lvsd-c"
        if self.offload:
            self.name = "lvsd-offload"
        if self.direct:
            self.name = "lvsd-dr"
            self.udp = False
        if self.tunnel:
            self.name = "lvsd-tun"
            self.udp = False

    def target(self, lab: Lab) -> IPv4Address:
        return lab.spec.vip

    def start(self, lab: Lab, workdir: Path) -> None:
        spec = lab.spec
        self._control = workdir / "lvsd.sock"
        cf = workdir / "lvs.cf"
        cf.write_text(
            LVS_CF.format(
                primary=spec.primary,
                network="direct" if self.direct else "tunnel" if self.tunnel else "nat",
                offload=int(self.offload),
                nat_router=spec.nat_router,
                control=self._control,
                vip=spec.vip,
                real=spec.real_address(1),
                http=HTTP_PORT,
                iperf=IPERF_PORT,
            )
        )
        notify_path = workdir / "notify.sock"
        env = dict(os.environ, NOTIFY_SOCKET=str(notify_path))
        env.pop("DIRECTOR_NO_EXTENSIONS", None)
        if self.python_twin:
            env["DIRECTOR_NO_EXTENSIONS"] = "1"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(notify_path))
            with open(workdir / f"{self.name}.log", "ab") as log:
                self._proc = lab.popen(
                    "director",
                    [sys.executable, "-m", "director", "run", "-c", str(cf)],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if self._proc.poll() is not None:
                    raise PeerError(
                        f"{self.name}: lvsd exited with {self._proc.returncode}; "
                        f"log: {_tail(workdir / f'{self.name}.log')}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PeerError(f"{self.name}: no READY=1 after {START_TIMEOUT:.0f} s")
                notify.settimeout(min(left, 0.5))
                try:
                    msg = notify.recv(4096).decode()
                except TimeoutError:
                    continue
                if "READY=1" in msg.splitlines():
                    break
        status = self.status()
        self._implementation = str(status.get("fastpath", "?"))
        offload = status.get("offload")
        self._mode = str(offload.get("mode", "?")) if isinstance(offload, dict) else "?"
        if self.offload and self._mode != "tun+offload":
            raise PeerError(f"{self.name}: the offload did not start: {offload}")

    def status(self) -> dict[str, object]:
        """The daemon's ``status`` answer from its control socket."""
        assert self._control is not None
        result = client.request(self._control, "status")
        assert isinstance(result, dict)
        return result

    def stop(self, lab: Lab) -> None:
        _stop_process(self._proc)
        self._proc = None

    def cpu_seconds(self) -> float:
        assert self._proc is not None
        if self.offload:
            # The forwarding runs in the kernel's softirq: count it, as for nftables.
            return process_cpu_seconds(self._proc.pid) + softirq_seconds()
        return process_cpu_seconds(self._proc.pid)

    def detail(self) -> str:
        if self.direct:
            return f"direct routing, fast path {self._implementation}; no UDP"
        if self.tunnel:
            return f"IPIP tunnel, fast path {self._implementation}; no UDP"
        return f"fast path {self._implementation}, {self._mode}"


@dataclass(slots=True)
class NftablesPeer:
    """The kernel's own NAT: nftables DNAT of VIP:port to real1, conntrack un-NATs replies."""

    name: str = "nftables"
    udp: bool = True

    def target(self, lab: Lab) -> IPv4Address:
        return lab.spec.vip

    def start(self, lab: Lab, workdir: Path) -> None:
        spec = lab.spec
        real = spec.real_address(1)
        tcp_ports = f"{{ {HTTP_PORT}, {IPERF_PORT} }}"
        ruleset = workdir / "nat.nft"
        ruleset.write_text(
            "table ip lvsbench {\n"
            "    chain prerouting {\n"
            "        type nat hook prerouting priority dstnat; policy accept;\n"
            f"        ip daddr {spec.vip} tcp dport {tcp_ports} dnat to {real}\n"
            f"        ip daddr {spec.vip} udp dport {IPERF_PORT} dnat to {real}\n"
            "    }\n"
            "}\n"
        )
        lab.run("director", ["ip", "addr", "add", f"{spec.vip}/32", "dev", "eth0"])
        _kernel_forwarding(lab, True)
        lab.run("director", ["nft", "-f", str(ruleset)])

    def stop(self, lab: Lab) -> None:
        lab.run("director", ["nft", "delete", "table", "ip", "lvsbench"], check=False)
        lab.run("director", ["ip", "addr", "del", f"{lab.spec.vip}/32", "dev", "eth0"], check=False)
        _kernel_forwarding(lab, False)

    def cpu_seconds(self) -> float:
        return softirq_seconds()

    def detail(self) -> str:
        return "prerouting dnat; CPU = machine softirq"


@dataclass(slots=True)
class RoutingPeer:
    """Plain forwarding, no translation: the client reaches real1's address directly."""

    name: str = "routing"
    udp: bool = True

    def target(self, lab: Lab) -> IPv4Address:
        return lab.spec.real_address(1)

    def _route(self, lab: Lab) -> list[str]:
        return [str(lab.spec.private_net), "via", str(lab.spec.primary), "dev", "eth0"]

    def start(self, lab: Lab, workdir: Path) -> None:
        _kernel_forwarding(lab, True)
        lab.run("client", ["ip", "route", "add", *self._route(lab)])

    def stop(self, lab: Lab) -> None:
        lab.run("client", ["ip", "route", "del", *self._route(lab)], check=False)
        _kernel_forwarding(lab, False)

    def cpu_seconds(self) -> float:
        return softirq_seconds()

    def detail(self) -> str:
        return "ceiling: no NAT; CPU = machine softirq"


HAPROXY_CFG = """\
global
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend web
    bind {vip}:{http}
    default_backend web
backend web
    server real1 {real}:{http}
frontend iperf
    bind {vip}:{iperf}
    default_backend iperf
backend iperf
    server real1 {real}:{iperf}
"""


@dataclass(slots=True)
class HaproxyPeer:
    """HAProxy in ``mode tcp`` on the VIP: a proxy that terminates and re-opens each connection."""

    name: str = "haproxy"
    udp: bool = False
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def target(self, lab: Lab) -> IPv4Address:
        return lab.spec.vip

    def start(self, lab: Lab, workdir: Path) -> None:
        spec = lab.spec
        cfg = workdir / "haproxy.cfg"
        cfg.write_text(
            HAPROXY_CFG.format(
                vip=spec.vip, real=spec.real_address(1), http=HTTP_PORT, iperf=IPERF_PORT
            )
        )
        lab.run("director", ["ip", "addr", "add", f"{spec.vip}/32", "dev", "eth0"])
        with open(workdir / "haproxy.log", "ab") as log:
            self._proc = lab.popen(
                "director",
                ["haproxy", "-db", "-f", str(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_accepting(lab, "client", spec.vip, HTTP_PORT, START_TIMEOUT)
        except PeerError as e:
            raise PeerError(f"{self.name}: {e}; log: {_tail(workdir / 'haproxy.log')}") from e

    def stop(self, lab: Lab) -> None:
        _stop_process(self._proc)
        self._proc = None
        with contextlib.suppress(subprocess.CalledProcessError):
            lab.run("director", ["ip", "addr", "del", f"{lab.spec.vip}/32", "dev", "eth0"])

    def cpu_seconds(self) -> float:
        assert self._proc is not None
        return process_cpu_seconds(self._proc.pid)

    def detail(self) -> str:
        return "mode tcp; no UDP"


def all_peers() -> list[Peer]:
    """Every peer, in the order the table shows them."""
    return [
        LvsdPeer(),
        LvsdPeer(python_twin=True),
        LvsdPeer(offload=True),
        LvsdPeer(direct=True),
        LvsdPeer(tunnel=True),
        NftablesPeer(),
        RoutingPeer(),
        HaproxyPeer(),
    ]
