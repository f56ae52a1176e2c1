"""IPv4 fragment reassembly for datagrams addressed to a virtual service.

The director must see a whole datagram to find its connection (only the first
fragment carries the ports), so fragments are collected here and the whole
datagram goes through the fast path once; the kernel fragments it again on the
way to the real server. This is what the thesis got by enabling IP
defragmentation on the director.

Correct: a datagram is returned only when every byte from 0 to the end the last
fragment gives is there, exactly once. A fragment reaching past that end, a last
fragment ending before one already seen, and overlapping fragments (RFC 5722's rule for
IPv6, applied here too, as Linux does since FragmentSmack) drop the whole datagram.
An exact duplicate is ignored.

Linear: each fragment costs time in proportion to its own length (a map of the
datagram's 8-byte units says which are held), never to the number of fragments held.

Bounded, on the kernel's model (net.ipv4.ipfrag_*):
- ``timeout_ms`` after its first fragment a partial datagram is dropped (ipfrag_time,
  30 s);
- each fragment is charged its length plus ``FRAGMENT_OVERHEAD`` bytes; above
  ``high_thresh`` bytes held (ipfrag_high_thresh, 4 MB) the oldest partial datagrams
  are evicted until at most ``low_thresh`` (ipfrag_low_thresh, 3 MB) remain;
- a partial datagram that has not received a fragment while ``max_dist`` other
  fragments from its source arrived is dropped and begun anew (ipfrag_max_dist, 64);
- at most ``max_fragments`` fragments per datagram (2,048: a 64 KB datagram cut at the
  smallest IPv4 MTU, 68, has 1,366) and ``max_datagrams`` partial datagrams.
Each drop is counted by reason.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

from director.dataplane.icmp import checksum

_MF = 0x2000
_OFFSET_MASK = 0x1FFF
MAX_DATAGRAM = 65535
# What the kernel's skb truesize adds to a fragment's bytes, roughly: a flood of tiny
# fragments is charged for what it really costs.
FRAGMENT_OVERHEAD = 256
DROP_REASONS = (
    "malformed",
    "overlap",
    "beyond_end",
    "too_many_fragments",
    "too_many_datagrams",
    "too_far",
    "memory",
    "timeout",
)


@dataclass(slots=True)
class _Partial:
    first_seen: int
    src: bytes
    seq: int  # the source's fragment count when this datagram last got one
    header: bytes = b""
    pieces: dict[int, bytes] = field(default_factory=dict)
    held: bytearray = field(default_factory=bytearray)  # per 8-byte unit: 1 if held
    total: int = -1  # payload length, known once the last fragment arrived
    high: int = 0  # the highest end of a fragment held
    size: int = 0
    charge: int = 0


@dataclass(frozen=True, slots=True)
class ReassemblyStats:
    """``refused`` is the sum of ``drops`` (fragments or datagrams dropped, by reason)."""

    pending: int
    completed: int
    timed_out: int
    refused: int
    memory: int = 0
    drops: dict[str, int] = field(default_factory=dict)


class Reassembler:
    """Collects IPv4 fragments into whole datagrams.

    ``add(packet, now)`` takes one fragment (an IPv4 packet with MF set or a
    non-zero offset, header without options) and returns the whole datagram as
    a new IPv4 packet (header checksum recomputed, MF and offset cleared) when
    this fragment completes it, else ``None``. ``now`` is monotonic milliseconds.
    Event-loop thread only.
    """

    def __init__(
        self,
        *,
        max_datagrams: int = 1024,
        timeout_ms: int = 30_000,
        max_fragments: int = 2048,
        high_thresh: int = 4 * 1024 * 1024,
        low_thresh: int = 3 * 1024 * 1024,
        max_dist: int = 64,
    ) -> None:
        # Insertion order is age order: the first entry is the oldest.
        self._partials: dict[tuple[bytes, bytes, int, int], _Partial] = {}
        self._max = max_datagrams
        self._timeout = timeout_ms
        self._max_fragments = max_fragments
        self._high = high_thresh
        self._low = low_thresh
        self._max_dist = max_dist
        self._memory = 0
        # Per source with partial datagrams: fragments seen, partials held.
        self._seq: dict[bytes, list[int]] = {}
        self._completed = 0
        self._drops: Counter[str] = Counter()

    def add(self, packet: bytes, now: int) -> bytes | None:
        self._expire(now)
        if len(packet) < 20:
            self._drop("malformed")
            return None
        ihl = (packet[0] & 0x0F) * 4
        tot_len, ident, frag = struct.unpack_from("!HHH", packet, 2)
        if ihl < 20 or tot_len > len(packet) or tot_len < ihl:
            self._drop("malformed")
            return None
        proto = packet[9]
        src = packet[12:16]
        key = (src, packet[16:20], ident, proto)
        offset = (frag & _OFFSET_MASK) * 8
        payload = packet[ihl:tot_len]
        more = bool(frag & _MF)
        end = offset + len(payload)
        if end + ihl > MAX_DATAGRAM or (more and len(payload) % 8) or end == offset:
            self._drop("malformed", key)
            return None
        source = self._seq.get(src)
        part = self._partials.get(key)
        if part is not None and source is not None:
            source[0] += 1
            if source[0] - part.seq > self._max_dist:
                # Too many of the source's fragments went elsewhere meanwhile: this one is
                # likely lost, and what is held may be stale.
                self._drop("too_far", key)
                source = self._seq.get(src)
                part = None
        if part is None:
            if len(self._partials) >= self._max:
                self._drop("too_many_datagrams")
                return None
            if source is None:
                source = self._seq[src] = [0, 0]
            source[0] += 1
            source[1] += 1
            part = self._partials[key] = _Partial(first_seen=now, src=src, seq=source[0])
        else:
            assert source is not None  # a source with a partial datagram is known
        part.seq = source[0]
        first, last = offset // 8, (end + 7) // 8
        if part.total >= 0 and end > part.total:
            self._drop("beyond_end", key)
            return None
        if not more:
            if part.total not in (-1, end) or part.high > end:
                self._drop("beyond_end", key)
                return None
            part.total = end
        held = part.held
        if len(held) < last:
            held.extend(bytes(last - len(held)))
        if held.find(1, first, last) != -1:
            old = part.pieces.get(offset)
            if old is not None and old == payload:
                return None  # an exact duplicate; keep the first copy
            self._drop("overlap", key)
            return None
        if len(part.pieces) >= self._max_fragments:
            self._drop("too_many_fragments", key)
            return None
        held[first:last] = b"\1" * (last - first)
        part.pieces[offset] = payload
        part.size += len(payload)
        part.high = max(part.high, end)
        charge = len(payload) + FRAGMENT_OVERHEAD
        part.charge += charge
        self._memory += charge
        if offset == 0:
            part.header = packet[:ihl]
        if self._memory > self._high:
            self._evict(key)
            if key not in self._partials:
                return None
        if part.total < 0 or part.size != part.total or not part.header:
            return None
        # No overlaps and nothing past the end: total bytes held means no hole.
        self._forget(key)
        self._completed += 1
        body = bytearray()
        at = 0
        while at < part.total:
            piece = part.pieces[at]
            body += piece
            at += len(piece)
        hdr = bytearray(part.header)
        struct.pack_into("!HHH", hdr, 2, len(hdr) + len(body), ident, 0)
        hdr[10:12] = b"\0\0"
        struct.pack_into("!H", hdr, 10, checksum(hdr))
        return bytes(hdr) + bytes(body)

    def _drop(self, reason: str, key: tuple[bytes, bytes, int, int] | None = None) -> None:
        """Count a drop; with ``key``, the partial datagram goes too."""
        self._drops[reason] += 1
        if key is not None:
            self._forget(key)

    def _forget(self, key: tuple[bytes, bytes, int, int]) -> None:
        part = self._partials.pop(key, None)
        if part is None:
            return
        self._memory -= part.charge
        source = self._seq[part.src]
        source[1] -= 1
        if source[1] == 0:
            del self._seq[part.src]

    def _evict(self, current: tuple[bytes, bytes, int, int]) -> None:
        """Above high_thresh: drop the oldest partials (the newest, ``current``, last)
        until at most low_thresh bytes are held."""
        for key in list(self._partials):
            if self._memory <= self._low:
                return
            if key != current:
                self._drop("memory", key)
        if self._memory > self._low:
            self._drop("memory", current)

    def _expire(self, now: int) -> None:
        # Oldest first: stop at the first partial still in time.
        while self._partials:
            key, part = next(iter(self._partials.items()))
            if now - part.first_seen < self._timeout:
                return
            self._drop("timeout", key)

    def statistics(self) -> ReassemblyStats:
        drops = {reason: self._drops[reason] for reason in DROP_REASONS}
        return ReassemblyStats(
            pending=len(self._partials),
            completed=self._completed,
            timed_out=drops["timeout"],
            refused=sum(v for k, v in drops.items() if k != "timeout"),
            memory=self._memory,
            drops=drops,
        )
