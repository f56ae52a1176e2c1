"""IPv4 reassembly: whole datagrams out of fragments in any order, bounded, overlaps refused."""

from __future__ import annotations

import random

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
