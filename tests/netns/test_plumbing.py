"""Director plumbing in a three-namespace lab: ARP for the VIP, routing into the TUN, exact undo.

    client ns                     director ns                          real ns
    eth0 10.0.1.100/24 --veth-- eth0 10.0.1.1/24
                                  lvs0 (TUN)  VIP 10.0.1.5/32 -> lvs0, proxied on eth0
                                  eth1 192.168.1.1/24
                                       192.168.1.254/24 (eth1:1) --veth-- eth1 192.168.1.10/24
                                                                          default via .254

The director side runs in a child process (``agent_main``) that holds the TUN
and answers one JSON line per command read on stdin; the test compares full
``ip`` and sysctl dumps of the director namespace before setup and after
teardown. Every namespace is removed in the fixture's finally. One fast path is enough:
plumbing never runs the connection table, C or twin.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from director.dataplane.plumbing import Plumbing, PlumbingSpec, announce, send_gratuitous_arp
from director.errors import TunError
from tests.conftest import require_root

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
VIP = "10.0.1.5"
CLIENT = "10.0.1.100"
REAL = "192.168.1.10"
TIMEOUT_S = 10.0
SNIFF_BOUND_S = 60.0
_serial = itertools.count()


def run(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def in_ns(ns: str, *argv: str, check: bool = True) -> str:
    return run("ip", "netns", "exec", ns, *argv, check=check)


def python_in_ns(ns: str, code: str) -> list[str]:
    return ["ip", "netns", "exec", ns, PYTHON, "-c", code]


@dataclass(frozen=True)
class Lab:
    director: str
    client: str
    real: str


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_root()
    prefix = f"lvsd-pt{os.getpid()}-{next(_serial)}-"
    lab = Lab(prefix + "dir", prefix + "cli", prefix + "real")
    made: list[str] = []
    try:
        for ns in (lab.director, lab.client, lab.real):
            run("ip", "netns", "add", ns)
            made.append(ns)
            # No IPv6: no DAD flags changing in the dumps, no router solicitations in the TUN.
            in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        d = lab.director
        run(
            "ip",
            "-n",
            d,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "eth0",
            "netns",
            lab.client,
        )
        run("ip", "-n", d, "link", "add", "eth1", "type", "veth", "peer", "eth1", "netns", lab.real)
        for ns, dev, addr in (
            (d, "eth0", "10.0.1.1/24"),
            (d, "eth1", "192.168.1.1/24"),
            (lab.client, "eth0", f"{CLIENT}/24"),
            (lab.real, "eth1", f"{REAL}/24"),
        ):
            run("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")
        run("ip", "-n", lab.real, "route", "add", "default", "via", "192.168.1.254")
        yield lab
    finally:
        for ns in made:
            run("ip", "netns", "del", ns, check=False)


def spec(**overrides: Any) -> PlumbingSpec:
    fields: dict[str, Any] = {
        "vips": (IPv4Address(VIP),),
        "tun": "lvs0",
        "nat_router": IPv4Interface("192.168.1.254/24"),
        "nat_router_label": "eth1:1",
        "reals": (IPv4Address(REAL),),
    }
    fields.update(overrides)
    return PlumbingSpec(**fields)


def spec_json(s: PlumbingSpec) -> str:
    return json.dumps(
        {
            "vips": [str(v) for v in s.vips],
            "tun": s.tun,
            "public_iface": s.public_iface,
            "private_iface": s.private_iface,
            "reals": [str(r) for r in s.reals],
            "nat_router": None if s.nat_router is None else str(s.nat_router),
            "nat_router_label": s.nat_router_label,
            "table": s.table,
            "rule_priority": s.rule_priority,
            "fwmarks": list(s.fwmarks),
        }
    )


def dump(ns: str) -> dict[str, str]:
    """Everything plumbing may touch in ``ns``, as text to compare."""
    state = {
        "link": in_ns(ns, "ip", "-d", "link"),
        "addr": in_ns(ns, "ip", "addr"),
        "route": in_ns(ns, "ip", "route", "show", "table", "all"),
        "rule": in_ns(ns, "ip", "rule"),
        "proxy": in_ns(ns, "ip", "neigh", "show", "proxy"),
    }
    state["sysctl"] = in_ns(
        ns,
        "grep",
        "-r",
        ".",
        "/proc/sys/net/ipv4/conf",
        "/proc/sys/net/ipv4/neigh",
        "/proc/sys/net/ipv4/ip_forward",
    )
    return state


def sysctl(ns: str, key: str) -> str:
    return in_ns(ns, "cat", "/proc/sys/" + key.replace(".", "/")).strip()


class Agent:
    """The director side: a child process in the director namespace, one JSON reply per command."""

    def __init__(self, ns: str, s: PlumbingSpec) -> None:
        code = "from tests.netns.test_plumbing import agent_main; agent_main()"
        self.proc = subprocess.Popen(
            [*python_in_ns(ns, code), spec_json(s)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def ask(self, *command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(" ".join(command) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT_S * 2)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"agent gave no answer to {command}: {err}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(TIMEOUT_S)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=TIMEOUT_S)


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    try:
        yield started
    finally:
        for agent in started:
            agent.close()


def start(agents: list[Agent], ns: str, s: PlumbingSpec) -> Agent:
    agent = Agent(ns, s)
    agents.append(agent)
    return agent


def send_udp(ns: str, dst: str) -> None:
    """One datagram from ``ns`` to ``dst``:9 (an ARP resolution first, if on-link)."""
    code = f"import socket; socket.socket(2, 2).sendto(b'lvsd', ({dst!r}, 9))"
    run(*python_in_ns(ns, code))


def mac_of(ns: str, dev: str) -> str:
    return in_ns(ns, "cat", f"/sys/class/net/{dev}/address").strip()


def test_setup_routes_vip_and_replies_into_tun_and_teardown_restores(
    lab: Lab, agents: list[Agent]
) -> None:
    d = lab.director
    # A strict conf.all.rp_filter must be lifted for the TUN only: eth0 inherits it.
    in_ns(d, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")
    in_ns(d, "sysctl", "-qw", "net.ipv4.conf.eth1.rp_filter=2")
    before = dump(d)
    agent = start(agents, d, spec())

    reply = agent.ask("setup")
    assert reply.get("error") is None, reply
    assert reply["tun"]["name"] == "lvs0"
    assert {"csum", "tso4", "tso6"} <= set(reply["tun"]["offloads"])

    assert sysctl(d, "net.ipv4.ip_forward") == "1"
    assert sysctl(d, "net.ipv4.conf.all.rp_filter") == "0"
    assert sysctl(d, "net.ipv4.conf.lvs0.rp_filter") == "0"
    assert sysctl(d, "net.ipv4.conf.eth0.rp_filter") == "1"
    assert sysctl(d, "net.ipv4.conf.eth1.rp_filter") == "2"
    assert sysctl(d, "net.ipv4.conf.eth0.proxy_arp") == "0"
    assert sysctl(d, "net.ipv4.neigh.eth0.proxy_delay") == "0"
    assert "192.168.1.254/24 scope global secondary eth1:1" in in_ns(d, "ip", "addr")
    assert VIP not in in_ns(d, "ip", "addr"), "the VIP must never be a local address"

    # Client -> VIP: the director answers ARP with eth0's MAC, the packet lands in the TUN.
    send_udp(lab.client, VIP)
    got = agent.ask("read", CLIENT, VIP)
    assert got.get("packet"), got
    packet = bytes.fromhex(got["packet"])
    assert packet[9] == socket.IPPROTO_UDP
    assert packet.endswith(b"lvsd")
    neigh = in_ns(lab.client, "ip", "neigh", "show", VIP)
    assert mac_of(d, "eth0") in neigh, neigh

    # Real -> client (via the nat_router): steered into the TUN by the iif rule.
    send_udp(lab.real, CLIENT)
    got = agent.ask("read", REAL, CLIENT)
    assert got.get("packet"), got
    assert bytes.fromhex(got["packet"]).endswith(b"lvsd")

    # The director's own traffic to a real is not steered: the reply reaches its socket.
    assert agent.ask("probe", REAL) == {"result": "refused"}

    assert agent.ask("teardown") == {"ok": True, "changes": []}
    assert dump(d) == before
    assert agent.ask("teardown") == {"ok": True, "changes": []}, "teardown is idempotent"
    assert dump(d) == before


def test_failed_setup_leaves_nothing(lab: Lab, agents: list[Agent]) -> None:
    d = lab.director
    # A rule identical to the one setup adds in its 4th step: everything before it is undone.
    run("ip", "-n", d, "rule", "add", "iif", "eth1", "lookup", "469", "priority", "1000")
    before = dump(d)
    agent = start(agents, d, spec())
    reply = agent.ask("setup")
    assert "rule add iif eth1 lookup 469 priority 1000: EEXIST" in reply["error"]
    assert reply["changes"] == []
    assert dump(d) == before


def test_setup_refuses_a_local_vip(lab: Lab, agents: list[Agent]) -> None:
    d = lab.director
    before = dump(d)
    agent = start(agents, d, spec(vips=(IPv4Address("10.0.1.1"),)))
    reply = agent.ask("setup")
    assert "VIP 10.0.1.1: is a local address of this director (on eth0)" in reply["error"]
    assert dump(d) == before


def test_cleanup_stale_removes_what_a_killed_director_left(lab: Lab, agents: list[Agent]) -> None:
    d = lab.director
    agent = start(agents, d, spec())
    assert agent.ask("setup").get("error") is None
    tun_up = dump(d)
    agent.kill()
    after_crash = dump(d)
    assert f"{VIP} dev eth0 proxy" in after_crash["proxy"]
    assert "lvs0" not in after_crash["link"], "the TUN dies with its last fd"

    fresh = start(agents, d, spec())
    removed = fresh.ask("cleanup")["removed"]
    assert sorted(removed) == sorted(
        [
            "address 192.168.1.254/24 dev eth1",
            "rule 1000: iif eth1 lookup 469",
            f"proxy neighbour {VIP} dev eth0",
        ]
    )
    clean = dump(d)
    assert clean["proxy"] == ""
    assert "lookup 469" not in clean["rule"]
    assert "192.168.1.254" not in clean["addr"]
    assert "table 469" not in clean["route"]

    # The recovered namespace takes a new setup, identical to the first one.
    assert fresh.ask("setup").get("error") is None
    again = dump(d)
    assert (again["proxy"], again["rule"]) == (tun_up["proxy"], tun_up["rule"])
    assert "192.168.1.254/24 scope global secondary eth1:1" in again["addr"]
    assert fresh.ask("teardown")["ok"] is True
    assert dump(d) == clean


def test_cleanup_stale_refuses_while_a_director_holds_the_tun(
    lab: Lab, agents: list[Agent]
) -> None:
    live = start(agents, lab.director, spec())
    assert live.ask("setup").get("error") is None
    other = start(agents, lab.director, spec())
    assert "exists, so a director still holds it" in other.ask("cleanup")["error"]
    assert f"{VIP} dev eth0 proxy" in in_ns(lab.director, "ip", "neigh", "show", "proxy")


def test_marked_packets_go_to_the_tun_of_their_mark(lab: Lab, agents: list[Agent]) -> None:
    d = lab.director
    # The operator's marking rule: UDP to the VIP, port 9 only.
    in_ns(d, "nft", "add table ip opmark")
    in_ns(d, "nft", "add chain ip opmark pre { type filter hook prerouting priority mangle; }")
    in_ns(d, "nft", f"add rule ip opmark pre ip daddr {VIP} udp dport 9 meta mark set 1")
    before = dump(d)
    agent = start(agents, d, spec(fwmarks=(1,)))
    assert agent.ask("setup").get("error") is None
    rules = in_ns(d, "ip", "rule")
    assert "1001:\tfrom all iif lvs0 lookup main" in rules, rules
    assert "1002:\tfrom all fwmark 0x1 lookup 470" in rules, rules
    assert "default dev lvs0m1 table 470" in in_ns(d, "ip", "route", "show", "table", "all")
    assert sysctl(d, "net.ipv4.conf.lvs0m1.rp_filter") == "0"

    send_udp(lab.client, VIP)  # port 9: marked
    got = agent.ask("read_mark", "1", CLIENT, VIP)
    assert got.get("packet"), got
    assert bytes.fromhex(got["packet"]).endswith(b"lvsd")
    code = f"import socket; socket.socket(2, 2).sendto(b'unmarked', ({VIP!r}, 10))"
    run(*python_in_ns(lab.client, code))
    got = agent.ask("read", CLIENT, VIP)
    assert got.get("packet"), got
    assert bytes.fromhex(got["packet"]).endswith(b"unmarked")

    # Killed: the TUNs go with it; cleanup_stale finds the mark's rule and the guard.
    agent.kill()
    fresh = start(agents, d, spec(fwmarks=(1,)))
    removed = fresh.ask("cleanup")["removed"]
    assert "rule 1001: iif lvs0 lookup 254" in removed
    assert "rule 1002: fwmark 1 lookup 470" in removed
    assert "lookup 470" not in in_ns(d, "ip", "rule")
    assert fresh.ask("setup").get("error") is None
    assert fresh.ask("teardown")["ok"] is True
    after = dump(d)
    assert (after["link"], after["route"], after["rule"]) == (
        before["link"],
        before["route"],
        before["rule"],
    )


@pytest.mark.parametrize("command", ["garp", "announce"])
def test_gratuitous_arp_announces_the_vip_with_the_public_mac(
    lab: Lab, agents: list[Agent], command: str
) -> None:
    code = "from tests.netns.test_plumbing import sniff_arp_main; sniff_arp_main()"
    sniffer = subprocess.Popen(
        python_in_ns(lab.client, code), cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert sniffer.stdout is not None
        assert sniffer.stdout.readline().strip() == "ready"
        agent = start(agents, lab.director, spec())
        assert agent.ask(command, "eth0", VIP, "2") == {"ok": True}
        frames = json.loads(sniffer.communicate(timeout=SNIFF_BOUND_S + TIMEOUT_S)[0])
    finally:
        if sniffer.poll() is None:
            sniffer.kill()
            sniffer.communicate()
    mac = mac_of(lab.director, "eth0")
    assert sorted(frames) == sorted([[1, mac, VIP, VIP], [2, mac, VIP, VIP]] * 2)


# --- code run inside the namespaces ----------------------------------------------------------


def _spec_from_json(text: str) -> PlumbingSpec:
    raw = json.loads(text)
    return PlumbingSpec(
        vips=tuple(IPv4Address(v) for v in raw["vips"]),
        tun=raw["tun"],
        public_iface=raw["public_iface"],
        private_iface=raw["private_iface"],
        reals=tuple(IPv4Address(r) for r in raw["reals"]),
        nat_router=None if raw["nat_router"] is None else IPv4Interface(raw["nat_router"]),
        nat_router_label=raw["nat_router_label"],
        table=raw["table"],
        rule_priority=raw["rule_priority"],
        fwmarks=tuple(raw["fwmarks"]),
    )


def _read_ipv4(fd: int, src: str, dst: str) -> bytes | None:
    """The first IPv4 packet src -> dst read from the TUN within the timeout (vnet header cut)."""
    want = socket.inet_aton(src) + socket.inet_aton(dst)
    for _ in range(64):
        ready, _, _ = select.select([fd], [], [], TIMEOUT_S)
        if not ready:
            return None
        frame = os.read(fd, 65536)[10:]
        if frame[:1] and frame[0] >> 4 == 4 and frame[12:20] == want:
            return frame
    return None


def _probe(addr: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(TIMEOUT_S)
        s.connect((addr, 9))
        s.send(b"probe")
        try:
            s.recv(64)
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
    return "answered"


def agent_main() -> None:
    """Director-side agent: reads commands on stdin, writes one JSON line for each."""
    s = _spec_from_json(sys.argv[1])
    plumbing = Plumbing(s)

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        cmd, *args = line.split()
        try:
            match cmd:
                case "setup":
                    plumbing.setup()
                    t = plumbing.tun
                    reply({"tun": {"name": t.name, "offloads": sorted(t.offloads)}})
                case "teardown":
                    plumbing.teardown()
                    reply({"ok": True, "changes": list(plumbing.changes)})
                case "cleanup":
                    reply({"removed": list(Plumbing.cleanup_stale(s))})
                case "read":
                    packet = _read_ipv4(plumbing.tun.fd, args[0], args[1])
                    reply({"packet": packet.hex() if packet else None})
                case "read_mark":
                    fd = plumbing.fwmark_tuns[int(args[0])].fd
                    packet = _read_ipv4(fd, args[1], args[2])
                    reply({"packet": packet.hex() if packet else None})
                case "probe":
                    reply({"result": _probe(args[0])})
                case "garp":
                    send_gratuitous_arp(args[0], IPv4Address(args[1]), int(args[2]), 0.05)
                    reply({"ok": True})
                case "announce":
                    asyncio.run(announce(args[0], [IPv4Address(args[1])], int(args[2]), 0.05))
                    reply({"ok": True})
                case _:
                    reply({"error": f"unknown command {cmd!r}"})
        except TunError as e:
            reply({"error": str(e), "changes": list(plumbing.changes)})


def sniff_arp_main() -> None:
    """Client-side sniffer: prints ready, then the ARP frames seen on eth0 as JSON."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)) as s:
        s.bind(("eth0", 0))
        print("ready", flush=True)
        seen: list[tuple[int, str, str, str]] = []
        # A bound, not an expectation: the four frames end the wait. The agent that sends
        # them starts after "ready", which takes seconds on a loaded machine.
        deadline = time.monotonic() + SNIFF_BOUND_S
        while len(seen) < 4 and (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                frame = s.recv(128)
            except TimeoutError:
                break
            op = int.from_bytes(frame[20:22], "big")
            mac = frame[22:28].hex(":")
            seen.append((op, mac, socket.inet_ntoa(frame[28:32]), socket.inet_ntoa(frame[38:42])))
        print(json.dumps(seen), flush=True)


def test_find_iface_for_uses_connected_subnets(lab: Lab) -> None:
    code = (
        "from ipaddress import IPv4Address as A\n"
        "from director.dataplane.plumbing import find_iface_for\n"
        "from director.errors import TunError\n"
        "for a in ('10.0.1.5', '192.168.1.10', '203.0.113.9'):\n"
        "    try:\n"
        "        print(find_iface_for(A(a)))\n"
        "    except TunError as e:\n"
        "        print(e)\n"
    )
    out = run(*python_in_ns(lab.director, code)).splitlines()
    assert out == [
        "eth0",
        "eth1",
        "find_iface_for(203.0.113.9): no interface has a connected subnet holding 203.0.113.9",
    ]
    run("ip", "-n", lab.director, "addr", "add", "10.0.1.2/24", "dev", "eth1")
    out = run(*python_in_ns(lab.director, code)).splitlines()
    assert out[0] == (
        "find_iface_for(10.0.1.5): 10.0.1.5 is in a /24 connected on several interfaces "
        "(eth0, eth1); name the interface"
    )
    run("ip", "-n", lab.director, "addr", "add", "10.0.1.6/28", "dev", "eth1")
    assert run(*python_in_ns(lab.director, code)).splitlines()[0] == "eth1", "longest prefix"
