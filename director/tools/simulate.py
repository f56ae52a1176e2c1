"""``lvsd simulate``: replay a trace of admin operations and packets, print IPVS's decisions.

Reads JSON Lines (docs/simulate.md) and answers "which real server gets this flow" with
the real parts: the service layer (director.ipvs.service), the schedulers and the connection
table, driven by crafted IPv4 packets through ``ConnTable.process`` so the data plane's
TCP state machine moves the active/inactive counters. Time is simulated (milliseconds
from 0); nothing touches the network.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import struct
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from director.dataplane import fastpath
from director.ipvs.service import (
    CONN_INFO_DEST,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPVS,
    IPVSError,
    VirtualService,
    format_addr,
)

DEFAULT_VIP = "10.0.1.5"
DEFAULT_VPORT = 80
DEFAULT_MAX_CONNS = 65536
# An "advance" moves the clock in steps of at most this much, so timers fire in order.
ADVANCE_STEP_MS = 1000
MAX_ADVANCE_S = 30 * 86400

TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10
TCP_FLAGS = {
    "S": TCP_SYN,
    "SA": TCP_SYN | TCP_ACK,
    "A": TCP_ACK,
    "F": TCP_FIN,
    "FA": TCP_FIN | TCP_ACK,
    "R": TCP_RST,
    "": 0,
}
PROTOCOLS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}


class TraceError(ValueError):
    """A trace line that cannot be applied; the message says which key and why."""


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def craft_packet(
    proto: int, saddr: int, sport: int, daddr: int, dport: int, tcp_flags: int = 0
) -> bytearray:
    """An IPv4 TCP segment (no payload) or UDP datagram (4 bytes), checksums correct."""
    if proto == IPPROTO_TCP:
        ack = 1 if tcp_flags & TCP_ACK else 0
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, ack, 5 << 4, tcp_flags, 65535, 0, 0)
    else:
        l4 = struct.pack("!HHHH", sport, dport, 12, 0) + b"lvsd"
    pseudo = struct.pack("!IIBBH", saddr, daddr, 0, proto, len(l4))
    csum = _checksum(pseudo + l4)
    if proto == IPPROTO_UDP and csum == 0:
        csum = 0xFFFF
    at = 16 if proto == IPPROTO_TCP else 6
    l4 = l4[:at] + struct.pack("!H", csum) + l4[at + 2 :]
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, saddr, daddr)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return bytearray(ip + l4)


def packet_dst(buf: bytearray) -> tuple[int, int]:
    """(daddr, dport) of an IPv4 TCP/UDP packet, host order."""
    ihl = (buf[0] & 0x0F) * 4
    daddr: int = struct.unpack_from("!I", buf, 16)[0]
    dport: int = struct.unpack_from("!H", buf, ihl + 2)[0]
    return daddr, dport


@dataclass(frozen=True, slots=True)
class SimConn:
    """A connection the trace opened: its client, virtual and real ends and its dest."""

    proto: int
    caddr: int
    cport: int
    vaddr: int
    vport: int
    daddr: int
    dport: int
    dest: str


def _verdict_names() -> dict[int, str]:
    names = {}
    for name in dir(fastpath):
        if name in ("FORWARD", "NEW", "LOCAL", "FRAGMENT") or name.startswith("DROP_"):
            value = getattr(fastpath, name)
            if isinstance(value, int):
                names[value] = name
    return names


class Simulator:
    """Applies trace operations (dicts) and returns the output records for each.

    ``table_factory(max_conns)`` makes the connection table (default: the fast path
    ``director.dataplane.fastpath`` chose); ``seed`` seeds the draws of a "connect" without "rand".
    """

    def __init__(
        self,
        max_conns: int = DEFAULT_MAX_CONNS,
        seed: int = 0,
        table_factory: Callable[[int], fastpath.ConnTable] | None = None,
    ) -> None:
        self.max_conns = max_conns
        self._table_factory = table_factory or fastpath.ConnTable
        self.now = 0
        self.ipvs: IPVS | None = None
        self.svc: VirtualService | None = None
        self.conns: dict[str, SimConn] = {}
        self._by_tuple: dict[tuple[int, int, int, int, int], SimConn] = {}
        self._draws: deque[int] = deque()
        self._fallback = random.Random(seed)
        self._verdicts = _verdict_names()

    def replay(self, lines: Iterable[str]) -> Iterator[str]:
        """One output line (JSON, no newline) per decision; bad lines become error records."""
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                op = json.loads(line)
                if not isinstance(op, dict):
                    raise TraceError("a line must be a JSON object")
                records = self.apply(op)
            except (json.JSONDecodeError, TraceError, IPVSError) as e:
                records = [{"error": _message(e), "line": n}]
            for r in records:
                yield json.dumps(r, separators=(",", ":"))

    def apply(self, op: dict[str, Any]) -> list[dict[str, Any]]:
        """Apply one operation; raises TraceError or IPVSError for a line that cannot be."""
        kind = op.get("op")
        if kind == "service":
            self._service(op)
            return []
        if not isinstance(kind, str):
            raise TraceError("'op' missing")
        ipvs, svc = self._need_service()
        self._draws.clear()
        match kind:
            case "add_dest":
                svc.add_dest(
                    _addr(op, "addr"),
                    _int(op, "port", 0, 0, 65535),
                    _int(op, "weight", 1, 0, 2**31 - 1),
                    _int(op, "u_threshold", 0, 0, 2**31 - 1),
                    _int(op, "l_threshold", 0, 0, 2**31 - 1),
                )
            case "edit_dest":
                svc.edit_dest(
                    _addr(op, "addr"),
                    _int(op, "port", 0, 0, 65535),
                    weight=_opt_int(op, "weight"),
                    u_threshold=_opt_int(op, "u_threshold"),
                    l_threshold=_opt_int(op, "l_threshold"),
                )
            case "del_dest":
                svc.del_dest(_addr(op, "addr"), _int(op, "port", 0, 0, 65535))
            case "set_scheduler":
                svc.set_scheduler(_str(op, "scheduler"), _flags(op))
            case "set_timeouts":
                ipvs.set_timeouts(
                    _int(op, "tcp", 0, 0, 2**31 - 1),
                    _int(op, "tcpfin", 0, 0, 2**31 - 1),
                    _int(op, "udp", 0, 0, 2**31 - 1),
                )
            case "connect":
                return [self._connect(op, svc)]
            case "pick":
                return [self._pick(op, svc)]
            case "packet":
                return self._packet(op)
            case "advance":
                self._advance(op, ipvs)
            case "snapshot":
                return [self.snapshot(svc)]
            case _:
                raise TraceError(f"op: unknown operation {kind!r}")
        return []

    def snapshot(self, svc: VirtualService) -> dict[str, Any]:
        return {
            "snapshot": [
                {
                    "dest": str(d),
                    "weight": d.weight,
                    "active": d.active_conns,
                    "inactive": d.inactive_conns,
                    "persist": d.persist_conns,
                    "overload": d.overloaded,
                }
                for d in svc.dests
            ]
        }

    def _rand(self, n: int) -> int:
        if not self._draws:
            return self._fallback.randrange(n)
        value = self._draws.popleft()
        if not 0 <= value < n:
            raise TraceError(f"rand: draw {value} outside [0, {n})")
        return value

    def _need_service(self) -> tuple[IPVS, VirtualService]:
        if self.ipvs is None or self.svc is None:
            raise TraceError("no service yet: the first operation must be 'service'")
        return self.ipvs, self.svc

    def _service(self, op: dict[str, Any]) -> None:
        if self.svc is not None:
            raise TraceError("service: only one service per trace")
        proto = _proto(op)
        timeout = _int(op, "persistent", 0, 0, 2**31 - 1)
        pmask = int(_addr(op, "pmask", "255.255.255.255"))
        fwmark = _int(op, "fwmark", 0, 0, 2**32 - 1)
        if fwmark and ("vip" in op or "vport" in op):
            raise TraceError("fwmark: a firewall-mark service has no 'vip' or 'vport'")
        table = self._table_factory(self.max_conns)
        ipvs = IPVS(table, rand=self._rand)
        self.svc = ipvs.add_service(
            proto,
            _addr(op, "vip", DEFAULT_VIP),
            _int(op, "vport", 80, 0, 65535),
            _str(op, "scheduler"),
            _flags(op),
            timeout=timeout,
            netmask=pmask,
            fwmark=fwmark,
        )
        self.ipvs = ipvs

    def _take_draws(self, op: dict[str, Any]) -> None:
        draws = op.get("rand", [])
        if not isinstance(draws, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in draws
        ):
            raise TraceError("rand: must be a list of integers")
        self._draws.extend(draws)

    def _flow(self, op: dict[str, Any], svc: VirtualService) -> tuple[int, int, int, int]:
        caddr = _addr(op, "client")
        cport = _int(op, "cport", 40000, 0, 65535)
        if svc.fwmark:  # marked packets: any address and port belong to the service
            vaddr = _addr(op, "daddr", DEFAULT_VIP)
            vport = _int(op, "vport", DEFAULT_VPORT, 0, 65535)
        else:
            vaddr = _addr(op, "daddr", str(ipaddress.IPv4Address(svc.vaddr)))
            vport = _int(op, "vport", svc.vport, 0, 65535)
        return caddr, cport, vaddr, vport

    def _connect(self, op: dict[str, Any], svc: VirtualService) -> dict[str, Any]:
        ipvs = self.ipvs
        assert ipvs is not None
        cid = _str(op, "id")
        caddr, cport, vaddr, vport = self._flow(op, svc)
        self._take_draws(op)
        proto = svc.protocol
        flags = TCP_SYN if proto == IPPROTO_TCP else 0
        table = ipvs.table
        buf = craft_packet(proto, caddr, cport, vaddr, vport, flags)
        verdict = table.process(buf, self.now)
        dest: str | None = None
        if verdict == fastpath.NEW:
            # The packet carries the service's mark, if it has one (ip_vs_service_find).
            target = ipvs.find_service(proto, vaddr, vport, svc.fwmark)
            handle = ipvs.new_connection(proto, caddr, cport, vaddr, vport, self.now, target)
            if handle is None:
                return {"id": cid, "dest": None}
            d = ipvs.dest_at(table.conn_info(handle)[CONN_INFO_DEST])
            dest = None if d is None else str(d)
            buf = craft_packet(proto, caddr, cport, vaddr, vport, flags)
            verdict = table.process(buf, self.now)
        if verdict != fastpath.FORWARD:
            return {"id": cid, "dest": None, "verdict": self._verdicts.get(verdict, verdict)}
        daddr, dport = packet_dst(buf)
        if dest is None:
            known = self._by_tuple.get((proto, caddr, cport, vaddr, vport))
            dest = known.dest if known is not None else format_addr(daddr, dport)
        conn = SimConn(proto, caddr, cport, vaddr, vport, daddr, dport, dest)
        self.conns[cid] = conn
        self._by_tuple[(proto, caddr, cport, vaddr, vport)] = conn
        return {"id": cid, "dest": dest}

    def _pick(self, op: dict[str, Any], svc: VirtualService) -> dict[str, Any]:
        caddr, cport, vaddr, vport = self._flow(op, svc)
        self._take_draws(op)
        d = svc.pick(svc.protocol, caddr, cport, vaddr, vport, self.now)
        return {"dest": None if d is None else str(d)}

    def _packet(self, op: dict[str, Any]) -> list[dict[str, Any]]:
        ipvs = self.ipvs
        assert ipvs is not None
        cid = _str(op, "id")
        conn = self.conns.get(cid)
        if conn is None:
            raise TraceError(f"id: no connection {cid!r}")
        direction = op.get("dir", "in")
        tcp_flags = op.get("flags", "A")
        if not isinstance(tcp_flags, str) or tcp_flags not in TCP_FLAGS:
            raise TraceError(f"flags: expected one of S, SA, A, F, FA, R or '', got {tcp_flags!r}")
        bits = TCP_FLAGS[tcp_flags] if conn.proto == IPPROTO_TCP else 0
        if direction == "in":
            buf = craft_packet(conn.proto, conn.caddr, conn.cport, conn.vaddr, conn.vport, bits)
        elif direction == "out":
            buf = craft_packet(conn.proto, conn.daddr, conn.dport, conn.caddr, conn.cport, bits)
        else:
            raise TraceError(f"dir: expected 'in' or 'out', got {direction!r}")
        verdict = ipvs.table.process(buf, self.now)
        if verdict == fastpath.FORWARD:
            return []
        return [{"id": cid, "verdict": self._verdicts.get(verdict, verdict)}]

    def _advance(self, op: dict[str, Any], ipvs: IPVS) -> None:
        seconds = op.get("seconds")
        if (
            not isinstance(seconds, int | float)
            or isinstance(seconds, bool)
            or not 0 <= seconds <= MAX_ADVANCE_S
        ):
            raise TraceError(f"seconds: expected a number in [0, {MAX_ADVANCE_S}], got {seconds!r}")
        end = self.now + round(seconds * 1000)
        while self.now < end:
            self.now = min(end, self.now + ADVANCE_STEP_MS)
            ipvs.expire(self.now)


def _message(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"invalid JSON: {e.msg} at column {e.colno}"
    return str(e)


def _str(op: dict[str, Any], key: str) -> str:
    value = op.get(key)
    if not isinstance(value, str) or not value:
        raise TraceError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def _int(op: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = op.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise TraceError(f"{key}: expected an integer in [{lo}, {hi}], got {value!r}")
    return value


def _opt_int(op: dict[str, Any], key: str) -> int | None:
    if key not in op:
        return None
    return _int(op, key, 0, 0, 2**31 - 1)


def _addr(op: dict[str, Any], key: str, default: str | None = None) -> int:
    value = op.get(key, default)
    if not isinstance(value, str):
        raise TraceError(f"{key}: expected an IPv4 address, got {value!r}")
    try:
        return int(ipaddress.IPv4Address(value))
    except ValueError as e:
        raise TraceError(f"{key}: {e}") from e


def _proto(op: dict[str, Any]) -> int:
    value = op.get("proto", "tcp")
    if value not in PROTOCOLS:
        raise TraceError(f"proto: expected 'tcp' or 'udp', got {value!r}")
    return PROTOCOLS[value]


def _flags(op: dict[str, Any]) -> frozenset[str]:
    value = op.get("flags", [])
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise TraceError(f"flags: expected a list of strings, got {value!r}")
    return frozenset(value)


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="replay a JSON Lines trace through the schedulers and the connection table",
    )
    p.add_argument("trace", nargs="?", default="-", help="the trace file (default: stdin)")
    p.add_argument(
        "--max-conns",
        type=int,
        default=DEFAULT_MAX_CONNS,
        help="connection table size (default: %(default)s)",
    )
    p.set_defaults(func=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    sim = Simulator(max_conns=args.max_conns)
    if args.trace == "-":
        return _replay(sim, sys.stdin)
    try:
        f = open(args.trace, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as e:
        print(f"lvsd: {args.trace}: {e.strerror}", file=sys.stderr)
        return 1
    with f:
        return _replay(sim, f)


def _replay(sim: Simulator, lines: TextIO) -> int:
    try:
        for out in sim.replay(lines):
            sys.stdout.write(out + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as other filters do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0
