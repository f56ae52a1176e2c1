"""The network-namespace lab: the thesis's VS-NAT cluster built from namespaces, veths and bridges.

Topology (defaults of :class:`LabSpec`; every node is a namespace ``lvsd-<lab>-<node>``)::

                         client  eth0 10.0.1.100/24   (no route to 192.168.1.0/24)
                              |
   sw:  [ br-pub ] ---- director eth0 10.0.1.1/24 ---- backup eth0 10.0.1.2/24
        [ br-priv] ---- director eth1 192.168.1.1/24 -- backup eth1 192.168.1.2/24
              |
        real1 eth0 192.168.1.10/24  real2 .11  real3 .12 ...   default via 192.168.1.254

With ``mode = "direct"`` (``lvsd lab up --mode direct``) the reals are LVS-DR reals: each
also has ``eth1`` on the public segment (real1 10.0.1.10, real2 .11, ...), holds the VIP on
``lo`` with ``arp_ignore=1`` and ``arp_announce=2`` (so only the director answers ARP for
it), has ``rp_filter`` off (a client's packet arrives on eth0, its replies leave by eth1)
and no default route: a reply, from the VIP, goes straight to the client on the public
segment, never through the director. The director reaches them on the private segment,
where it frames the client's packets to their MACs.

``sw`` holds the two bridges and no address, so nothing is routed between the segments;
every other node's interface is one end of a veth whose peer is a port of a bridge in
``sw``. The VIP (10.0.1.5) and the floating ``nat_router`` (192.168.1.254) are configured
nowhere: the director daemon adds them. The root namespace is never modified: veths are
created inside ``sw`` with their peer placed straight into the node's namespace.

Real servers run ``python -m lab.server`` (or nginx with ``nginx=True``; plus vsftpd
with ``ftp=True``, and with ``sshd=True`` OpenSSH's sshd, key-based, reporting the
real's own load average: ``lab.sshd``, ``lab.loadmeter``), detached, logging under
``/run/lvsd-lab/<lab>/``. :meth:`Lab.down` removes a lab, also one left half-built by a
crash: it finds the namespaces by name and ends only the processes inside them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import http.client
import itertools
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from types import TracebackType
from typing import Any

from pyroute2 import IPRoute, netns

from lab import sshd as lab_sshd
from lab.errors import LabError

RUN_ROOT = Path("/run/lvsd-lab")
"""Per-lab logs and server configs live in ``RUN_ROOT/<lab>/``."""

NETNS_DIR = Path("/run/netns")
NS_PREFIX = "lvsd-"
PUBLIC_BRIDGE = "br-pub"
PRIVATE_BRIDGE = "br-priv"

_LAB_NAME = re.compile(r"[a-z0-9]{1,16}")
_NODE_NAME = re.compile(r"sw|client|director|backup|router|director[1-9]|real([1-9][0-9]*)")
_NODE_ORDER = {"sw": 0, "client": 1, "director": 2, "backup": 3, "router": 4}
# ``lab.router``'s scale-out shape adds ``router`` and ``director1``..``director9``.

SERVER_START_TIMEOUT = 10.0
"""Seconds ``up`` waits for each real's server to accept a connection."""

STOP_TIMEOUT = 5.0
"""Seconds ``down`` waits after SIGTERM before it sends SIGKILL."""

LAB_MODES = ("nat", "direct", "tunnel")
"""How ``up`` prepares the reals: VS-NAT reals, LVS-DR reals (``--mode direct``) or LVS-TUN
reals (``--mode tunnel``)."""

