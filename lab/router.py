"""The scale-out lab: N active directors behind a BGP router that spreads the VIP by ECMP.

``lvsd lab up --directors N --router`` builds (defaults of :class:`RouterSpec`)::

    client 172.16.0.100 ── br-edge ── router eth0 172.16.0.1         (BIRD, AS 65000;
                                      router eth1 10.0.1.254          ECMP towards the VIP)
                                            │
                     br-pub ─────┬──────────┼──────────┬───────────────┐
                      director1 10.0.1.1  director2 .2  director3 .3   real1 eth1 10.0.1.10 ...
                      (lvsd + BIRD, AS 65001, announce VIP 10.0.2.5/32)  (replies to the client
                                                                          via 10.0.1.254)
                     br-priv ────┴── directorK eth1 192.168.1.K ── real1 eth0 192.168.1.10, .11 ...

* The router runs Debian's BIRD 2 with one BGP session per director (hold time 3 s,
  no graceful restart) and exports the VIP's routes to its kernel with ``merge paths``:
  one multipath route, a next hop per director that announces it. Its
  ``net.ipv4.fib_multipath_hash_policy`` is 1, so the kernel hashes the 5-tuple (the
  client's source port spreads the flows).
* The VIP is on none of the lab's subnets: only the routes the directors announce lead to
  it. The directors are plain nodes until ``lvsd run`` starts on them (``director_config``
  gives their lvs.cf: ``active_active = 1``, direct routing).
* The reals are LVS-DR reals as in ``lvsd lab up --mode direct`` (the VIP on ``lo``,
  ``arp_ignore=1``, ``arp_announce=2``, ``rp_filter`` 0), reached by the directors on
  br-priv; their replies go to the client through the router, never through a director.

``router_rib`` and ``ecmp_next_hops`` read the router's own view (``birdc``, ``ip route``).
The namespaces are the lab's (``lvsd-<lab>-router``, ``-director1`` ...), so ``lvsd lab
down``/``exec``/``status`` handle this shape as any other.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, netns

from lab import cluster
from lab.cluster import Lab, LabSpec, lab_namespaces
from lab.errors import LabError

EDGE_BRIDGE = "br-edge"
PUBLIC_BRIDGE = "br-pub"
PRIVATE_BRIDGE = "br-priv"
MAX_DIRECTORS = 9
BIRD_START_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class RouterSpec:
    """The scale-out lab's addressing plan and BGP numbers."""

    directors: int = 3
    reals: int = 3
    edge_net: IPv4Network = IPv4Network("172.16.0.0/24")  # noqa: RUF009
    client: IPv4Address = IPv4Address("172.16.0.100")  # noqa: RUF009
    router_edge: IPv4Address = IPv4Address("172.16.0.1")  # noqa: RUF009
    router_public: IPv4Address = IPv4Address("10.0.1.254")  # noqa: RUF009
    vip: IPv4Address = IPv4Address("10.0.2.5")  # noqa: RUF009
    router_asn: int = 65000
    director_asn: int = 65001
    hold_time: int = 3
    http_port: int = 80

    def __post_init__(self) -> None:
        if not 1 <= self.directors <= MAX_DIRECTORS:
            raise LabError(
                f"lab up --directors: must be from 1 to {MAX_DIRECTORS}, got {self.directors}"
            )
        if self.reals < 1:
            raise LabError(f"lab up --reals: must be >= 1, got {self.reals}")

    @property
    def base(self) -> LabSpec:
        """The reals' and segments' plan: the direct-routing lab's."""
        return LabSpec(mode="direct")

    def director_names(self) -> list[str]:
        return [f"director{i}" for i in range(1, self.directors + 1)]

    def director_address(self, i: int) -> IPv4Address:
        """``director<i>``'s public address: 10.0.1.<i>."""
        return self.base.public_net.network_address + i

    def director_private(self, i: int) -> IPv4Address:
        return self.base.private_net.network_address + i

    def links(self, node: str) -> list[tuple[str, str, IPv4Interface]]:
        """``(ifname, bridge, address)`` of each interface of ``node``."""
        pub, priv = self.base.public_net.prefixlen, self.base.private_net.prefixlen
        edge = self.edge_net.prefixlen
        if node == "client":
            return [("eth0", EDGE_BRIDGE, IPv4Interface(f"{self.client}/{edge}"))]
        if node == "router":
            return [
                ("eth0", EDGE_BRIDGE, IPv4Interface(f"{self.router_edge}/{edge}")),
                ("eth1", PUBLIC_BRIDGE, IPv4Interface(f"{self.router_public}/{pub}")),
            ]
        if node.startswith("director"):
            i = int(node.removeprefix("director"))
            return [
                ("eth0", PUBLIC_BRIDGE, IPv4Interface(f"{self.director_address(i)}/{pub}")),
                ("eth1", PRIVATE_BRIDGE, IPv4Interface(f"{self.director_private(i)}/{priv}")),
            ]
        return [(link.ifname, link.bridge, link.address) for link in self.base.links(node)]

    def nodes(self) -> list[str]:
        return [
            "sw",
            "client",
            "router",
            *self.director_names(),
            *(f"real{i}" for i in range(1, self.reals + 1)),
        ]


