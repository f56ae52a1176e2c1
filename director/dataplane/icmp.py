"""ICMP messages the director itself sends: echo replies for a VIP, port unreachable;
and the TCP reset for a segment that finds no connection.

Pure functions over IPv4 packets without options (the fast path refuses options
before anything reaches here). Addresses are as on the wire. ``RateLimit`` bounds the
errors sent, as the kernel's icmp_msgs_per_sec / icmp_msgs_burst do: a flood of packets
from spoofed sources must not turn the director into a reflector.
"""

from __future__ import annotations

import struct

ICMP = 1
ECHO_REPLY = 0
DEST_UNREACH = 3
PORT_UNREACH = 3
ECHO_REQUEST = 8
_TTL = 64


def checksum(data: bytes | bytearray) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ip_header(
    src: bytes | bytearray, dst: bytes | bytearray, payload_len: int, ident: int
) -> bytearray:
    hdr = bytearray(
        struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, ident, 0, _TTL, ICMP, 0, src, dst)
    )
    struct.pack_into("!H", hdr, 10, checksum(hdr))
    return hdr


def echo_reply(packet: bytes | bytearray) -> bytes | None:
    """The reply to an ICMP echo request, or None if ``packet`` is not a well-formed one."""
    if len(packet) < 28 or packet[0] != 0x45 or packet[9] != ICMP:
        return None
    tot = struct.unpack_from("!H", packet, 2)[0]
    if tot > len(packet) or tot < 28 or packet[20] != ECHO_REQUEST or packet[21] != 0:
        return None
    if checksum(packet[20:tot]) != 0:
        return None
    icmp = bytearray(packet[20:tot])
    icmp[0] = ECHO_REPLY
    icmp[2:4] = b"\0\0"
    struct.pack_into("!H", icmp, 2, checksum(icmp))
    ident = struct.unpack_from("!H", packet, 4)[0]
    return bytes(_ip_header(packet[16:20], packet[12:16], len(icmp), ident) + icmp)


FRAG_NEEDED = 4


def frag_needed(packet: bytes | bytearray, mtu: int) -> bytes | None:
    """ICMP fragmentation needed (RFC 1191: next-hop MTU ``mtu``) from the packet's
    destination to its source, as the kernel's tunnel transmit sends it for a DF packet
    that does not fit once encapsulated. Same refusals as ``port_unreachable``."""
    return _dest_unreach(packet, FRAG_NEEDED, mtu)


def port_unreachable(packet: bytes | bytearray) -> bytes | None:
    """ICMP port unreachable from the packet's destination to its source (RFC 1812 4.3.2.3).

    Quotes the IP header and the first 8 bytes of its payload. None for a packet
    that must not be answered with an error (ICMP itself, a fragment past the first,
    a broadcast or multicast source).
    """
    return _dest_unreach(packet, PORT_UNREACH, 0)


def _dest_unreach(packet: bytes | bytearray, code: int, rest: int) -> bytes | None:
    """Destination unreachable ``code`` answering ``packet``; ``rest`` is the header's last
    32 bits (for frag-needed, the next-hop MTU in its low 16)."""
    if len(packet) < 28 or packet[0] != 0x45 or packet[9] == ICMP:
        return None
    if struct.unpack_from("!H", packet, 6)[0] & 0x1FFF:
        return None
    if packet[12] >= 224 or packet[12:16] == b"\xff\xff\xff\xff":
        return None
    quoted = bytes(packet[:28])
    icmp = bytearray(struct.pack("!BBHI", DEST_UNREACH, code, 0, rest) + quoted)
    struct.pack_into("!H", icmp, 2, checksum(icmp))
    return bytes(_ip_header(packet[16:20], packet[12:16], len(icmp), 0) + icmp)


TCP = 6
_RST, _ACK, _SYN, _FIN = 0x04, 0x10, 0x02, 0x01


def tcp_reset(packet: bytes | bytearray) -> bytes | None:
    """The reset a host's TCP sends for a segment to a port with no connection (RFC 793
    "Reset Generation", as the kernel's tcp_v4_send_reset): from the segment's destination
    to its source; with the segment's ACK, sequence number = its acknowledgment number,
    else sequence 0 and RST+ACK of everything the segment occupied. None for a segment that
    must not be answered: a reset itself, a fragment past the first, a broadcast or
    multicast address, a truncated header."""
    if len(packet) < 40 or packet[0] != 0x45 or packet[9] != TCP:
        return None
    if struct.unpack_from("!H", packet, 6)[0] & 0x1FFF:
        return None
    if packet[12] >= 224 or packet[16] >= 224 or packet[12:16] == b"\xff\xff\xff\xff":
        return None
    tot = min(struct.unpack_from("!H", packet, 2)[0], len(packet))
    sport, dport, seq, ack, off, flags = struct.unpack_from("!HHIIBB", packet, 20)
    doff = (off >> 4) * 4
    if flags & _RST or doff < 20 or tot < 20 + doff:
        return None
    if flags & _ACK:
        rseq, rack, rflags = ack, 0, _RST
    else:
        used = tot - 20 - doff + bool(flags & _SYN) + bool(flags & _FIN)
        rseq, rack, rflags = 0, (seq + used) & 0xFFFFFFFF, _RST | _ACK
    tcp = bytearray(struct.pack("!HHIIBBHHH", dport, sport, rseq, rack, 5 << 4, rflags, 0, 0, 0))
    pseudo = bytes(packet[16:20]) + bytes(packet[12:16]) + struct.pack("!BBH", 0, TCP, len(tcp))
    struct.pack_into("!H", tcp, 16, checksum(pseudo + tcp))
    ip = bytearray(
        struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, _TTL, TCP, 0, packet[16:20],
                    packet[12:16])
    )  # fmt: skip
    struct.pack_into("!H", ip, 10, checksum(ip))
    return bytes(ip + tcp)


# The kernel's defaults (net.ipv4.icmp_msgs_per_sec, net.ipv4.icmp_msgs_burst).
MSGS_PER_SEC = 1000
MSGS_BURST = 50


class RateLimit:
    """A token bucket: ``rate`` messages a second, at most ``burst`` at once. Integer
    arithmetic on monotonic milliseconds; event-loop thread only."""

    def __init__(self, rate: int = MSGS_PER_SEC, burst: int = MSGS_BURST) -> None:
        self.rate = rate
        self.burst = burst
        # Tokens in thousandths, so that a millisecond's refill is an integer.
        self._milli = burst * 1000
        self._last = -1
        self.suppressed = 0

    def allow(self, now_ms: int) -> bool:
        """Whether a message may go out at ``now_ms``; a refused one is counted."""
        if self._last >= 0 and now_ms > self._last:
            self._milli = min(self.burst * 1000, self._milli + (now_ms - self._last) * self.rate)
        self._last = max(self._last, now_ms)
        if self._milli >= 1000:
            self._milli -= 1000
            return True
        self.suppressed += 1
        return False