DECAP_READY_TIMEOUT = 10.0
"""Seconds ``up`` waits for a tunnel real's decapsulator to say it is ready."""

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True, slots=True)
class LabSpec:
    """The lab's addressing plan; the defaults are the thesis's cluster (chapter 6)."""

    # ipaddress objects are immutable, so sharing one default instance is safe (RUF009).

    public_net: IPv4Network = IPv4Network("10.0.1.0/24")  # noqa: RUF009
    private_net: IPv4Network = IPv4Network("192.168.1.0/24")  # noqa: RUF009
    vip: IPv4Address = IPv4Address("10.0.1.5")  # noqa: RUF009
    client: IPv4Address = IPv4Address("10.0.1.100")  # noqa: RUF009
    primary: IPv4Address = IPv4Address("10.0.1.1")  # noqa: RUF009
    primary_private: IPv4Address = IPv4Address("192.168.1.1")  # noqa: RUF009
    backup: IPv4Address = IPv4Address("10.0.1.2")  # noqa: RUF009
    backup_private: IPv4Address = IPv4Address("192.168.1.2")  # noqa: RUF009
    nat_router: IPv4Address = IPv4Address("192.168.1.254")  # noqa: RUF009
    first_real: IPv4Address = IPv4Address("192.168.1.10")  # noqa: RUF009
    http_port: int = 80
    mode: str = "nat"  # "nat" or "direct": how the reals are prepared
    first_public_real: IPv4Address = IPv4Address("10.0.1.10")  # noqa: RUF009  (direct)

    def __post_init__(self) -> None:
        if self.mode not in LAB_MODES:
            raise LabError(
                f"LabSpec.mode: must be one of {', '.join(LAB_MODES)}, got {self.mode!r}"
            )
        for attr in ("vip", "client", "primary", "backup", "first_public_real"):
            if getattr(self, attr) not in self.public_net:
                raise LabError(
                    f"LabSpec.{attr}: must be in {self.public_net}, got {getattr(self, attr)}"
                )
        for attr in ("primary_private", "backup_private", "nat_router", "first_real"):
            if getattr(self, attr) not in self.private_net:
                raise LabError(
                    f"LabSpec.{attr}: must be in {self.private_net}, got {getattr(self, attr)}"
                )

    def real_address(self, index: int) -> IPv4Address:
        """The address of ``real<index>`` (1-based): ``first_real + index - 1``."""
        if index < 1:
            raise LabError(f"real server index: must be >= 1, got {index}")
        addr = self.first_real + (index - 1)
        taken = {self.primary_private, self.backup_private, self.nat_router}
        if addr not in self.private_net or addr == self.private_net.broadcast_address:
            raise LabError(f"real{index}: {addr} is outside {self.private_net}")
        if addr in taken:
            raise LabError(f"real{index}: {addr} collides with a director or nat_router address")
        return addr

    def public_real_address(self, index: int) -> IPv4Address:
        """The public address of ``real<index>`` in direct mode (``first_public_real`` + i - 1)."""
        if index < 1:
            raise LabError(f"real server index: must be >= 1, got {index}")
        addr = self.first_public_real + (index - 1)
        taken = {self.vip, self.client, self.primary, self.backup}
        if addr not in self.public_net or addr == self.public_net.broadcast_address:
            raise LabError(f"real{index}: {addr} is outside {self.public_net}")
        if addr in taken:
            raise LabError(f"real{index}: {addr} collides with the VIP, client or a director")
        return addr

    def links(self, node: str) -> tuple[NodeLink, ...]:
        """The interfaces of ``node``, in ``eth0, eth1`` order; ``sw`` has none of its own."""
        pub, priv = self.public_net.prefixlen, self.private_net.prefixlen
        match node:
            case "sw":
                return ()
            case "client":
                return (NodeLink("eth0", PUBLIC_BRIDGE, IPv4Interface(f"{self.client}/{pub}")),)
            case "director" | "backup":
                public = self.primary if node == "director" else self.backup
                private = self.primary_private if node == "director" else self.backup_private
                return (
                    NodeLink("eth0", PUBLIC_BRIDGE, IPv4Interface(f"{public}/{pub}")),
                    NodeLink("eth1", PRIVATE_BRIDGE, IPv4Interface(f"{private}/{priv}")),
                )
        m = _NODE_NAME.fullmatch(node)
        if m is None or m.group(1) is None:
            raise LabError(f"lab node: unknown node {node!r}")
        index = int(m.group(1))
        addr = self.real_address(index)
        private_link = NodeLink("eth0", PRIVATE_BRIDGE, IPv4Interface(f"{addr}/{priv}"))
        if self.mode in ("direct", "tunnel"):
            public = self.public_real_address(index)
            return (private_link, NodeLink("eth1", PUBLIC_BRIDGE, IPv4Interface(f"{public}/{pub}")))
        return (private_link,)

    def gateway(self, node: str) -> IPv4Address | None:
        """The default route of ``node``: a NAT real's is ``nat_router``; others have none
        (a direct-routing real reaches the client on the public segment)."""
        return self.nat_router if node.startswith("real") and self.mode == "nat" else None


@dataclass(frozen=True, slots=True)
class NodeLink:
    """One interface of a node: its name inside the node, its bridge in ``sw``, its address."""

    ifname: str
    bridge: str
    address: IPv4Interface


