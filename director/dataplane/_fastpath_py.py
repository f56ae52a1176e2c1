"""The VS-NAT connection table and packet rewrite in pure Python: the spec of _fastpath.c.

This module and the C extension `director.dataplane._fastpath` have the same names, docstrings,
verdicts and table state; `director.dataplane.fastpath` picks one. Every test runs on both, and
differential tests compare them byte for byte, so a behaviour change lands here first.

Conventions of the whole API:
* IPv4 addresses are ints in host order (192.0.2.1 is 0xC0000201); ports are host-order ints.
* `now` is a monotonic time in integer milliseconds supplied by the caller; the table never
  reads a clock, so tests and `lvsd simulate` drive time. Timeouts are set in seconds.
* Packets are IPv4 datagrams without a link header in a `bytearray`, rewritten in place.
* Forwarding methods (ip_vs_conn.h): a connection takes its dest's (`set_dest_fwd`) when it
  is inserted. MASQ rewrites (VS-NAT). DROUTE leaves the packet as it is and sends it framed
  to the real server's link address through the dest's packet socket (`set_dest_link`): the
  verdict is ROUTE. Non-MASQ connections carry NOOUTPUT and follow the TCP input-only table.
  `process_vnet` takes the same datagram behind the 10-byte `struct virtio_net_hdr` that a
  TUN device opened with IFF_VNET_HDR prepends (fields little-endian, as on x86).
* The table knows connections, destinations and services by slot number, not virtual
  services by address: NEW says "no connection, and this packet may start one"; the caller
  matches the VIP:port against its services, schedules, calls `insert` and `process` again.
* Single-threaded: call from the event-loop thread only (`drain` releases the GIL in C but
  still owns the table while it runs).

Design of the table (the C file carries the same block with its own data structures):
* Key: client side <proto, caddr, cport, vaddr, vport>, server side <proto, daddr, dport,
  caddr, cport>; templates <proto, snet, 0, vaddr, vport> in a separate key space that
  packets never match. Duplicate keys are allowed: the newest connection shadows older ones
  (the kernel's hlist_add_head), and an older one becomes visible again when the newer goes.
* Hash: here, dicts keyed by the packed key as `bytes` (CPython's SipHash with a per-process
  random key, so clients cannot aim collisions); in C, a keyed multiply-xorshift.
* Expiry: every entry stores its deadline; packets only rewrite that field (lazy re-arm). A
  heap of (deadline, creation sequence, handle) here, a hashed timer wheel in C, files each
  entry once; a filing that comes due early is re-filed at the stored deadline, and one that
  is stale is dropped. Entries due together fire in (deadline, creation) order.
* Sync log: off until `enable_sync_log`; then each insert, TCP state change, template
  invalidation and removal appends a record captured at the event to a bounded log (a deque
  here, a fixed ring in C); a full log drops the new record and counts it lost.
* Cost: lookup, insert and per-packet work O(1) expected; expire O(log n) per entry that is
  due or re-filed, never a scan of the table.
"""

from __future__ import annotations

import heapq
import os
import struct
from array import array
from collections import OrderedDict, deque

__all__ = [
    "APP",
    "CLOSE",
    "CLOSE_WAIT",
    "CONN_F_APP",
    "CONN_F_DROUTE",
    "CONN_F_FWD_MASK",
    "CONN_F_HASHED",
    "CONN_F_INACTIVE",
    "CONN_F_IN_SEQ",
    "CONN_F_MASQ",
    "CONN_F_NOOUTPUT",
    "CONN_F_NO_CPORT",
    "CONN_F_OUT_SEQ",
    "CONN_F_TEMPLATE",
    "CONN_F_TUNNEL",
    "DEST_ACTIVE",
    "DEST_ADDR",
    "DEST_AVAILABLE",
    "DEST_CONNS",
    "DEST_FIELDS",
    "DEST_FWD",
    "DEST_INACTIVE",
    "DEST_INBYTES",
    "DEST_INPKTS",
    "DEST_LINK_FD",
    "DEST_L_THRESHOLD",
    "DEST_MAC",
    "DEST_OUTBYTES",
    "DEST_OUTPKTS",
    "DEST_OVERLOAD",
    "DEST_PERSIST",
    "DEST_PORT",
    "DEST_SRC_MAC",
    "DEST_SVC",
    "DEST_U_THRESHOLD",
    "DROP_BAD_HEADER",
    "DROP_BAD_ICMP",
    "DROP_DEST_UNAVAILABLE",
    "DROP_IP_OPTIONS",
    "DROP_NO_CONN",
    "DROP_NO_NEIGH",
    "DROP_TABLE_FULL",
    "DROP_TRUNCATED",
    "DROP_TX",
    "DROP_UNKNOWN_PROTO",
    "ESTABLISHED",
    "FIN_WAIT",
    "FORWARD",
    "FRAGMENT",
    "LAST_ACK",
    "LISTEN",
    "LOCAL",
    "NEW",
    "NONE",
    "PROTO_TCP",
    "PROTO_UDP",
    "READ_SIZE",
    "ROUTE",
    "STATE_NAMES",
    "SVC_CONNS",
    "SVC_FIELDS",
    "SVC_INBYTES",
    "SVC_INPKTS",
    "SVC_OUTBYTES",
    "SVC_OUTPKTS",
    "SYNACK",
    "SYN_RECV",
    "SYN_SENT",
    "TEMPLATE_EXPIRED_TIMEOUT_S",
    "TIME_WAIT",
    "TUNNEL",
    "UDP",
    "VERDICT_NAMES",
    "VNET_F_NEEDS_CSUM",
    "VNET_HDR_LEN",
    "ConnTable",
]

FORWARD = 0
NEW = 1
LOCAL = 2
FRAGMENT = 3
DROP_TRUNCATED = 4
DROP_BAD_HEADER = 5
DROP_IP_OPTIONS = 6
DROP_UNKNOWN_PROTO = 7
DROP_NO_CONN = 8
DROP_TABLE_FULL = 9
DROP_BAD_ICMP = 10
DROP_TX = 11
DROP_DEST_UNAVAILABLE = 12
APP = 13
ROUTE = 14
DROP_NO_NEIGH = 15
TUNNEL = 16

VERDICT_NAMES: dict[int, str] = {
    FORWARD: "FORWARD",
    NEW: "NEW",
    LOCAL: "LOCAL",
    FRAGMENT: "FRAGMENT",
    DROP_TRUNCATED: "DROP_TRUNCATED",
    DROP_BAD_HEADER: "DROP_BAD_HEADER",
    DROP_IP_OPTIONS: "DROP_IP_OPTIONS",
    DROP_UNKNOWN_PROTO: "DROP_UNKNOWN_PROTO",
    DROP_NO_CONN: "DROP_NO_CONN",
    DROP_TABLE_FULL: "DROP_TABLE_FULL",
    DROP_BAD_ICMP: "DROP_BAD_ICMP",
    DROP_TX: "DROP_TX",
    DROP_DEST_UNAVAILABLE: "DROP_DEST_UNAVAILABLE",
    APP: "APP",
    ROUTE: "ROUTE",
    DROP_NO_NEIGH: "DROP_NO_NEIGH",
    TUNNEL: "TUNNEL",
}

NONE = 0
ESTABLISHED = 1
SYN_SENT = 2
SYN_RECV = 3
FIN_WAIT = 4
TIME_WAIT = 5
CLOSE = 6
CLOSE_WAIT = 7
LAST_ACK = 8
LISTEN = 9
SYNACK = 10
UDP = 11

STATE_NAMES: dict[int, str] = {
    NONE: "NONE",
    ESTABLISHED: "ESTABLISHED",
    SYN_SENT: "SYN_SENT",
    SYN_RECV: "SYN_RECV",
    FIN_WAIT: "FIN_WAIT",
    TIME_WAIT: "TIME_WAIT",
    CLOSE: "CLOSE",
    CLOSE_WAIT: "CLOSE_WAIT",
    LAST_ACK: "LAST_ACK",
    LISTEN: "LISTEN",
    SYNACK: "SYNACK",
    UDP: "UDP",
}

PROTO_TCP = 6
PROTO_UDP = 17

CONN_F_HASHED = 0x0040
CONN_F_INACTIVE = 0x0100
CONN_F_OUT_SEQ = 0x0200
CONN_F_IN_SEQ = 0x0400
CONN_F_NO_CPORT = 0x0800
CONN_F_TEMPLATE = 0x1000
CONN_F_APP = 0x4000
CONN_F_FWD_MASK = 0x0007
CONN_F_MASQ = 0x0000
CONN_F_TUNNEL = 0x0002
CONN_F_DROUTE = 0x0003
CONN_F_NOOUTPUT = 0x0080