def router_bird_config(spec: RouterSpec) -> str:
    """BIRD 2 on the router: a BGP session per director, the VIP's routes merged into
    one multipath kernel route."""
    sessions = "".join(
        f"protocol bgp director{i} from directors {{ neighbor {spec.director_address(i)} "
        f"as {spec.director_asn}; }}\n"
        for i in range(1, spec.directors + 1)
    )
    return (
        f"router id {spec.router_public};\n"
        "protocol device { }\n"
        "protocol kernel {\n"
        "    ipv4 { import none; export where source = RTS_BGP; };\n"
        "    merge paths on;\n"
        "}\n"
        "template bgp directors {\n"
        f"    local {spec.router_public} as {spec.router_asn};\n"
        f"    hold time {spec.hold_time};\n"
        f"    keepalive time {max(1, spec.hold_time // 3)};\n"
        "    connect delay time 1;\n"
        "    connect retry time 1;\n"
        "    error wait time 1, 3;\n"
        "    graceful restart off;\n"
        "    ipv4 { import all; export none; };\n"
        "}\n"
        f"{sessions}"
    )


def up(lab: Lab, spec: RouterSpec, *, nginx: bool = False) -> None:
    """Build the scale-out lab in ``lab``'s namespaces and start BIRD on the router and an
    HTTP server on every real; returns once they answer. On any failure it removes what it
    built (``lab.down()``) before re-raising."""
    if lab_namespaces(lab.name):
        raise LabError(
            f"lab {lab.name}: already exists (or half-built); run: lvsd lab down --name {lab.name}"
        )
    nodes = spec.nodes()
    try:
        lab.run_dir.mkdir(parents=True, exist_ok=True)
        for node in nodes:
            netns.create(lab.ns(node))
            lab.run(
                node,
                [
                    "sysctl", "-q",
                    "-w", "net.ipv6.conf.all.disable_ipv6=1",
                    "-w", "net.ipv6.conf.default.disable_ipv6=1",
                ],
            )  # fmt: skip
        _wire(lab, spec, nodes)
        for node in nodes[1:]:
            _configure(lab, spec, node)
        start_router(lab, spec)
        write_director_configs(lab, spec)
        reals = [n for n in nodes if n.startswith("real")]
        started = [
            (node, lab._start_server(node, node, argv))
            for node in reals
            for argv in lab._server_commands(node, nginx, False).values()
        ]
        for node, proc in started:
            lab._wait_accepting(node, proc, spec.http_port, node)
    except BaseException:
        lab.down()
        raise