def check_lab_name(name: str) -> str:
    """Return ``name`` if it is a valid lab name (1-16 of ``[a-z0-9]``); raise LabError otherwise.

    No hyphen, so ``lvsd-<lab>-<node>`` splits unambiguously and one lab's prefix never
    matches another lab's namespaces.
    """
    if _LAB_NAME.fullmatch(name) is None:
        raise LabError(f"lab name: must be 1-16 characters of [a-z0-9], got {name!r}")
    return name


def _node_key(node: str) -> tuple[int, int]:
    if node in _NODE_ORDER:
        return (_NODE_ORDER[node], 0)
    if node.startswith("director"):
        return (_NODE_ORDER["director"], int(node.removeprefix("director")))
    return (len(_NODE_ORDER), int(node.removeprefix("real")))


def _lab_nodes() -> list[tuple[str, str]]:
    """``(lab, node)`` of every lab namespace in ``/run/netns`` (``lvsd-<lab>-<node>``)."""
    try:
        names = [p.name for p in NETNS_DIR.iterdir()]
    except FileNotFoundError:
        return []
    found = []
    for ns in names:
        parts = ns.removeprefix(NS_PREFIX).split("-", 1)
        if (
            ns.startswith(NS_PREFIX)
            and len(parts) == 2
            and _LAB_NAME.fullmatch(parts[0])
            and _NODE_NAME.fullmatch(parts[1])
        ):
            found.append((parts[0], parts[1]))
    return found


def lab_namespaces(name: str) -> list[str]:
    """The namespaces of lab ``name`` that exist now (also of a half-built lab), in node order."""
    check_lab_name(name)
    nodes = sorted((node for lab, node in _lab_nodes() if lab == name), key=_node_key)
    return [f"{NS_PREFIX}{name}-{node}" for node in nodes]


def all_labs() -> list[str]:
    """The names of every lab with at least one namespace, sorted."""
    return sorted({lab for lab, _ in _lab_nodes()})


def namespace_pids(ns: str) -> list[int]:
    """PIDs of the processes whose network namespace is ``ns`` (``ip netns pids``)."""
    out = subprocess.run(
        ["ip", "netns", "pids", ns], capture_output=True, text=True, check=False
    ).stdout
    return sorted(int(p) for p in out.split())


def _ns_inode(ns: str) -> tuple[int, int]:
    st = os.stat(NETNS_DIR / ns)
    return (st.st_dev, st.st_ino)


def _in_namespace(pid: int, ns_id: tuple[int, int]) -> bool:
    try:
        st = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == ns_id