DEST_ACTIVE = 0
DEST_INACTIVE = 1
DEST_PERSIST = 2
DEST_OVERLOAD = 3
DEST_U_THRESHOLD = 4
DEST_L_THRESHOLD = 5
DEST_CONNS = 6
DEST_INPKTS = 7
DEST_OUTPKTS = 8
DEST_INBYTES = 9
DEST_OUTBYTES = 10
DEST_SVC = 11
DEST_ADDR = 12
DEST_PORT = 13
DEST_AVAILABLE = 14
DEST_FWD = 15
DEST_LINK_FD = 16
DEST_MAC = 17
DEST_SRC_MAC = 18
DEST_FIELDS = 19

SVC_CONNS = 0
SVC_INPKTS = 1
SVC_OUTPKTS = 2
SVC_INBYTES = 3
SVC_OUTBYTES = 4
SVC_FIELDS = 5

VNET_HDR_LEN = 10
VNET_F_NEEDS_CSUM = 1
TEMPLATE_EXPIRED_TIMEOUT_S = 60
READ_SIZE = 65550

# ip_vs_proto_tcp.c tcp_states[]: next state by [class][current state]; classes syn fin ack rst.
(SR, ES, SS, FW, TW, CL, CW, LA, LI, SA) = (
    SYN_RECV,
    ESTABLISHED,
    SYN_SENT,
    FIN_WAIT,
    TIME_WAIT,
    CLOSE,
    CLOSE_WAIT,
    LAST_ACK,
    LISTEN,
    SYNACK,
)
_INPUT = (
    (SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR),
    (CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW),
    (ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES),
    (CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR),
)
_OUTPUT = (
    (SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR),
    (TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW),
    (ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES),
    (CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL),
)
# The input-only direction, for connections whose replies bypass the director (NOOUTPUT).
_INPUT_ONLY = (
    (SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR),
    (CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW),
    (ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES),
    (CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL),
)
_ACTIVE_STATES = frozenset((ESTABLISHED, SYN_SENT, SYN_RECV, SYNACK))
_DEFAULT_TCP_TIMEOUTS = (2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120)
_DEFAULT_UDP_TIMEOUT = 300
_ICMP_ERRORS = frozenset((3, 4, 11, 12))
_DROPS = tuple(v for v, name in VERDICT_NAMES.items() if name.startswith("DROP_"))

_KEY = struct.Struct("!IIHH")
_TKEY = struct.Struct("!BIIH")
# One entry of dump_from: the layout of struct snap_rec in fastpath/snap_methods.h.
_SNAP = struct.Struct("<qQiiiIIIIIiiIiiHHHHBB2x")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_SEQACK = struct.Struct("!II")
# What a sync log record keeps of a connection's flags (IPVS sync's: the method travels).
_LOGGED_FLAGS = (
    CONN_F_INACTIVE
    | CONN_F_TEMPLATE
    | CONN_F_IN_SEQ
    | CONN_F_OUT_SEQ
    | CONN_F_FWD_MASK
    | CONN_F_NOOUTPUT
)
_VNET = struct.Struct("<BBHHHH")
_ETH_P_IP = b"\x08\x00"
_ETH_HLEN = 14


def _fold(s: int) -> int:
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _diff32(old: int, new: int) -> int:
    """One's-complement difference of two 32-bit words, to add into a checksum (RFC 1624)."""
    return (~old >> 16 & 0xFFFF) + (~old & 0xFFFF) + (new >> 16) + (new & 0xFFFF)


def _diff16(old: int, new: int) -> int:
    return (~old & 0xFFFF) + new


def _apply(buf: bytearray, at: int, diff: int, partial: bool, udp: bool) -> None:
    """Add `diff` into the checksum at buf[at]: complemented, or a raw partial sum if `partial`."""
    c = buf[at] << 8 | buf[at + 1]
    if partial:
        c = _fold(c + diff)
    else:
        if udp and c == 0:
            return
        c = ~_fold((~c & 0xFFFF) + diff) & 0xFFFF
        if udp and c == 0:
            c = 0xFFFF
    buf[at] = c >> 8
    buf[at + 1] = c & 0xFF


def _checksum(buf: bytearray, start: int, end: int) -> int:
    """RFC 1071 checksum of buf[start:end] (0 when the region already carries a valid one)."""
    words = (end - start) // 2
    s = sum(struct.unpack_from(f"!{words}H", buf, start))
    if (end - start) & 1:
        s += buf[end - 1] << 8
    return ~_fold(s) & 0xFFFF


def _after(a: int, b: int) -> bool:
    """Serial-number comparison: 32-bit sequence number a is after b (the kernel's after())."""
    return 0 < (a - b) & 0xFFFFFFFF < 0x80000000


def _fix_seq(c: _Conn, inbound: bool, seq: int, ack: int) -> tuple[int, int]:
    """ip_vs_app's vs_fix_seq / vs_fix_ack_seq for one packet of `c`: (seq, ack) to send."""
    if inbound:
        s_flag, s_init, s_delta, s_prev = CONN_F_IN_SEQ, c.in_init, c.in_delta, c.in_prev
        a_flag, a_init, a_delta, a_prev = CONN_F_OUT_SEQ, c.out_init, c.out_delta, c.out_prev
    else:
        s_flag, s_init, s_delta, s_prev = CONN_F_OUT_SEQ, c.out_init, c.out_delta, c.out_prev
        a_flag, a_init, a_delta, a_prev = CONN_F_IN_SEQ, c.in_init, c.in_delta, c.in_prev
    if c.flags & s_flag:
        seq = (seq + (s_delta if _after(seq, s_init) else s_prev)) & 0xFFFFFFFF
    if c.flags & a_flag:
        # conntrack seqadj's boundary (the acked byte in the other side's numbering after
        # init_seq), not ip_vs_app's init_seq + delta, which misplaces an ACK of exactly the
        # data before a rewrite that shortened the payload.
        back = a_delta if _after((ack - a_prev) & 0xFFFFFFFF, a_init) else a_prev
        ack = (ack - back) & 0xFFFFFFFF
    return seq, ack


class _Conn:
    __slots__ = (
        "caddr",
        "cport",
        "ctl",
        "daddr",
        "dest",
        "dport",
        "expires",
        "filed",
        "flags",
        "in_delta",
        "in_init",
        "in_prev",
        "n_control",
        "out_delta",
        "out_init",
        "out_prev",
        "proto",
        "seq",
        "state",
        "timeout_ms",
        "vaddr",
        "vport",
    )

    def __init__(self, proto: int, caddr: int, cport: int, vaddr: int, vport: int) -> None:
        self.proto = proto
        self.caddr = caddr
        self.cport = cport
        self.vaddr = vaddr
        self.vport = vport
        self.daddr = 0
        self.dport = 0
        self.dest = 0
        self.state = NONE
        self.flags = 0
        self.timeout_ms = 0
        self.expires = 0
        self.filed = 0
        self.n_control = 0
        self.ctl = -1
        self.seq = 0
        self.in_init = self.in_delta = self.in_prev = 0
        self.out_init = self.out_delta = self.out_prev = 0

    def binding(self) -> tuple[int, int, int, int, int, int, int, int]:
        """(proto, caddr, cport, vaddr, vport, daddr, dport, dest): what conn_info and a
        sync log record begin with."""
        return (
            self.proto,
            self.caddr,
            self.cport,
            self.vaddr,
            self.vport,
            self.daddr,
            self.dport,
            self.dest,
        )


def _tcp_not_rst(buf: bytearray) -> bool:
    """Whether a vnet-headed packet is an IPv4 TCP segment without RST (set_report_no_conn)."""
    if len(buf) < VNET_HDR_LEN + 20 or buf[VNET_HDR_LEN] >> 4 != 4:
        return False
    ihl = (buf[VNET_HDR_LEN] & 0x0F) * 4
    if buf[VNET_HDR_LEN + 9] != PROTO_TCP or len(buf) < VNET_HDR_LEN + ihl + 14:
        return False
    return not buf[VNET_HDR_LEN + ihl + 13] & 0x04