def _wire(lab: Lab, spec: RouterSpec, nodes: list[str]) -> None:
    with IPRoute(netns=lab.ns("sw")) as ipr:
        for bridge in (EDGE_BRIDGE, PUBLIC_BRIDGE, PRIVATE_BRIDGE):
            ipr.link("add", ifname=bridge, kind="bridge")
            ipr.link("set", ifname=bridge, state="up")
        for node in nodes[1:]:
            for ifname, bridge, _ in spec.links(node):
                port = f"{node}-{ifname}"
                ipr.link(
                    "add",
                    ifname=port,
                    kind="veth",
                    peer={"ifname": ifname, "net_ns_fd": lab.ns(node)},
                )
                master = ipr.link_lookup(ifname=bridge)[0]
                ipr.link("set", ifname=port, master=master, state="up")


def _configure(lab: Lab, spec: RouterSpec, node: str) -> None:
    with IPRoute(netns=lab.ns(node)) as ipr:
        ipr.link("set", ifname="lo", state="up")
        for ifname, _, address in spec.links(node):
            index = ipr.link_lookup(ifname=ifname)[0]
            ipr.link("set", index=index, state="up")
            ipr.addr(
                "add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen
            )
        if node == "client":
            ipr.route("add", dst="0.0.0.0/0", gateway=str(spec.router_edge))
        elif node.startswith("real"):
            # An LVS-DR real: the VIP is its own; replies reach the client through the router.
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.addr("add", index=lo, address=str(spec.vip), prefixlen=32)
            ipr.route("add", dst=str(spec.edge_net), gateway=str(spec.router_public))
    if node == "router":
        lab.run(
            node,
            [
                "sysctl", "-q",
                "-w", "net.ipv4.ip_forward=1",
                "-w", "net.ipv4.fib_multipath_hash_policy=1",
                "-w", "net.ipv4.conf.all.rp_filter=0",
                "-w", "net.ipv4.conf.default.rp_filter=0",
            ],
        )  # fmt: skip
    elif node.startswith("real"):
        ifaces = ["all", "default", *(ifname for ifname, _, _ in spec.links(node))]
        settings = [
            f"net.ipv4.conf.{i}.{key}={value}"
            for i in ifaces
            for key, value in (("arp_ignore", 1), ("arp_announce", 2), ("rp_filter", 0))
        ]
        lab.run(node, ["sysctl", "-q", *(a for kv in settings for a in ("-w", kv))])


def bird_socket(lab: Lab) -> Path:
    return lab.run_dir / "router" / "bird.ctl"


def start_router(lab: Lab, spec: RouterSpec) -> None:
    """BIRD on the router (``<run_dir>/router/``: bird.conf, bird.ctl, router-bird.log)."""
    conf_dir = lab.run_dir / "router"
    conf_dir.mkdir(mode=0o755, exist_ok=True)
    conf = conf_dir / "bird.conf"
    conf.write_text(router_bird_config(spec))
    proc = lab._start_server(
        "router", "router-bird", ["bird", "-f", "-c", str(conf), "-s", str(bird_socket(lab))]
    )
    deadline = time.monotonic() + BIRD_START_TIMEOUT
    while birdc(lab, "show status", check=False).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise LabError(
                f"lab {lab.name}: the router's BIRD did not start; "
                f"see {lab.run_dir / 'router-bird.log'}"
            )
        time.sleep(0.05)