def ns_socket(
    ns: str, family: int = socket.AF_INET, sock_type: int = socket.SOCK_STREAM, proto: int = 0
) -> socket.socket:
    """A new socket that lives in namespace ``ns`` (usable from any thread of this process).

    A short-lived thread enters ``ns`` with setns(2) and creates the socket; a socket keeps
    the namespace it was created in, and this process's own threads never change namespace.
    """
    result: list[socket.socket | BaseException] = []

    def enter_and_create() -> None:
        try:
            fd = os.open(NETNS_DIR / ns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {ns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(socket.socket(family, sock_type, proto))
        except BaseException as e:
            result.append(e)

    worker = threading.Thread(target=enter_and_create, name=f"setns-{ns}")
    worker.start()
    worker.join()
    got = result[0]
    if isinstance(got, BaseException):
        raise got
    return got


@dataclass(slots=True)
class Lab:
    """One lab, by name. ``up`` builds it, ``down`` removes it; a context manager downs on exit.

    Not thread-safe; call from one thread. Root only.
    """

    spec: LabSpec = field(default_factory=LabSpec)
    name: str = "lab"
    _servers: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        check_lab_name(self.name)

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    @property
    def run_dir(self) -> Path:
        """Where this lab's logs and server configs are: ``/run/lvsd-lab/<lab>``."""
        return RUN_ROOT / self.name

    @property
    def nodes(self) -> tuple[str, ...]:
        """The nodes that exist now, in order: sw, client, director, backup, real1..realN."""
        prefix = f"{NS_PREFIX}{self.name}-"
        return tuple(ns.removeprefix(prefix) for ns in lab_namespaces(self.name))

    @property
    def reals(self) -> tuple[str, ...]:
        """The real servers' node names that exist now."""
        return tuple(n for n in self.nodes if n.startswith("real"))

    def ns(self, node: str) -> str:
        """The namespace name of ``node``: ``lvsd-<lab>-<node>``."""
        if _NODE_NAME.fullmatch(node) is None:
            raise LabError(f"lab node: unknown node {node!r}")
        return f"{NS_PREFIX}{self.name}-{node}"

    # -- building -----------------------------------------------------------------------

    def up(
        self,
        reals: int = 3,
        backup: bool = False,
        nginx: bool = False,
        ftp: bool = False,
        sshd: bool = False,
    ) -> None:
        """Build the lab and start an HTTP server on every real; return once all accept.

        ``nginx`` runs nginx instead of the labserver (answers ``/`` only); ``ftp`` also runs
        an anonymous, read-only vsftpd on port 21 whose root holds ``name.txt``; ``sshd``
        also runs sshd on port 22 (``ssh_argv`` reaches it) and the load meter that gives
        each real its own load average.

        Refuses (LabError) if any namespace of this lab exists. On any failure it removes
        what it built before re-raising.
        """
        if reals < 1:
            raise LabError(f"lab up --reals: must be >= 1, got {reals}")
        nodes = ["sw", "client", "director"]
        nodes += ["backup"] if backup else []
        nodes += [f"real{i}" for i in range(1, reals + 1)]
        for node in nodes:
            self.spec.links(node)  # validates every address before anything is built
        if lab_namespaces(self.name):
            raise LabError(
                f"lab {self.name}: already exists (or half-built); "
                f"run: lvsd lab down --name {self.name}"
            )
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for node in nodes:
                netns.create(self.ns(node))
                # No IPv6: keeps router solicitations, MLD and DAD off the lab's wires.
                self.run(
                    node,
                    [
                        "sysctl", "-q",
                        "-w", "net.ipv6.conf.all.disable_ipv6=1",
                        "-w", "net.ipv6.conf.default.disable_ipv6=1",
                    ],
                )  # fmt: skip
            self._wire(nodes)
            for node in nodes:
                self._configure(node)
            real_nodes = [n for n in nodes if n.startswith("real")]
            if sshd:
                self._start_load_meter(real_nodes)
            started = [
                (node, log_name, self._start_server(node, log_name, argv))
                for node in real_nodes
                for log_name, argv in self._server_commands(node, nginx, ftp, sshd).items()
            ]
            for node, log_name, proc in started:
                port = self.spec.http_port
                if log_name.endswith("-ftp"):
                    port = FTP_PORT
                elif log_name.endswith("-sshd"):
                    port = lab_sshd.SSH_PORT
                self._wait_accepting(node, proc, port, log_name)
        except BaseException:
            self.down()
            raise

    def _wire(self, nodes: Sequence[str]) -> None:
        """In ``sw``: both bridges, and one veth per node interface, its peer in the node."""
        with IPRoute(netns=self.ns("sw")) as ipr:
            for bridge in (PUBLIC_BRIDGE, PRIVATE_BRIDGE):
                ipr.link("add", ifname=bridge, kind="bridge")
                ipr.link("set", ifname=bridge, state="up")
            for node in nodes:
                for link in self.spec.links(node):
                    port = f"{node}-{link.ifname}"
                    ipr.link(
                        "add",
                        ifname=port,
                        kind="veth",
                        peer={"ifname": link.ifname, "net_ns_fd": self.ns(node)},
                    )
                    master = ipr.link_lookup(ifname=link.bridge)[0]
                    ipr.link("set", ifname=port, master=master, state="up")

    def _configure(self, node: str) -> None:
        """Inside ``node``: loopback and interfaces up, addresses, the default route."""
        with IPRoute(netns=self.ns(node)) as ipr:
            ipr.link("set", ifname="lo", state="up")
            for link in self.spec.links(node):
                index = ipr.link_lookup(ifname=link.ifname)[0]
                ipr.link("set", index=index, state="up")
                ipr.addr(
                    "add",
                    index=index,
                    address=str(link.address.ip),
                    prefixlen=link.address.network.prefixlen,
                )
            gateway = self.spec.gateway(node)
            if gateway is not None:
                ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway))
            if node.startswith("real") and self.spec.mode == "direct":
                # An LVS-DR real: the VIP is its own, but only the director answers ARP for it.
                lo = ipr.link_lookup(ifname="lo")[0]
                ipr.addr("add", index=lo, address=str(self.spec.vip), prefixlen=32)
        if node.startswith("real") and self.spec.mode == "tunnel":
            self.start_decap(node)
        if node.startswith("real") and self.spec.mode in ("direct", "tunnel"):
            ifaces = ["all", "default", *(link.ifname for link in self.spec.links(node))]
            settings = [
                f"net.ipv4.conf.{i}.{key}={value}"
                for i in ifaces
                for key, value in (("arp_ignore", 1), ("arp_announce", 2), ("rp_filter", 0))
            ]
            self.run(node, ["sysctl", "-q", *(a for kv in settings for a in ("-w", kv))])

    def start_decap(self, node: str) -> None:
        """Make ``node`` an LVS-TUN real: ``lab.decap`` holds the VIP on ``tunl0`` and
        decapsulates IPIP (this kernel has no ipip module); returns once it says ready.
        ``up`` does it for every real in tunnel mode."""
        log = (self.run_dir / f"{node}-decap.log").open("wb")
        proc = self.popen(
            node,
            [sys.executable, "-m", "lab.decap", "--vip", str(self.spec.vip)],
            stdout=subprocess.PIPE,
            stderr=log,
        )
        log.close()
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], DECAP_READY_TIMEOUT)
        line = proc.stdout.readline() if ready else b""
        proc.stdout.close()
        if line.strip() != b"ready":
            proc.kill()
            proc.wait()
            raise LabError(f"{node}: the IPIP decapsulator did not start; see {log.name}")
        self._servers.append(proc)

    def _server_commands(
        self, node: str, nginx: bool, ftp: bool, sshd: bool = False
    ) -> dict[str, list[str]]:
        """The servers of real ``node`` by log name (``real1``, ``real1-ftp``, ``real1-sshd``)
        with their argv."""
        http = (
            self._nginx_argv(node)
            if nginx
            else [
                sys.executable, "-m", "lab.server",
                "--name", node, "--port", str(self.spec.http_port),
            ]
        )  # fmt: skip
        commands = {node: http}
        if ftp:
            commands[f"{node}-ftp"] = self._vsftpd_argv(node)
        if sshd:
            address = str(self.spec.links(node)[0].address.ip)
            loadavg = self._conf_dir(node) / "loadavg"
            commands[f"{node}-sshd"] = lab_sshd.sshd_argv(
                self.ssh_dir, self._conf_dir(node), address, loadavg
            )
        return commands

    @property
    def ssh_dir(self) -> Path:
        """The lab's ssh keys and configs (``sshd=True``): ``<run_dir>/ssh``."""
        return self.run_dir / "ssh"

    def ssh_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` (an ``ssh`` client, or a program that runs one) given the lab's client
        key and known_hosts for the reals; for ``exec_argv``/``popen`` in any node."""
        return lab_sshd.client_argv(self.ssh_dir, argv)

    def _start_load_meter(self, reals: Sequence[str]) -> None:
        """The reals' load averages (``lab.loadmeter``), metered from ``sw``."""
        lab_sshd.make_keys(self.ssh_dir, self.spec.private_net)
        for node in reals:
            (self._conf_dir(node) / "loadavg").write_text("0.00 0.00 0.00 0/0 0\n")
        argv = [sys.executable, "-m", "lab.loadmeter", str(self.run_dir)]
        argv += [f"{NETNS_DIR / self.ns(node)}:{node}" for node in reals]
        self._start_server("sw", "loadmeter", argv)

    def _start_server(self, node: str, log_name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        """Start ``argv`` in ``node``, detached, output to ``<run_dir>/<log_name>.log``."""
        with open(self.run_dir / f"{log_name}.log", "ab") as log:
            proc = self.popen(
                node,
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._servers.append(proc)
        return proc

    def _conf_dir(self, node: str) -> Path:
        conf_dir = self.run_dir / node
        conf_dir.mkdir(mode=0o755, exist_ok=True)
        return conf_dir

    def _nginx_argv(self, node: str) -> list[str]:
        """Write ``<run_dir>/<node>/nginx.conf`` and return the command that runs it."""
        conf_dir = self._conf_dir(node)
        conf = conf_dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=conf_dir, name=node, port=self.spec.http_port))
        return ["nginx", "-c", str(conf), "-p", str(conf_dir), "-e", str(conf_dir / "error.log")]

    def ftp_root(self, node: str) -> Path:
        """The anonymous FTP root of real ``node`` (files put there are served at once)."""
        return self._conf_dir(node) / "ftp"

    def _vsftpd_argv(self, node: str) -> list[str]:
        """Write ``<run_dir>/<node>/vsftpd.conf`` and an anonymous root holding ``name.txt``."""
        conf_dir = self._conf_dir(node)
        for sub in ("ftp", "empty"):
            (conf_dir / sub).mkdir(mode=0o755, exist_ok=True)
        (conf_dir / "ftp" / "name.txt").write_text(f"{node}\n")
        conf = conf_dir / "vsftpd.conf"
        conf.write_text(VSFTPD_CONF.format(dir=conf_dir))
        return ["vsftpd", str(conf)]

    def _wait_accepting(
        self, node: str, proc: subprocess.Popen[bytes], port: int, log_name: str
    ) -> None:
        """Poll a connect to the real's own address:port until accepted, within the deadline."""
        addr = (str(self.spec.links(node)[0].address.ip), port)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            with ns_socket(self.ns(node)) as s:
                s.settimeout(1.0)
                if s.connect_ex(addr) == 0:
                    return
            if proc.poll() is not None:
                raise LabError(
                    f"lab {self.name}: {log_name}'s server exited with {proc.returncode}; "
                    f"see {self.run_dir / f'{log_name}.log'}"
                )
            if time.monotonic() > deadline:
                raise LabError(
                    f"lab {self.name}: {log_name}'s server does not accept on "
                    f"{addr[0]}:{addr[1]} after {SERVER_START_TIMEOUT:.0f} s"
                )
            time.sleep(0.02)

    # -- removing -----------------------------------------------------------------------

    def down(self) -> None:
        """Remove the lab: end the processes inside its namespaces, delete them, remove logs.

        Works on a half-built lab and on a lab built by another process. Touches only
        processes whose network namespace is one of this lab's, and no root-namespace link.
        """
        namespaces = lab_namespaces(self.name)
        self._stop_processes(namespaces)
        for ns in namespaces:
            with contextlib.suppress(FileNotFoundError):
                netns.remove(ns)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _stop_processes(self, namespaces: Sequence[str]) -> None:
        pidfds: list[int] = []
        try:
            for ns in namespaces:
                try:
                    ns_id = _ns_inode(ns)
                except OSError:
                    continue
                for pid in namespace_pids(ns):
                    try:
                        pidfd = os.pidfd_open(pid)
                    except ProcessLookupError:
                        continue
                    # The pidfd pins the process; re-check it is still the one in our namespace.
                    if _in_namespace(pid, ns_id):
                        pidfds.append(pidfd)
                    else:
                        os.close(pidfd)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                for pidfd in pidfds:
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(pidfd, sig)
                if _wait_exited(pidfds, STOP_TIMEOUT):
                    break
        finally:
            for pidfd in pidfds:
                os.close(pidfd)
            for proc in self._servers:  # reap the children this object started
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=STOP_TIMEOUT)
            self._servers.clear()

    # -- running commands in nodes ------------------------------------------------------

    def exec_argv(self, node: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` in ``node`` (``ip netns exec ...``).

        For callers that start processes their own way (asyncio subprocesses). Raises
        LabError if the node's namespace does not exist.
        """
        ns = self.ns(node)
        if not (NETNS_DIR / ns).exists():
            raise LabError(f"lab {self.name}: no node {node!r} (namespace {ns} does not exist)")
        return ["ip", "netns", "exec", ns, *argv]

    def run(
        self, node: str, argv: Sequence[str], **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``node`` and wait; checked, text mode, output captured by default.

        ``kwargs`` go to :func:`subprocess.run`; passing ``stdout``/``stderr``/``capture_output``
        replaces the capture. Raises CalledProcessError on a non-zero exit.
        """
        kwargs.setdefault("check", True)
        kwargs.setdefault("text", True)
        if not {"stdout", "stderr", "capture_output"} & kwargs.keys():
            kwargs["capture_output"] = True
        result: subprocess.CompletedProcess[str] = subprocess.run(
            self.exec_argv(node, argv), **kwargs
        )
        return result

    def popen(self, node: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in ``node``; ``kwargs`` go to :class:`subprocess.Popen`.

        ``ip netns exec`` execs the command, so the Popen's pid is the command's own.
        """
        return subprocess.Popen(self.exec_argv(node, argv), **kwargs)

    def socket(
        self,
        node: str,
        family: int = socket.AF_INET,
        sock_type: int = socket.SOCK_STREAM,
        proto: int = 0,
    ) -> socket.socket:
        """A new socket in ``node``'s namespace (see :func:`ns_socket`)."""
        ns = self.ns(node)
        if not (NETNS_DIR / ns).exists():
            raise LabError(f"lab {self.name}: no node {node!r} (namespace {ns} does not exist)")
        return ns_socket(ns, family, sock_type, proto)

    def http(
        self, node: str, host: IPv4Address | str, port: int | None = None, timeout: float = 10.0
    ) -> http.client.HTTPConnection:
        """An HTTP/1.1 connection from ``node`` to ``host:port`` (default ``spec.http_port``).

        Keep-alive works as with any :class:`http.client.HTTPConnection`; close it when done.
        """
        return _NamespaceHTTPConnection(
            self, node, str(host), self.spec.http_port if port is None else port, timeout
        )

    def ping(self, node: str, address: IPv4Address | str, timeout: float = 1.0) -> bool:
        """Send one ICMP echo request from ``node``; True if the reply comes within ``timeout`` s.

        False when no reply comes or ``node`` has no route to ``address``. Needs no ping
        binary: a raw ICMP socket in the node's namespace.
        """
        dst = str(address)
        ident, seq = os.getpid() & 0xFFFF, next(_ping_seq) & 0xFFFF
        request = _icmp_echo(ident, seq, b"lvsd-lab")
        with self.socket(node, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
            try:
                s.sendto(request, (dst, 0))
            except OSError as e:
                if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                    return False
                raise
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    data, (src, _) = s.recvfrom(2048)
                except TimeoutError:
                    return False
                ihl = (data[0] & 0x0F) * 4
                icmp_type, _code, _csum, r_ident, r_seq = struct.unpack_from("!BBHHH", data, ihl)
                if (icmp_type, src, r_ident, r_seq) == (0, dst, ident, seq):
                    return True
        return False


class _NamespaceHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection whose socket is created in a lab node's namespace."""

    def __init__(self, lab: Lab, node: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._lab, self._node = lab, node
        lab.ns(node)  # refuses an unknown node name now, not at the first request

    def connect(self) -> None:
        sock = self._lab.socket(self._node)
        try:
            sock.settimeout(self.timeout)
            sock.connect((self.host, self.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


_ping_seq = itertools.count(1)


def _icmp_echo(ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP echo request with its RFC 1071 checksum."""
    unsummed = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    padded = unsummed + b"\0" * (len(unsummed) % 2)
    total = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return struct.pack("!BBHHH", 8, 0, ~total & 0xFFFF, ident, seq) + payload


def _wait_exited(pidfds: Sequence[int], timeout: float) -> bool:
    """Wait until every pidfd reports its process exited; False if the timeout passes first."""
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    pending = len(pidfds)
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        for fd, _ in poller.poll(left * 1000):
            poller.unregister(fd)
            pending -= 1
    return True


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 100000;
    server {{
        listen {port};
        location = / {{
            add_header X-Real {name} always;
            default_type text/plain;
            return 200 "{name}\\n";
        }}
    }}
}}
"""
"""The nginx configuration of one real (``lvsd lab up --nginx``): answers ``/`` with its name."""

FTP_PORT = 21

VSFTPD_CONF = """\
listen=YES
listen_ipv6=NO
listen_port=21
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root={dir}/ftp
local_enable=NO
write_enable=NO
pasv_enable=YES
connect_from_port_20=YES
seccomp_sandbox=NO
secure_chroot_dir={dir}/empty
xferlog_enable=YES
vsftpd_log_file={dir}/vsftpd.log
xferlog_file={dir}/vsftpd.log
"""
"""The vsftpd configuration of one real (``lvsd lab up --ftp``): anonymous and read-only.

No ``pasv_address``: the 227 reply names the real's own address, and the director's FTP
helper rewrites it to the VIP. Active data connections leave from port 20, as the
director's expected entry for them (VIP:20) requires."""


# -- the ``lvsd lab`` command -----------------------------------------------------------


def add_command(sub: Any, up_func: Any = None) -> None:
    """``lvsd lab``; ``up_func`` runs ``lab up`` (default ``run_up``: this module's shapes;
    ``lab.router`` passes one that also builds the scale-out shape)."""
    p = sub.add_parser("lab", help="build, enter and remove the network-namespace lab")
    lab_sub = p.add_subparsers(dest="lab_command", required=True, metavar="ACTION")

    up = lab_sub.add_parser("up", help="build the lab and start the real servers")
    up.add_argument("--name", default="lab", help="lab name, [a-z0-9]{1,16} (default: lab)")
    up.add_argument("--reals", type=int, default=3, help="number of real servers (default 3)")
    up.add_argument("--backup", action="store_true", help="add the backup director node")
    up.add_argument("--nginx", action="store_true", help="run nginx in the reals, not labserver")
    up.add_argument("--ftp", action="store_true", help="also run vsftpd (anonymous) in the reals")
    up.add_argument(
        "--mode",
        choices=LAB_MODES,
        default="nat",
        help="nat: VS-NAT reals (default); direct: LVS-DR reals (VIP on lo, arp_ignore=1, "
        "arp_announce=2, replies straight to the client on the public segment); tunnel: "
        "LVS-TUN reals (the same, the VIP on tunl0, IPIP decapsulated by lab.decap)",
    )
    up.add_argument(
        "--sshd", action="store_true", help="also run sshd (lab keys) and the load meter"
    )
    up.add_argument(
        "--router",
        action="store_true",
        help="the scale-out shape: a BGP router (BIRD, ECMP) in front of --directors "
        "directors, direct-routing reals (docs/scale-out.md)",
    )
    up.add_argument(
        "--directors", type=int, default=3, help="with --router: how many directors (default 3)"
    )
    up.set_defaults(func=up_func or run_up)

    down = lab_sub.add_parser("down", help="remove the lab, also a half-built one")
    down.add_argument("--name", default="lab", help="lab name (default: lab)")
    down.set_defaults(func=run_down)

    ex = lab_sub.add_parser("exec", help="run a command in a node: lab exec NODE -- CMD...")
    ex.add_argument("--name", default="lab", help="lab name (default: lab)")
    ex.add_argument("node", help="sw, client, director, backup, router, directorN or realN")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="the command and its arguments")
    ex.set_defaults(func=run_exec)

    st = lab_sub.add_parser("status", help="list the labs, their nodes and addresses")
    st.add_argument("--name", default=None, help="only this lab")
    st.set_defaults(func=run_status)


def run_up(args: argparse.Namespace) -> int:
    if args.router:
        print("lvsd: lab up --router: the scale-out shape is lab.router's", file=sys.stderr)
        return 2
    try:
        lab = Lab(LabSpec(mode=args.mode), args.name)
        lab.up(reals=args.reals, backup=args.backup, nginx=args.nginx, ftp=args.ftp, sshd=args.sshd)
    except LabError as e:
        print(f"lvsd: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(format_status(lab))
    return 0


def run_down(args: argparse.Namespace) -> int:
    try:
        Lab(LabSpec(), args.name).down()
    except LabError as e:
        print(f"lvsd: {e}", file=sys.stderr)
        return 1
    return 0


def run_exec(args: argparse.Namespace) -> int:
    cmd: list[str] = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("lvsd: lab exec: no command given (lab exec NODE -- CMD...)", file=sys.stderr)
        return 2
    try:
        argv = Lab(LabSpec(), args.name).exec_argv(args.node, cmd)
    except LabError as e:
        print(f"lvsd: {e}", file=sys.stderr)
        return 1
    code = subprocess.run(argv, check=False).returncode
    return 128 - code if code < 0 else code


def run_status(args: argparse.Namespace) -> int:
    try:
        names = [check_lab_name(args.name)] if args.name else all_labs()
    except LabError as e:
        print(f"lvsd: {e}", file=sys.stderr)
        return 1
    if args.name and not lab_namespaces(args.name):
        print(f"lab {args.name}: not up")
        return 1
    for name in names:
        sys.stdout.write(format_status(Lab(LabSpec(), name)))
    return 0


def format_status(lab: Lab) -> str:
    """One line per node: namespace, IPv4 addresses inside it, and its process count."""
    lines = [f"lab {lab.name}:"]
    for node in lab.nodes:
        ns = lab.ns(node)
        with IPRoute(netns=ns) as ipr:
            addrs = [
                f"{a.get_attr('IFA_LABEL')}={a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                for a in ipr.addr("dump", family=socket.AF_INET)
                if a.get_attr("IFA_LABEL") != "lo"
            ]
        procs = len(namespace_pids(ns))
        lines.append(f"  {node:<9} {ns:<28} {' '.join(addrs) or '-'}  processes={procs}")
    return "\n".join(lines) + "\n"
