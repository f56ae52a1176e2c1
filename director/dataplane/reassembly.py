"""IPv4 fragment reassembly for datagrams addressed to a virtual service.

The director must see a whole datagram to find its connection (only the first
fragment carries the ports), so fragments are collected here and the whole
datagram goes through the fast path once; the kernel fragments it again on the
way to the real server. This is what the thesis got by enabling IP
defragmentation on the director.

Bounded: at most ``max_datagrams`` partial datagrams of at most 65,535 bytes,
each dropped ``timeout_ms`` after its first fragment (the kernel's ipfrag_time is
30 s). Overlapping fragments are refused (RFC 5722's rule for IPv6, applied here
too: overlaps are an attack more often than a retransmission).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from director.dataplane.icmp import checksum

_MF = 0x2000
_OFFSET_MASK = 0x1FFF
MAX_DATAGRAM = 65535


@dataclass(slots=True)
class _Partial:
    first_seen: int
    header: bytes = b""
    pieces: dict[int, bytes] = field(default_factory=dict)
    total: int = -1  # payload length, known once the last fragment arrived
    size: int = 0


@dataclass(frozen=True, slots=True)
class ReassemblyStats:
    pending: int
    completed: int
    timed_out: int
    refused: int


class Reassembler:
    """Collects IPv4 fragments into whole datagrams.

    ``add(packet, now)`` takes one fragment (an IPv4 packet with MF set or a
    non-zero offset, header without options) and returns the whole datagram as
    a new IPv4 packet (header checksum recomputed, MF and offset cleared) when
    this fragment completes it, else ``None``. ``now`` is monotonic milliseconds.
    Event-loop thread only.
    """

    def __init__(self, *, max_datagrams: int = 1024, timeout_ms: int = 30_000) -> None:
        self._partials: dict[tuple[bytes, bytes, int, int], _Partial] = {}
        self._max = max_datagrams
        self._timeout = timeout_ms
        self._completed = 0
        self._timed_out = 0
        self._refused = 0

    def add(self, packet: bytes, now: int) -> bytes | None:
        self._expire(now)
        if len(packet) < 20:
            self._refused += 1
            return None
        ihl = (packet[0] & 0x0F) * 4
        tot_len, ident, frag = struct.unpack_from("!HHH", packet, 2)
        if ihl < 20 or tot_len > len(packet) or tot_len < ihl:
            self._refused += 1
            return None
        proto = packet[9]
        key = (packet[12:16], packet[16:20], ident, proto)
        offset = (frag & _OFFSET_MASK) * 8
        payload = packet[ihl:tot_len]
        more = bool(frag & _MF)
        end = offset + len(payload)
        if end + ihl > MAX_DATAGRAM or (more and len(payload) % 8):
            self._refused += 1
            self._partials.pop(key, None)
            return None
        part = self._partials.get(key)
        if part is None:
            if len(self._partials) >= self._max:
                self._refused += 1
                return None
            part = self._partials[key] = _Partial(first_seen=now)
        if offset == 0:
            part.header = packet[:ihl]
        if not more:
            if part.total not in (-1, end):
                self._refused += 1
                del self._partials[key]
                return None
            part.total = end
        if offset in part.pieces:
            return None  # a duplicate; keep the first copy
        for start, piece in part.pieces.items():
            if start < end and offset < start + len(piece):
                self._refused += 1
                del self._partials[key]
                return None
        part.pieces[offset] = payload
        part.size += len(payload)
        if part.total < 0 or part.size != part.total or not part.header:
            return None
        del self._partials[key]
        self._completed += 1
        body = b"".join(part.pieces[k] for k in sorted(part.pieces))
        hdr = bytearray(part.header)
        struct.pack_into("!HHH", hdr, 2, len(hdr) + len(body), ident, 0)
        hdr[10:12] = b"\0\0"
        struct.pack_into("!H", hdr, 10, checksum(hdr))
        return bytes(hdr) + body

    def _expire(self, now: int) -> None:
        if not self._partials:
            return
        stale = [k for k, p in self._partials.items() if now - p.first_seen >= self._timeout]
        for k in stale:
            del self._partials[k]
        self._timed_out += len(stale)

    def statistics(self) -> ReassemblyStats:
        return ReassemblyStats(
            pending=len(self._partials),
            completed=self._completed,
            timed_out=self._timed_out,
            refused=self._refused,
        )