def birdc(lab: Lab, command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``birdc`` on the router's control socket."""
    return lab.run("router", ["birdc", "-s", str(bird_socket(lab)), *command.split()], check=check)


_ROUTE_VIA = re.compile(r"via (\d+\.\d+\.\d+\.\d+) on \S+")


def router_rib(lab: Lab, spec: RouterSpec) -> set[str]:
    """The next hops of the VIP's routes in the router's BIRD RIB (``birdc show route``)."""
    out = birdc(lab, f"show route for {spec.vip}/32 all").stdout
    return set(_ROUTE_VIA.findall(out))


def established(lab: Lab) -> set[str]:
    """The router's BGP sessions that are Established (``birdc show protocols``)."""
    out = birdc(lab, "show protocols").stdout
    return {
        line.split()[0]
        for line in out.splitlines()
        if line.startswith("director") and "Established" in line
    }


def ecmp_next_hops(lab: Lab, spec: RouterSpec) -> set[str]:
    """The next hops of the VIP's route in the router's kernel FIB (``ip route``)."""
    out = lab.run("router", ["ip", "-j", "route", "show", f"{spec.vip}/32"]).stdout
    hops: set[str] = set()
    for route in json.loads(out or "[]"):
        if "gateway" in route:
            hops.add(route["gateway"])
        hops.update(h["gateway"] for h in route.get("nexthops", []) if "gateway" in h)
    return hops


def director_config(
    spec: RouterSpec, *, key_file: Path, scheduler: str = "rr", keepalive: float = 0.2,
    deadtime: float = 1.0, extra: str = "",
) -> str:  # fmt: skip
    """The lvs.cf every director of the lab runs: active-active, direct routing to the
    reals, sync and heartbeats on the public segment, BGP to the router."""
    directors = " ".join(str(spec.director_address(i)) for i in range(1, spec.directors + 1))
    servers = "".join(
        f"    server real{i} {{\n        address = {spec.base.real_address(i)}\n"
        f"        active = 1\n        weight = 1\n    }}\n"
        for i in range(1, spec.reals + 1)
    )
    return (
        "service = lvs\n"
        "network = direct\n"
        f"keepalive = {keepalive}\n"
        f"deadtime = {deadtime}\n"
        f"heartbeat_key_file = {key_file}\n"
        "metrics_address = none\n"
        "public_iface = eth0\n"
        "private_iface = eth1\n"
        "monitor_links = 1\n"
        "active_active = 1\n"
        f"directors = {directors}\n"
        f"bgp_neighbor = {spec.router_public}\n"
        f"bgp_asn = {spec.director_asn}\n"
        f"bgp_neighbor_asn = {spec.router_asn}\n"
        f"bgp_hold_time = {spec.hold_time}\n"
        f"{extra}"
        "virtual web {\n"
        "    active = 1\n"
        f"    address = {spec.vip}\n"
        f"    port = {spec.http_port}\n"
        f"    scheduler = {scheduler}\n"
        "    protocol = tcp\n"
        "    timeout = 3\n"
        "    reentry = 3\n"
        f"{servers}"
        "}\n"
    )


def write_director_configs(lab: Lab, spec: RouterSpec) -> None:
    """``<run_dir>/directorN/lvs.cf`` for each director (its own control socket there) and
    the group's key, so ``lvsd lab exec directorN -- lvsd run -c <that file>`` serves."""
    key = lab.run_dir / "group.key"
    key.write_bytes(secrets.token_hex(32).encode())
    key.chmod(0o600)
    text = director_config(spec, key_file=key)
    for node in spec.director_names():
        conf_dir = lab.run_dir / node
        conf_dir.mkdir(mode=0o755, exist_ok=True)
        sock = conf_dir / "lvsd.sock"
        (conf_dir / "lvs.cf").write_text(f"control_socket = {sock}\n{text}")


def add_command(sub: Any) -> None:
    """``lvsd lab``: ``lab.cluster``'s command, whose ``up --router`` builds this shape."""
    cluster.add_command(sub, up_func=run_up)


def run_up(args: argparse.Namespace) -> int:
    """``lvsd lab up``: with ``--router`` this module's shape, else ``lab.cluster``'s."""
    if not args.router:
        return cluster.run_up(args)
    try:
        lab = Lab(LabSpec(mode="direct"), args.name)
        up(lab, RouterSpec(directors=args.directors, reals=args.reals), nginx=args.nginx)
    except LabError as e:
        print(f"lvsd: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(cluster.format_status(lab))
    return 0