def _check_range(name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{name}: must be in {lo}..{hi}, got {value}")


def _wrap32(v: int) -> int:
    """v as a signed 32-bit value, as the C table stores a delta."""
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


def _check_lookup(proto: int, a1: int, p1: int, a2: int, p2: int) -> None:
    if proto not in (PROTO_TCP, PROTO_UDP):
        raise ValueError(f"lookup: proto must be 6 or 17, got {proto}")
    for name, v in (("addr", a1), ("addr", a2)):
        _check_range(name, v, 0, 0xFFFFFFFF)
    for name, v in (("port", p1), ("port", p2)):
        _check_range(name, v, 0, 0xFFFF)


def _in_key(caddr: int, cport: int, vaddr: int, vport: int) -> bytes:
    return _KEY.pack(caddr, vaddr, cport, vport)


def _out_key(daddr: int, dport: int, caddr: int, cport: int) -> bytes:
    return _KEY.pack(daddr, caddr, dport, cport)


class ConnTable:
    """IPVS connections, templates and per-dest/per-svc counters, with the VS-NAT rewrite.

    `max_conns` bounds connections plus templates; `max_dests` and `max_svcs` size the
    counter arrays read through `dest_buffer()` and `svc_buffer()`. Call from one thread only.
    """

    def __init__(self, max_conns: int, max_dests: int = 4096, max_svcs: int = 1024) -> None:
        _check_range("max_conns", max_conns, 1, 1 << 30)
        _check_range("max_dests", max_dests, 1, 1 << 24)
        _check_range("max_svcs", max_svcs, 1, 1 << 24)
        self._max = max_conns
        self._report_no_conn = False
        self._max_dests = max_dests
        self._max_svcs = max_svcs
        self._conns: list[_Conn | None] = []
        self._free: list[int] = []
        self._count = 0
        self._seq = 0
        self._in: dict[int, dict[bytes, list[int]]] = {PROTO_TCP: {}, PROTO_UDP: {}}
        self._out: dict[int, dict[bytes, list[int]]] = {PROTO_TCP: {}, PROTO_UDP: {}}
        self._tmpl: dict[bytes, list[int]] = {}
        self._heap: list[tuple[int, int, int]] = []
        self._dests = array("q", bytes(8 * DEST_FIELDS * max_dests))
        self._svcs = array("q", bytes(8 * SVC_FIELDS * max_svcs))
        self._drops = dict.fromkeys(_DROPS, 0)
        # TCP entries in SYN_RECV, in the order they entered it: the eviction order.
        self._half_open: OrderedDict[int, None] = OrderedDict()
        self._evicted = 0
        self._tcp_timeouts = [t * 1000 for t in _DEFAULT_TCP_TIMEOUTS]
        self._udp_timeout = _DEFAULT_UDP_TIMEOUT * 1000
        self._log: deque[tuple[int, ...]] = deque()
        self._log_cap = 0
        self._log_lost = 0
        self._no_cport = 0

    # -- configuration ------------------------------------------------------------------

    @property
    def max_conns(self) -> int:
        """The capacity given at creation: connections plus templates."""
        return self._max

    def __len__(self) -> int:
        return self._count

    def set_timeout(self, proto: int, state: int, seconds: int) -> None:
        """Set the timeout of `state` (TCP states NONE..SYNACK, or UDP with proto 17), seconds."""
        _check_range("seconds", seconds, 0, 1 << 31)
        if proto == PROTO_TCP and NONE <= state <= SYNACK:
            self._tcp_timeouts[state] = seconds * 1000
        elif proto == PROTO_UDP and state == UDP:
            self._udp_timeout = seconds * 1000
        else:
            raise ValueError(f"set_timeout: no state {state} for protocol {proto}")

    def dest_buffer(self) -> memoryview:
        """Read-only int64 view of max_dests * DEST_FIELDS counters, DEST_* offsets per slot."""
        return memoryview(self._dests).toreadonly()

    def svc_buffer(self) -> memoryview:
        """Read-only int64 view of max_svcs * SVC_FIELDS counters, SVC_* offsets per slot."""
        return memoryview(self._svcs).toreadonly()

    def set_dest(
        self, dest: int, svc: int, addr: int, port: int, u_threshold: int, l_threshold: int
    ) -> None:
        """Write a dest slot's identity and thresholds (ip_vs_ctl.c add/edit update).

        Marks the slot AVAILABLE, as every add or edit does. OVERLOAD is cleared when the
        new u_threshold is 0 or larger than the old one. Refuses l_threshold > u_threshold,
        as the kernel does even when u_threshold is 0.
        """
        _check_range("dest", dest, 0, self._max_dests - 1)
        _check_range("svc", svc, 0, self._max_svcs - 1)
        _check_range("addr", addr, 0, 0xFFFFFFFF)
        _check_range("port", port, 0, 0xFFFF)
        _check_range("u_threshold", u_threshold, 0, 1 << 31)
        _check_range("l_threshold", l_threshold, 0, u_threshold)
        d = self._dests
        b = dest * DEST_FIELDS
        if u_threshold == 0 or u_threshold > d[b + DEST_U_THRESHOLD]:
            d[b + DEST_OVERLOAD] = 0
        d[b + DEST_U_THRESHOLD] = u_threshold
        d[b + DEST_L_THRESHOLD] = l_threshold
        d[b + DEST_SVC] = svc
        d[b + DEST_ADDR] = addr
        d[b + DEST_PORT] = port
        d[b + DEST_AVAILABLE] = 1

    def set_dest_available(self, dest: int, available: bool) -> None:
        """Set or clear a dest slot's AVAILABLE flag (IP_VS_DEST_F_AVAILABLE), nothing else.

        Clear it when the destination is deleted (``ipvsadm -d``): client-to-server packets
        of its connections then get DROP_DEST_UNAVAILABLE until it is set again (revival).
        """
        _check_range("dest", dest, 0, self._max_dests - 1)
        self._dests[dest * DEST_FIELDS + DEST_AVAILABLE] = 1 if available else 0

    def set_dest_fwd(self, dest: int, fwd: int) -> None:
        """Set a dest slot's forwarding method: CONN_F_MASQ, CONN_F_DROUTE or CONN_F_TUNNEL.

        Connections take it when they are inserted (ip_vs_bind_dest) and keep it: an edit
        changes the method of new connections only. A non-MASQ connection also gets NOOUTPUT.
        """
        _check_range("dest", dest, 0, self._max_dests - 1)
        if fwd not in (CONN_F_MASQ, CONN_F_TUNNEL, CONN_F_DROUTE):
            raise ValueError(f"set_dest_fwd: fwd must be 0, 2 or 3, got {fwd}")
        self._dests[dest * DEST_FIELDS + DEST_FWD] = fwd

    def set_dest_link(self, dest: int, fd: int, mac: int, src_mac: int) -> None:
        """Set where a dest slot's routed packets go: a packet socket `fd` bound to the real
        server's interface with PACKET_VNET_HDR (-1: none), the real's (or its next hop's)
        link address `mac` and the interface's own `src_mac`, 48-bit ints (0: unknown).

        A ROUTE packet is written to `fd` as one datagram: the virtio_net_hdr (csum_start
        moved past the Ethernet header), the Ethernet header, the IP packet. The slot's
        DEST_LINK_FD field holds fd + 1 (0: none).
        """
        _check_range("dest", dest, 0, self._max_dests - 1)
        _check_range("fd", fd, -1, 0x7FFFFFFF)
        _check_range("mac", mac, 0, (1 << 48) - 1)
        _check_range("src_mac", src_mac, 0, (1 << 48) - 1)
        b = dest * DEST_FIELDS
        self._dests[b + DEST_LINK_FD] = fd + 1
        self._dests[b + DEST_MAC] = mac
        self._dests[b + DEST_SRC_MAC] = src_mac

    def clear_dest(self, dest: int) -> None:
        """Zero a dest slot; refuses a slot that connections or templates still reference."""
        _check_range("dest", dest, 0, self._max_dests - 1)
        d = self._dests
        b = dest * DEST_FIELDS
        refs = d[b + DEST_ACTIVE] + d[b + DEST_INACTIVE] + d[b + DEST_PERSIST]
        if refs:
            raise ValueError(f"clear_dest: dest {dest} still has {refs} connections")
        for i in range(b, b + DEST_FIELDS):
            d[i] = 0

    def dest_of(self, buf: bytearray, offset: int) -> int:
        """The dest slot of the connection whose client-side key a TCP or UDP packet (at
        `offset` in `buf`: 0, or VNET_HDR_LEN behind a vnet header) carries; -1 if none or
        the packet is not one. For a TUNNEL verdict: where the caller encapsulates to."""
        _check_range("offset", offset, 0, VNET_HDR_LEN)
        if len(buf) < offset + 24 or buf[offset] != 0x45:
            return -1
        proto = buf[offset + 9]
        if proto not in (PROTO_TCP, PROTO_UDP):
            return -1
        l4 = offset + 20
        key = bytes(buf[offset + 12 : offset + 20]) + bytes(buf[l4 : l4 + 4])
        lst = self._in[proto].get(key)
        if not lst:
            return -1
        c = self._conns[lst[-1]]
        assert c is not None
        return c.dest

    def evictions(self) -> int:
        """Half-open (SYN_RECV) entries evicted so far to make room in a full table."""
        return self._evicted

    def drops(self) -> dict[str, int]:
        """Packets dropped so far, by verdict name (every DROP_* name present)."""
        return {VERDICT_NAMES[v]: n for v, n in self._drops.items()}

    # -- connections ----------------------------------------------------------------------

    def _alloc(self, keep: int = -1) -> int:
        if self._count >= self._max:
            # Evict the oldest half-open entry that controls nothing and is not `keep`.
            for v in self._half_open:
                c = self._conns[v]
                assert c is not None
                if c.n_control == 0 and v != keep:
                    self._release(v, c)
                    self._evicted += 1
                    break
            else:
                self._drops[DROP_TABLE_FULL] += 1
                return -1
        self._count += 1
        if self._free:
            return self._free.pop()
        self._conns.append(None)
        return len(self._conns) - 1

    def _get(self, handle: int) -> _Conn:
        if 0 <= handle < len(self._conns):
            c = self._conns[handle]
            if c is not None:
                return c
        raise ValueError(f"no connection with handle {handle}")

    def _file(self, h: int, c: _Conn) -> None:
        c.filed = c.expires
        heapq.heappush(self._heap, (c.expires, c.seq, h))

    def _arm(self, h: int, c: _Conn, now: int, timeout_ms: int) -> None:
        c.timeout_ms = timeout_ms
        c.expires = now + timeout_ms
        if c.expires < c.filed:
            self._file(h, c)

    def _bind(self, c: _Conn) -> None:
        d = self._dests
        b = c.dest * DEST_FIELDS
        if c.flags & CONN_F_TEMPLATE:
            d[b + DEST_PERSIST] += 1
        else:
            d[b + DEST_INACTIVE] += 1
            d[b + DEST_CONNS] += 1
            self._svcs[d[b + DEST_SVC] * SVC_FIELDS + SVC_CONNS] += 1
        u = d[b + DEST_U_THRESHOLD]
        if u and d[b + DEST_ACTIVE] + d[b + DEST_INACTIVE] >= u:
            d[b + DEST_OVERLOAD] = 1

    def _unbind(self, c: _Conn) -> None:
        d = self._dests
        b = c.dest * DEST_FIELDS
        if c.flags & CONN_F_TEMPLATE:
            d[b + DEST_PERSIST] -= 1
        elif c.flags & CONN_F_INACTIVE:
            d[b + DEST_INACTIVE] -= 1
        else:
            d[b + DEST_ACTIVE] -= 1
        total = d[b + DEST_ACTIVE] + d[b + DEST_INACTIVE]
        u = d[b + DEST_U_THRESHOLD]
        lo = d[b + DEST_L_THRESHOLD]
        if lo:
            if total < lo:
                d[b + DEST_OVERLOAD] = 0
        elif u:
            if total * 4 < u * 3:
                d[b + DEST_OVERLOAD] = 0
        else:
            d[b + DEST_OVERLOAD] = 0

    def _maps(self, c: _Conn) -> list[tuple[dict[bytes, list[int]], bytes]]:
        if c.flags & CONN_F_TEMPLATE:
            return [(self._tmpl, _TKEY.pack(c.proto, c.caddr, c.vaddr, c.vport))]
        return [
            (self._in[c.proto], _in_key(c.caddr, c.cport, c.vaddr, c.vport)),
            (self._out[c.proto], _out_key(c.daddr, c.dport, c.caddr, c.cport)),
        ]

    def _hash(self, h: int, c: _Conn) -> None:
        for m, k in self._maps(c):
            m.setdefault(k, []).append(h)
        c.flags |= CONN_F_HASHED

    def _unhash(self, h: int, c: _Conn) -> None:
        if not c.flags & CONN_F_HASHED:
            return
        for m, k in self._maps(c):
            lst = m[k]
            lst.remove(h)
            if not lst:
                del m[k]
        c.flags &= ~CONN_F_HASHED

    def _log_event(self, c: _Conn, removed: int) -> None:
        if not self._log_cap:
            return
        if len(self._log) >= self._log_cap:
            self._log_lost += 1
            return
        flags = c.flags & _LOGGED_FLAGS
        self._log.append((*c.binding(), c.state, flags, removed))

    def _release(self, h: int, c: _Conn) -> None:
        self._half_open.pop(h, None)
        self._log_event(c, 1)
        self._unhash(h, c)
        if c.ctl >= 0:
            ctl = self._conns[c.ctl]
            assert ctl is not None
            ctl.n_control -= 1
        self._unbind(c)
        if c.flags & CONN_F_NO_CPORT:
            self._no_cport -= 1
        self._conns[h] = None
        self._free.append(h)
        self._count -= 1

    def _check_dest(self, dest: int) -> None:
        _check_range("dest", dest, 0, self._max_dests - 1)

    def insert(
        self,
        proto: int,
        caddr: int,
        cport: int,
        vaddr: int,
        vport: int,
        daddr: int,
        dport: int,
        dest: int,
        now: int,
        ctl: int = -1,
    ) -> int:
        """Create a connection bound to `dest`; returns its handle, or -1 when the table is full.

        A full table first evicts its oldest half-open (SYN_RECV) entry that controls nothing
        and is not `ctl`; -1 only when there is none.

        proto is 6 (TCP, starts in NONE) or 17 (UDP, state UDP); the connection starts
        INACTIVE: dest inactconns++, dest and svc conns++, then OVERLOAD when u_threshold
        != 0 and active + inactive >= u_threshold. `ctl` is a template (or controlling
        connection) handle to attach to (its n_control++), or -1. -1 counts DROP_TABLE_FULL.
        A TCP connection inserted with cport 0 is CONN_F_NO_CPORT (an expected FTP data
        connection): the first client packet to vaddr:vport fills in its port.
        """
        if proto not in (PROTO_TCP, PROTO_UDP):
            raise ValueError(f"insert: proto must be 6 or 17, got {proto}")
        for name, v in (("caddr", caddr), ("vaddr", vaddr), ("daddr", daddr)):
            _check_range(name, v, 0, 0xFFFFFFFF)
        for name, v in (("cport", cport), ("vport", vport), ("dport", dport)):
            _check_range(name, v, 0, 0xFFFF)
        self._check_dest(dest)
        if ctl != -1:
            self._get(ctl)
        h = self._alloc(ctl)
        if h < 0:
            return -1
        c = _Conn(proto, caddr, cport, vaddr, vport)
        c.daddr = daddr
        c.dport = dport
        c.dest = dest
        fwd = self._dests[dest * DEST_FIELDS + DEST_FWD]
        c.flags = CONN_F_INACTIVE | fwd | (CONN_F_NOOUTPUT if fwd else 0)
        if proto == PROTO_TCP and cport == 0:
            c.flags |= CONN_F_NO_CPORT
            self._no_cport += 1
        c.ctl = ctl
        c.seq = self._seq
        self._seq += 1
        if proto == PROTO_TCP:
            c.state = NONE
            c.timeout_ms = self._tcp_timeouts[NONE]
        else:
            c.state = UDP
            c.timeout_ms = self._udp_timeout
        c.expires = now + c.timeout_ms
        self._conns[h] = c
        self._hash(h, c)
        if ctl >= 0:
            parent = self._conns[ctl]
            assert parent is not None
            parent.n_control += 1
        self._bind(c)
        self._file(h, c)
        self._log_event(c, 0)
        return h

    def insert_template(
        self, proto: int, snet: int, vaddr: int, vport: int, dest: int, timeout_s: int, now: int
    ) -> int:
        """Create a persistence template <proto, snet, 0, vaddr, vport> bound to `dest`.

        daddr:dport come from the dest slot; persistconns++ (OVERLOAD is set if the dest's
        total is already >= u_threshold). proto 0 stands for a fwmark service. Returns the
        handle, or -1 (and counts DROP_TABLE_FULL) when the table is full (after evicting
        a half-open entry if it can, as insert does).
        """
        if proto not in (0, PROTO_TCP, PROTO_UDP):
            raise ValueError(f"insert_template: proto must be 0, 6 or 17, got {proto}")
        _check_range("snet", snet, 0, 0xFFFFFFFF)
        _check_range("vaddr", vaddr, 0, 0xFFFFFFFF)
        _check_range("vport", vport, 0, 0xFFFF)
        _check_range("timeout_s", timeout_s, 0, 1 << 31)
        self._check_dest(dest)
        h = self._alloc()
        if h < 0:
            return -1
        c = _Conn(proto, snet, 0, vaddr, vport)
        b = dest * DEST_FIELDS
        c.daddr = self._dests[b + DEST_ADDR]
        c.dport = self._dests[b + DEST_PORT]
        c.dest = dest
        c.flags = CONN_F_TEMPLATE
        c.seq = self._seq
        self._seq += 1
        c.timeout_ms = timeout_s * 1000
        c.expires = now + c.timeout_ms
        self._conns[h] = c
        self._hash(h, c)
        self._bind(c)
        self._file(h, c)
        self._log_event(c, 0)
        return h

    def lookup_template(self, proto: int, snet: int, vaddr: int, vport: int) -> int:
        """The handle of the newest findable template for this key, or -1."""
        if not (0 <= snet <= 0xFFFFFFFF and 0 <= vaddr <= 0xFFFFFFFF and 0 <= vport <= 0xFFFF):
            raise ValueError("lookup_template: address or port out of range")
        if not 0 <= proto <= 255:
            raise ValueError(f"lookup_template: proto out of range: {proto}")
        lst = self._tmpl.get(_TKEY.pack(proto, snet, vaddr, vport))
        return lst[-1] if lst else -1

    def _template(self, handle: int) -> _Conn:
        c = self._get(handle)
        if not c.flags & CONN_F_TEMPLATE:
            raise ValueError(f"handle {handle} is not a template")
        return c

    def set_state(self, handle: int, state: int, now: int) -> None:
        """Move a TCP connection to `state` as a packet would (activity counters, timer).

        For application helpers (the FTP data connection starts in LISTEN) and tests.
        """
        c = self._get(handle)
        if c.proto != PROTO_TCP or c.flags & CONN_F_TEMPLATE or not NONE <= state <= SYNACK:
            raise ValueError(f"set_state: handle {handle} cannot take state {state}")
        self._set_state(handle, c, state, now)

    def touch_template(self, handle: int, now: int) -> None:
        """Re-arm a template to now + its timeout (done at each new connection through it)."""
        c = self._template(handle)
        self._arm(handle, c, now, c.timeout_ms)

    def invalidate_template(self, handle: int) -> None:
        """Make a template unfindable (vport and dport read 65535); it lives until it expires."""
        c = self._template(handle)
        # Its key changes: to a sync peer the template under the old key is gone.
        self._log_event(c, 1)
        self._unhash(handle, c)
        c.vport = 0xFFFF
        c.dport = 0xFFFF

    def lookup(self, proto: int, caddr: int, cport: int, vaddr: int, vport: int) -> int:
        """The handle of the connection a client packet caddr:cport -> vaddr:vport matches
        (the newest; an expected one with cport 0 is not tried), or -1."""
        _check_lookup(proto, caddr, cport, vaddr, vport)
        lst = self._in[proto].get(_in_key(caddr, cport, vaddr, vport))
        return lst[-1] if lst else -1

    def lookup_out(self, proto: int, daddr: int, dport: int, caddr: int, cport: int) -> int:
        """The handle of the connection a server packet daddr:dport -> caddr:cport matches,
        or -1."""
        _check_lookup(proto, daddr, dport, caddr, cport)
        lst = self._out[proto].get(_out_key(daddr, dport, caddr, cport))
        return lst[-1] if lst else -1

    def bind_app(self, handle: int) -> None:
        """Bind a TCP connection to the application helper (CONN_F_APP).

        From then on each of its packets that carries TCP payload is rewritten as usual
        (addresses, ports, state, counters) but its sequence numbers are left alone and
        the verdict is APP: the caller parses the payload, calls `seq_fix` (and after a
        change of length `seq_update`), and writes the packet out.
        """
        c = self._get(handle)
        if c.proto != PROTO_TCP or c.flags & CONN_F_TEMPLATE:
            raise ValueError(f"bind_app: handle {handle} is not a TCP connection")
        c.flags |= CONN_F_APP

    def seq_fix(self, handle: int, inbound: bool, seq: int, ack: int) -> tuple[int, int]:
        """The (seq, ack) a packet of this connection leaves with (ip_vs_app's fix-up).

        `inbound` is client to server. seq moves by the direction's delta when it is after
        that direction's init_seq, else by its previous_delta; ack moves back by the other
        direction's delta when ack - previous_delta is after its init_seq, else by its
        previous_delta (conntrack seqadj's test; ip_vs_app's init_seq + delta misplaces an
        ACK of the data just before a rewrite that shortened the payload).
        """
        c = self._get(handle)
        _check_range("seq", seq, 0, 0xFFFFFFFF)
        _check_range("ack", ack, 0, 0xFFFFFFFF)
        return _fix_seq(c, bool(inbound), seq, ack)

    def seq_update(self, handle: int, inbound: bool, seq: int, diff: int) -> None:
        """Record that a helper changed by `diff` bytes the payload of a packet whose
        original sequence number was `seq` (ip_vs_app's vs_seq_update).

        Unless the direction's flag is unset or `seq` is after its init_seq, nothing
        changes (a retransmission); else previous_delta = delta, delta += diff,
        init_seq = seq and the flag (CONN_F_IN_SEQ or CONN_F_OUT_SEQ) is set, and the sync
        log (when on) records the connection.
        """
        c = self._get(handle)
        _check_range("seq", seq, 0, 0xFFFFFFFF)
        _check_range("diff", diff, -(1 << 16), 1 << 16)
        if inbound:
            if not c.flags & CONN_F_IN_SEQ or _after(seq, c.in_init):
                c.in_prev = c.in_delta
                c.in_delta = _wrap32(c.in_delta + diff)
                c.in_init = seq
                c.flags |= CONN_F_IN_SEQ
                self._log_event(c, 0)
        elif not c.flags & CONN_F_OUT_SEQ or _after(seq, c.out_init):
            c.out_prev = c.out_delta
            c.out_delta = _wrap32(c.out_delta + diff)
            c.out_init = seq
            c.flags |= CONN_F_OUT_SEQ
            self._log_event(c, 0)

    def seq_state(self, handle: int) -> tuple[int, int, int, int, int, int]:
        """(in_init, in_delta, in_prev, out_init, out_delta, out_prev) of a connection;
        deltas signed, all zero for a direction whose flag is unset."""
        c = self._get(handle)
        return (c.in_init, c.in_delta, c.in_prev, c.out_init, c.out_delta, c.out_prev)

    def set_seq_state(
        self,
        handle: int,
        in_init: int,
        in_delta: int,
        in_prev: int,
        out_init: int,
        out_delta: int,
        out_prev: int,
    ) -> None:
        """Install a connection's offsets as `seq_state` gives them (a synced copy); a
        direction with any non-zero value gets its flag, one of all zeros loses it."""
        c = self._get(handle)
        for name, v in (("in_init", in_init), ("out_init", out_init)):
            _check_range(name, v, 0, 0xFFFFFFFF)
        for name, v in (
            ("in_delta", in_delta),
            ("in_prev", in_prev),
            ("out_delta", out_delta),
            ("out_prev", out_prev),
        ):
            _check_range(name, v, -(1 << 31), (1 << 31) - 1)
        c.in_init, c.in_delta, c.in_prev = in_init, in_delta, in_prev
        c.out_init, c.out_delta, c.out_prev = out_init, out_delta, out_prev
        c.flags &= ~(CONN_F_IN_SEQ | CONN_F_OUT_SEQ)
        if in_init or in_delta or in_prev:
            c.flags |= CONN_F_IN_SEQ
        if out_init or out_delta or out_prev:
            c.flags |= CONN_F_OUT_SEQ

    def conn_info(self, handle: int) -> tuple[int, ...]:
        """(proto, caddr, cport, vaddr, vport, daddr, dport, dest, state, flags, expires_ms,
        n_control, ctl) of a live connection or template; expires_ms is absolute."""
        c = self._get(handle)
        return (*c.binding(), c.state, c.flags, c.expires, c.n_control, c.ctl)

    def entries(self, limit: int) -> list[tuple[int, ...]]:
        """Up to `limit` (handle, *conn_info(handle)) tuples in handle order, for ipvsadm -lnc."""
        _check_range("limit", limit, 0, 1 << 62)
        out: list[tuple[int, ...]] = []
        for h, c in enumerate(self._conns):
            if len(out) >= limit:
                break
            if c is not None:
                out.append((h, *self.conn_info(h)))
        return out

    def entries_from(self, start: int, limit: int) -> tuple[list[tuple[int, ...]], int]:
        """Up to `limit` (handle, *conn_info(handle)) tuples from handle `start` on: (rows, next).

        `next` is the handle to continue from, or -1 once the walk passed the last handle; a
        walk in slices sees once every entry that lives throughout it.
        """
        _check_range("start", start, 0, 1 << 62)
        _check_range("limit", limit, 0, 1 << 62)
        conns = self._conns
        end = len(conns)
        rows: list[tuple[int, ...]] = []
        h = start
        while h < end and len(rows) < limit:
            if conns[h] is not None:
                rows.append((h, *self.conn_info(h)))
            h += 1
        return rows, h if h < end else -1

    def dump_from(self, start: int, limit: int, now: int) -> tuple[bytes, int]:
        """Up to `limit` live entries from handle `start` on, as snapshot records: (data, next).

        `data` is bytes of 80-byte little-endian records, one per entry in handle order:
        remaining_ms (expires - `now`) q, seq Q, handle i, ctl i, dest i, caddr I, vaddr I,
        daddr I, timeout_ms I, in_init I, in_delta i, in_prev i, out_init I, out_delta i,
        out_prev i, cport H, vport H, dport H, flags H, proto B, state B, 2 pad bytes.
        `next` is the handle to continue from, or -1 once the walk passed the last handle.
        """
        _check_range("start", start, 0, 1 << 62)
        _check_range("limit", limit, 0, 1 << 62)
        conns = self._conns
        end = len(conns)
        parts: list[bytes] = []
        h = start
        while h < end and len(parts) < limit:
            c = conns[h]
            if c is not None:
                parts.append(
                    _SNAP.pack(
                        c.expires - now,
                        c.seq,
                        h,
                        c.ctl,
                        c.dest,
                        c.caddr,
                        c.vaddr,
                        c.daddr,
                        c.timeout_ms,
                        c.in_init,
                        c.in_delta,
                        c.in_prev,
                        c.out_init,
                        c.out_delta,
                        c.out_prev,
                        c.cport,
                        c.vport,
                        c.dport,
                        c.flags,
                        c.proto,
                        c.state,
                    )
                )
            h += 1
        return b"".join(parts), h if h < end else -1

    def enable_sync_log(self, capacity: int) -> None:
        """Start (or restart, emptied) the sync log with room for `capacity` records; 0 stops it.

        While it is on, every insert (connection or template), TCP state change (so every
        change of the INACTIVE flag), template invalidation and removal (expiry, remove,
        flush, reuse of a client tuple) appends one record; a full log drops the new record
        and counts it lost. Off by default: a table without a sync peer pays nothing.
        """
        _check_range("capacity", capacity, 0, 1 << 24)
        self._log = deque()
        self._log_cap = capacity
        self._log_lost = 0

    def sync_changes(self, limit: int) -> tuple[list[tuple[int, ...]], int]:
        """Take up to `limit` sync log records, oldest first: (records, lost).

        A record is (proto, caddr, cport, vaddr, vport, daddr, dport, dest, state, flags,
        removed), the entry as it was at the event (fields in conn_info's order; dest is its
        dest slot); flags are masked to CONN_F_INACTIVE | CONN_F_TEMPLATE | CONN_F_IN_SEQ |
        CONN_F_OUT_SEQ | CONN_F_FWD_MASK | CONN_F_NOOUTPUT (IPVS sync's flags: the method
        travels); removed is 1 for a removal (an invalidated template is removed under its old
        key), else 0. `seq_update` logs a record too, when it changes an offset (read them
        with `seq_state`). `lost` counts records dropped by a full log since the previous
        call: the log then misses changes, and the caller must resend everything.
        """
        _check_range("limit", limit, 0, 1 << 62)
        log = self._log
        out = [log.popleft() for _ in range(min(limit, len(log)))]
        lost, self._log_lost = self._log_lost, 0
        return out, lost

    def uncount(self, handle: int) -> None:
        """Take a connection this table did not schedule (a synced copy) out of its dest's and
        service's conns counters, which count scheduled connections only (the kernel's
        ip_vs_conn_stats); refuses a template."""
        c = self._get(handle)
        if c.flags & CONN_F_TEMPLATE:
            raise ValueError(f"uncount: handle {handle} is a template")
        b = c.dest * DEST_FIELDS
        self._dests[b + DEST_CONNS] -= 1
        self._svcs[self._dests[b + DEST_SVC] * SVC_FIELDS + SVC_CONNS] -= 1

    def credit(self, dest: int, inpkts: int, inbytes: int, outpkts: int, outbytes: int) -> None:
        """Add packets and bytes forwarded elsewhere (the kernel offload) to a dest's and its
        service's counters, as if this table had forwarded them; refuses negative counts."""
        self._check_dest(dest)
        for name, v in (
            ("inpkts", inpkts),
            ("inbytes", inbytes),
            ("outpkts", outpkts),
            ("outbytes", outbytes),
        ):
            _check_range(name, v, 0, 1 << 62)
        d = self._dests
        b = dest * DEST_FIELDS
        s = d[b + DEST_SVC] * SVC_FIELDS
        d[b + DEST_INPKTS] += inpkts
        d[b + DEST_INBYTES] += inbytes
        d[b + DEST_OUTPKTS] += outpkts
        d[b + DEST_OUTBYTES] += outbytes
        self._svcs[s + SVC_INPKTS] += inpkts
        self._svcs[s + SVC_INBYTES] += inbytes
        self._svcs[s + SVC_OUTPKTS] += outpkts
        self._svcs[s + SVC_OUTBYTES] += outbytes

    def seen(self, handle: int, when: int) -> None:
        """A packet of this connection was forwarded elsewhere at `when` (ms): its deadline
        becomes when + its current timeout if that is later; state and counters unchanged."""
        c = self._get(handle)
        if when + c.timeout_ms > c.expires:
            self._arm(handle, c, when, c.timeout_ms)

    def remove(self, handle: int) -> None:
        """Remove a connection or template now (unbind, detach); refuses one that controls any."""
        c = self._get(handle)
        if c.n_control:
            raise ValueError(f"remove: handle {handle} controls {c.n_control} connections")
        self._release(handle, c)

    def flush(self) -> None:
        """Remove every connection and template, unbinding each from its dest."""
        for c in self._conns:
            if c is not None:
                self._log_event(c, 1)
                self._unbind(c)
        self._conns.clear()
        self._half_open.clear()
        self._free.clear()
        self._count = 0
        self._no_cport = 0
        self._heap.clear()
        for m in (*self._in.values(), *self._out.values(), self._tmpl):
            m.clear()

    def expire(self, now: int) -> int:
        """Fire every entry whose deadline <= now, in (deadline, creation) order.

        One that controls others (n_control > 0) is kept and re-armed with 60 s (its timeout
        stays 60 s); any other is removed, detached from its template and unbound from its
        dest (OVERLOAD cleared per the l/u threshold rule). Returns how many were removed.
        """
        heap = self._heap
        conns = self._conns
        removed = 0
        while heap and heap[0][0] <= now:
            deadline, seq, h = heapq.heappop(heap)
            c = conns[h] if h < len(conns) else None
            if c is None or c.seq != seq or c.filed != deadline:
                continue
            if c.expires > deadline:
                self._file(h, c)
                continue
            if c.n_control > 0:
                c.timeout_ms = TEMPLATE_EXPIRED_TIMEOUT_S * 1000
                c.expires = now + c.timeout_ms
                self._file(h, c)
            else:
                self._release(h, c)
                removed += 1
        return removed

    # -- packets ----------------------------------------------------------------------

    def _drop(self, verdict: int) -> int:
        self._drops[verdict] += 1
        return verdict

    def _count_pkt(self, c: _Conn, length: int, inbound: bool) -> None:
        d = self._dests
        b = c.dest * DEST_FIELDS
        s = d[b + DEST_SVC] * SVC_FIELDS
        if inbound:
            d[b + DEST_INPKTS] += 1
            d[b + DEST_INBYTES] += length
            self._svcs[s + SVC_INPKTS] += 1
            self._svcs[s + SVC_INBYTES] += length
        else:
            d[b + DEST_OUTPKTS] += 1
            d[b + DEST_OUTBYTES] += length
            self._svcs[s + SVC_OUTPKTS] += 1
            self._svcs[s + SVC_OUTBYTES] += length

    def _set_state(self, h: int, c: _Conn, new: int, now: int) -> None:
        if new != c.state:
            if c.state == SYN_RECV:
                self._half_open.pop(h, None)
            elif new == SYN_RECV and c.proto == PROTO_TCP and not c.flags & CONN_F_TEMPLATE:
                self._half_open[h] = None
            was_active = not c.flags & CONN_F_INACTIVE
            active = new in _ACTIVE_STATES
            if active != was_active:
                b = c.dest * DEST_FIELDS
                if active:
                    self._dests[b + DEST_INACTIVE] -= 1
                    self._dests[b + DEST_ACTIVE] += 1
                    c.flags &= ~CONN_F_INACTIVE
                else:
                    self._dests[b + DEST_ACTIVE] -= 1
                    self._dests[b + DEST_INACTIVE] += 1
                    c.flags |= CONN_F_INACTIVE
            c.state = new
            self._log_event(c, 0)
        self._arm(h, c, now, self._tcp_timeouts[new])

    def process(self, buf: bytearray, now: int) -> int:
        """Classify and, for a known connection, rewrite one IPv4 packet in place.

        Returns FORWARD (rewritten: write it out), NEW (no connection; a TCP SYN without
        RST or a UDP datagram that may start one: schedule, `insert`, call again), LOCAL
        (non-error ICMP, or an error quoting neither TCP nor UDP: the caller decides),
        FRAGMENT (reassemble first), APP (a TCP packet with payload of a connection bound
        to the application helper, rewritten but for its sequence numbers: see `bind_app`),
        ROUTE (a client packet of a direct-routing connection,
        or an ICMP error quoting one: sent unchanged to the dest's link, as ip_vs_dr_xmit
        does; nothing is left to do), TUNNEL (the same for a tunnelled connection, left
        unchanged for the caller to encapsulate to the real's address: it is counted and
        its state moved; the caller sends it) or a DROP_* verdict, which is also counted. A ROUTE
        packet whose dest has no link address yet is DROP_NO_NEIGH, one whose write fails
        DROP_TX. A packet from the VIP to the client of a non-MASQ connection (a direct-routing
        real whose route to the client is the director) is FORWARD unchanged: written back,
        the kernel routes it, as it does past ip_vs_out. Other packets from the server side
        of a non-MASQ connection are DROP_NO_CONN.
        A client packet that matches no connection but an expected one (cport 0) to the
        same vaddr:vport fills it in.
        A client-to-server packet of a connection whose dest is not AVAILABLE is
        DROP_DEST_UNAVAILABLE: not rewritten, no state change, no timer re-arm (ip_vs_in,
        expire_nodest_conn=0). Replies and ICMP errors (ip_vs_in_icmp) are not checked.
        """
        return self._process(buf, 0, now, False)

    def process_vnet(self, buf: bytearray, now: int) -> int:
        """`process` for a packet behind a virtio_net_hdr, as read from an IFF_VNET_HDR TUN.

        With VIRTIO_NET_HDR_F_NEEDS_CSUM the TCP/UDP checksum field holds the pseudo-header
        partial sum (csum_start must be the L4 header and csum_offset its checksum field, else
        DROP_BAD_HEADER); address rewrites update it as a plain sum and ports are left out of
        it. GSO packets are rewritten the same way and the header is left for the kernel.
        """
        if len(buf) < VNET_HDR_LEN:
            return self._drop(DROP_TRUNCATED)
        return self._process(buf, VNET_HDR_LEN, now, bool(buf[0] & VNET_F_NEEDS_CSUM))

    def _process(self, buf: bytearray, off: int, now: int, partial: bool) -> int:
        n = len(buf) - off
        if n < 20:
            return self._drop(DROP_TRUNCATED)
        vihl = buf[off]
        ihl = (vihl & 15) * 4
        if vihl >> 4 != 4 or ihl < 20:
            return self._drop(DROP_BAD_HEADER)
        tot = buf[off + 2] << 8 | buf[off + 3]
        if tot != n:
            return self._drop(DROP_BAD_HEADER)
        if ihl > 20:
            return self._drop(DROP_IP_OPTIONS)
        if buf[off + 6] & 0x3F or buf[off + 7]:
            return FRAGMENT
        proto = buf[off + 9]
        l4 = off + 20
        if proto == PROTO_TCP:
            if tot < 40:
                return self._drop(DROP_TRUNCATED)
            csum_at = l4 + 16
        elif proto == PROTO_UDP:
            if tot < 28:
                return self._drop(DROP_TRUNCATED)
            csum_at = l4 + 6
        elif proto == 1:
            return self._icmp(buf, off, tot, partial)
        else:
            return self._drop(DROP_UNKNOWN_PROTO)
        if partial:
            _, _, _, _, cstart, coff = _VNET.unpack_from(buf, 0)
            if cstart != 20 or cstart + coff != csum_at - off:
                return self._drop(DROP_BAD_HEADER)
        key = bytes(buf[off + 12 : off + 20]) + bytes(buf[l4 : l4 + 4])
        lst = self._in[proto].get(key)
        syn = rst = 0
        if proto == PROTO_TCP:
            tflags = buf[l4 + 13]
            syn = tflags & 2
            rst = tflags & 4
            if not lst and self._no_cport:
                lst = self._fill_cport(key)
        if lst:
            h = lst[-1]
            c = self._conns[h]
            assert c is not None
            # conn_reuse_mode=1 (ip_vs_in, is_new_conn_expected): a SYN for a TIME_WAIT/CLOSE
            # conn with no template above it (cp->control) and none below (n_control)
            # expires it and is scheduled afresh.
            if (
                syn
                and not rst
                and proto == PROTO_TCP
                and c.ctl < 0
                and c.n_control == 0
                and c.state in (TIME_WAIT, CLOSE)
            ):
                self._release(h, c)
                return NEW
            if not self._dests[c.dest * DEST_FIELDS + DEST_AVAILABLE]:
                return self._drop(DROP_DEST_UNAVAILABLE)
            if c.flags & CONN_F_FWD_MASK:
                self._count_pkt(c, tot, True)
                if proto == PROTO_TCP:
                    cls = 3 if rst else 0 if syn else 1 if tflags & 1 else 2 if tflags & 16 else -1
                    table = _INPUT_ONLY if c.flags & CONN_F_NOOUTPUT else _INPUT
                    self._set_state(h, c, CLOSE if cls < 0 else table[cls][c.state], now)
                else:
                    self._arm(h, c, now, self._udp_timeout)
                if c.flags & CONN_F_FWD_MASK == CONN_F_TUNNEL:
                    return TUNNEL
                return self._route(buf, off, c)
            inbound = True
            old_addr = c.vaddr
            new_addr = c.daddr
            old_port = buf[l4 + 2] << 8 | buf[l4 + 3]
            new_port = c.dport
            addr_at = off + 16
            port_at = l4 + 2
        else:
            lst = self._out[proto].get(key)
            if not lst:
                # A real's reply from the VIP to the client, of a DR connection whose real
                # routes through the director: not the director's to translate; the kernel
                # (ip_vs_out finds nothing) forwards it as it is, and so does FORWARD.
                rkey = key[4:8] + key[0:4] + key[10:12] + key[8:10]
                back = self._in[proto].get(rkey)
                if back:
                    bc = self._conns[back[-1]]
                    assert bc is not None
                    if bc.flags & CONN_F_FWD_MASK:
                        return FORWARD
                if proto == PROTO_UDP or (syn and not rst):
                    return NEW
                return self._drop(DROP_NO_CONN)
            h = lst[-1]
            c = self._conns[h]
            assert c is not None
            if c.flags & CONN_F_FWD_MASK:
                return self._drop(DROP_NO_CONN)
            inbound = False
            old_addr = c.daddr
            new_addr = c.vaddr
            old_port = buf[l4] << 8 | buf[l4 + 1]
            new_port = c.vport
            addr_at = off + 12
            port_at = l4
        _U32.pack_into(buf, addr_at, new_addr)
        _U16.pack_into(buf, port_at, new_port)
        daddr = _diff32(old_addr, new_addr)
        _apply(buf, off + 10, daddr, False, False)
        l4diff = daddr if partial else daddr + _diff16(old_port, new_port)
        _apply(buf, csum_at, l4diff, partial, proto == PROTO_UDP)
        self._count_pkt(c, tot, inbound)
        if proto == PROTO_TCP:
            verdict = FORWARD
            if c.flags & CONN_F_APP and tot - 20 - (buf[l4 + 12] >> 4) * 4 > 0:
                verdict = APP
            elif c.flags & (CONN_F_IN_SEQ | CONN_F_OUT_SEQ):
                seq, ack = _SEQACK.unpack_from(buf, l4 + 4)
                nseq, nack = _fix_seq(c, inbound, seq, ack)
                _SEQACK.pack_into(buf, l4 + 4, nseq, nack)
                if not partial:
                    _apply(buf, csum_at, _diff32(seq, nseq) + _diff32(ack, nack), False, False)
            cls = 3 if rst else 0 if syn else 1 if tflags & 1 else 2 if tflags & 16 else -1
            new = CLOSE if cls < 0 else (_INPUT if inbound else _OUTPUT)[cls][c.state]
            self._set_state(h, c, new, now)
            return verdict
        else:
            self._arm(h, c, now, self._udp_timeout)
        return FORWARD

    def _route(self, buf: bytearray, off: int, c: _Conn) -> int:
        """Send a packet of a DROUTE connection, unchanged, framed to its dest's link."""
        d = self._dests
        b = c.dest * DEST_FIELDS
        fd = d[b + DEST_LINK_FD] - 1
        mac = d[b + DEST_MAC]
        if fd < 0 or not mac:
            return self._drop(DROP_NO_NEIGH)
        vnet = bytearray(buf[:off]) if off else bytearray(VNET_HDR_LEN)
        if vnet[0] & VNET_F_NEEDS_CSUM:
            vnet[6:8] = (int.from_bytes(vnet[6:8], "little") + _ETH_HLEN).to_bytes(2, "little")
        if vnet[2] or vnet[3]:
            vnet[2:4] = (int.from_bytes(vnet[2:4], "little") + _ETH_HLEN).to_bytes(2, "little")
        eth = mac.to_bytes(6, "big") + d[b + DEST_SRC_MAC].to_bytes(6, "big") + _ETH_P_IP
        try:
            os.writev(fd, [vnet, eth, memoryview(buf)[off:]])
        except OSError:
            return self._drop(DROP_TX)
        return ROUTE

    def _fill_cport(self, key: bytes) -> list[int] | None:
        """ip_vs_conn_fill_cport: a client packet matching an expected connection (cport 0)
        gives it its port; the connection is rehashed under the full key."""
        lst = self._in[PROTO_TCP].get(key[:8] + b"\0\0" + key[10:])
        if not lst:
            return None
        h = lst[-1]
        c = self._conns[h]
        assert c is not None
        if not c.flags & CONN_F_NO_CPORT:
            return None
        self._log_event(c, 1)
        self._unhash(h, c)
        c.cport = key[8] << 8 | key[9]
        c.flags &= ~CONN_F_NO_CPORT
        self._no_cport -= 1
        self._hash(h, c)
        self._log_event(c, 0)
        return self._in[PROTO_TCP].get(key)

    def _icmp(self, buf: bytearray, off: int, tot: int, partial: bool) -> int:
        l4 = off + 20
        end = off + tot
        if tot < 28:
            return self._drop(DROP_TRUNCATED)
        if buf[l4] not in _ICMP_ERRORS:
            return LOCAL
        e = l4 + 8
        if end - e < 20 or buf[e] >> 4 != 4 or buf[e] & 15 < 5:
            return self._drop(DROP_BAD_ICMP)
        eihl = (buf[e] & 15) * 4
        el4 = e + eihl
        if end - el4 < 8 or buf[e + 6] & 0x1F or buf[e + 7]:
            return self._drop(DROP_BAD_ICMP)
        if not partial and _checksum(buf, l4, end) != 0:
            return self._drop(DROP_BAD_ICMP)
        eproto = buf[e + 9]
        if eproto not in (PROTO_TCP, PROTO_UDP):
            return LOCAL
        # The quoted packet travelled the other way: its reverse is an ordinary key.
        key = (
            bytes(buf[e + 16 : e + 20])
            + bytes(buf[e + 12 : e + 16])
            + bytes(buf[el4 + 2 : el4 + 4])
            + bytes(buf[el4 : el4 + 2])
        )
        lst = self._in[eproto].get(key)
        if lst:
            inbound = True
            c = self._conns[lst[-1]]
            assert c is not None
            if c.flags & CONN_F_FWD_MASK:
                # ip_vs_icmp_xmit: the error goes to the real server as it is.
                self._count_pkt(c, tot, True)
                if c.flags & CONN_F_FWD_MASK == CONN_F_TUNNEL:
                    return TUNNEL
                return self._route(buf, off, c)
            outer_at, eaddr_at, eport_at = off + 16, e + 12, el4
            new_addr, new_port = c.daddr, c.dport
        else:
            lst = self._out[eproto].get(key)
            if not lst:
                return self._drop(DROP_NO_CONN)
            inbound = False
            c = self._conns[lst[-1]]
            assert c is not None
            if c.flags & CONN_F_FWD_MASK:
                return self._drop(DROP_NO_CONN)
            outer_at, eaddr_at, eport_at = off + 12, e + 16, el4 + 2
            new_addr, new_port = c.vaddr, c.vport
        (old_outer,) = _U32.unpack_from(buf, outer_at)
        (old_addr,) = _U32.unpack_from(buf, eaddr_at)
        (old_port,) = _U16.unpack_from(buf, eport_at)
        _U32.pack_into(buf, outer_at, new_addr)
        _apply(buf, off + 10, _diff32(old_outer, new_addr), False, False)
        _U32.pack_into(buf, eaddr_at, new_addr)
        _U16.pack_into(buf, eport_at, new_port)
        adiff = _diff32(old_addr, new_addr)
        _apply(buf, e + 10, adiff, False, False)
        pdiff = adiff + _diff16(old_port, new_port)
        if eproto == PROTO_UDP:
            _apply(buf, el4 + 6, pdiff, False, True)
        elif end - el4 >= 18:
            _apply(buf, el4 + 16, pdiff, False, False)
        buf[l4 + 2] = buf[l4 + 3] = 0
        _U16.pack_into(buf, l4 + 2, _checksum(buf, l4, end))
        if partial:
            # The ICMP checksum is now complete; the kernel must not fold it again.
            buf[0] &= ~VNET_F_NEEDS_CSUM & 0xFF
        self._count_pkt(c, tot, inbound)
        return FORWARD

    def set_report_no_conn(self, on: bool) -> None:
        """From now on (`on` true) drain also hands the caller, as (DROP_NO_CONN, packet), every
        IPv4 TCP segment without RST that found no connection (still counted as a drop), so
        that it can answer with a reset as the kernel's stack does; off by default."""
        self._report_no_conn = bool(on)

    def drain(
        self,
        fd: int,
        now: int,
        out: list[tuple[int, bytearray]],
        max_packets: int = 256,
        write_fd: int = -1,
    ) -> int:
        """Read vnet-headed packets from a non-blocking TUN fd until EAGAIN or max_packets.

        Packets of known connections are rewritten and written to `write_fd` (negative, the
        default: back to `fd`; a failed write counts DROP_TX and never raises), or for a
        direct-routing connection sent to its dest's link (ROUTE, see `process`); a NEW,
        LOCAL, FRAGMENT, APP or TUNNEL packet is appended to `out` as (verdict, packet), the
        packet a bytearray with its vnet header, so that the caller acts on the verdict without
        classifying it again; drops are counted. An APP packet ends the call, so that the
        offsets the helper records for it apply to the packets read after it. Returns packets
        read.
        """
        _check_range("max_packets", max_packets, 0, 1 << 30)
        if write_fd < 0:
            write_fd = fd
        n = 0
        while n < max_packets:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if not data:
                break
            n += 1
            buf = bytearray(data)
            v = self.process_vnet(buf, now)
            if v == FORWARD:
                try:
                    os.write(write_fd, buf)
                except OSError:
                    # EAGAIN/ENOBUFS when the device queue is full; the packet is lost either way.
                    self._drops[DROP_TX] += 1
            elif v in (NEW, LOCAL, FRAGMENT, APP, TUNNEL) or (
                v == DROP_NO_CONN and self._report_no_conn and _tcp_not_rst(buf)
            ):
                out.append((v, buf))
                if v == APP:
                    break
        return n
