"""IPv4 reassembly: whole datagrams out of fragments in any order, bounded, overlaps refused."""

from __future__ import annotations

import itertools
import random
import struct

from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP, fragment
from scapy.packet import Raw

from director.dataplane.reassembly import Reassembler


def _datagram(size: int) -> IP:
    payload = bytes(range(256)) * (size // 256 + 1)
    return (
        IP(src="10.0.1.100", dst="10.0.1.5", id=4242)
        / UDP(sport=5000, dport=53)
        / Raw(payload[:size])
    )


def _frags(pkt: IP, size: int = 1480) -> list[bytes]:
    return [bytes(f) for f in fragment(pkt, fragsize=size)]


@given(st.integers(min_value=1500, max_value=20000), st.randoms(use_true_random=False))
def test_any_order_gives_the_original_datagram(size: int, rnd: random.Random) -> None:
    pkt = _datagram(size)
    frags = _frags(pkt)
    rnd.shuffle(frags)
    r = Reassembler()
    outs = [r.add(f, now=0) for f in frags]
    whole = [o for o in outs if o is not None]
    assert len(whole) == 1
    assert outs[-1] == whole[0]
    got = IP(whole[0])
    assert got.flags == 0
    assert got.frag == 0
    assert bytes(got[UDP]) == bytes(IP(bytes(pkt))[UDP])
    rebuilt = IP(whole[0])
    del rebuilt.chksum
    assert IP(bytes(rebuilt)).chksum == got.chksum  # header checksum recomputed correctly
    assert r.statistics().pending == 0


def test_missing_fragment_times_out() -> None:
    frags = _frags(_datagram(4000))
    r = Reassembler(timeout_ms=30_000)
    assert r.add(frags[0], now=0) is None
    assert r.statistics().pending == 1
    assert r.add(frags[1], now=30_000) is None  # expires the first, starts anew
    assert r.statistics().timed_out == 1


def test_overlap_is_refused() -> None:
    frags = _frags(_datagram(4000), size=1480)
    r = Reassembler()
    assert r.add(frags[0], now=0) is None
    overlapping = IP(frags[1])
    overlapping.frag -= 1  # starts 8 bytes inside the first fragment
    del overlapping.chksum
    assert r.add(bytes(overlapping), now=0) is None
    assert r.statistics().refused == 1
    assert r.statistics().pending == 0


def test_table_is_bounded() -> None:
    r = Reassembler(max_datagrams=2)
    for ident in range(3):
        pkt = _datagram(4000)
        pkt.id = ident
        r.add(_frags(pkt)[0], now=0)
    stats = r.statistics()
    assert stats.pending == 2
    assert stats.refused == 1


def test_garbage_is_refused_not_raised() -> None:
    r = Reassembler()
    for junk in (b"", b"\x45" * 10, b"\x4f" + b"\0" * 30):
        assert r.add(junk, now=0) is None
    assert r.statistics().refused == 3


def _fragment(payload: bytes, offset: int, more: bool, ident: int = 9, src: int = 1) -> bytes:
    frag = (0x2000 if more else 0) | (offset // 8)
    return (
        struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(payload), ident, frag, 64, 17, 0, src, 2)
        + payload
    )


def test_a_datagram_with_a_hole_is_never_returned() -> None:
    # [0,8) more, [16,24) last, [32,40) more: 24 bytes held for a 24-byte datagram, with
    # bytes 8..16 missing and 32..40 past its end. In every order, nothing comes out.
    frags = [_fragment(bytes(8), 0, True), _fragment(bytes(8), 16, False)]
    frags.append(_fragment(bytes(8), 32, True))
    for order in itertools.permutations(frags):
        r = Reassembler()
        assert [r.add(f, now=0) for f in order] == [None, None, None]
        assert r.statistics().drops["beyond_end"] >= 1


def test_eight_thousand_tiny_fragments_in_any_order_reassemble() -> None:
    data = random.Random(1).randbytes(8 * 8000)
    frags = [_fragment(data[i : i + 8], i, i + 8 < len(data)) for i in range(0, len(data), 8)]
    random.Random(2).shuffle(frags)
    r = Reassembler(max_fragments=8192, high_thresh=1 << 30, max_dist=1 << 20)
    outs = [r.add(f, now=0) for f in frags]
    assert outs[:-1] == [None] * (len(frags) - 1)
    whole = outs[-1]
    assert whole is not None
    assert whole[20:] == data
    assert r.statistics().memory == 0


def test_fragments_per_datagram_are_bounded() -> None:
    r = Reassembler(max_fragments=100)
    for i in range(101):
        r.add(_fragment(bytes(8), 8 * i, True), now=0)
    stats = r.statistics()
    assert stats.drops["too_many_fragments"] == 1
    assert (stats.pending, stats.memory) == (0, 0)


def test_memory_above_high_thresh_evicts_the_oldest_datagrams() -> None:
    r = Reassembler(high_thresh=10_000, low_thresh=6_000)
    for ident in range(20):  # 1,480 + overhead each: the 6th crosses 10,000
        assert r.add(_fragment(bytes(1480), 0, True, ident=ident), now=ident) is None
        assert r.statistics().memory <= 10_000
    stats = r.statistics()
    assert stats.drops["memory"] > 0
    assert stats.pending == 20 - stats.drops["memory"]
    # The newest survive; a datagram still being sent completes.
    assert r.add(_fragment(bytes(8), 1480, False, ident=19), now=20) is not None


def test_a_datagram_left_behind_by_its_sources_traffic_is_dropped() -> None:
    r = Reassembler(max_dist=64)
    r.add(_fragment(bytes(8), 0, True, ident=1), now=0)
    for ident in range(2, 70):  # 68 fragments of other datagrams from the same source
        r.add(_fragment(bytes(8), 0, True, ident=ident), now=0)
    assert r.add(_fragment(bytes(8), 8, False, ident=1), now=0) is None
    assert r.statistics().drops["too_far"] == 1


def test_an_exact_duplicate_is_ignored_and_a_partial_one_drops_the_datagram() -> None:
    r = Reassembler()
    first = _fragment(bytes(16), 0, True)
    assert r.add(first, now=0) is None
    assert r.add(first, now=0) is None
    assert r.statistics().refused == 0
    assert r.add(_fragment(b"\1" * 8, 8, False), now=0) is None
    assert r.statistics().drops["overlap"] == 1
    assert r.statistics().pending == 0
