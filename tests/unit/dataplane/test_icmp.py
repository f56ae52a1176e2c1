"""The director's own ICMP: echo replies and port unreachable, checked by scapy."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.packet import Raw

from director.dataplane import icmp
from director.dataplane.icmp import echo_reply, port_unreachable


def _valid(pkt: IP) -> bool:
    """Checksums as scapy recomputes them from scratch."""
    again = IP(bytes(pkt))
    del again.chksum
    del again[ICMP].chksum
    rebuilt = IP(bytes(again))
    ok: bool = rebuilt.chksum == pkt.chksum and rebuilt[ICMP].chksum == pkt[ICMP].chksum
    return ok


def test_echo_reply_swaps_addresses_and_keeps_the_payload() -> None:
    req = IP(src="10.0.1.100", dst="10.0.1.5") / ICMP(type=8, id=7, seq=3) / Raw(b"x" * 56)
    raw = echo_reply(bytes(req))
    assert raw is not None
    rep = IP(raw)
    assert (rep.src, rep.dst) == ("10.0.1.5", "10.0.1.100")
    assert rep[ICMP].type == 0
    assert (rep[ICMP].id, rep[ICMP].seq) == (7, 3)
    assert rep[Raw].load == b"x" * 56
    assert _valid(rep)


def test_echo_reply_refuses_what_is_not_a_good_request() -> None:
    req = IP(src="10.0.1.100", dst="10.0.1.5") / ICMP(type=8) / Raw(b"abc")
    raw = bytearray(bytes(req))
    raw[-1] ^= 0xFF  # bad ICMP checksum
    assert echo_reply(bytes(raw)) is None
    assert echo_reply(bytes(IP(dst="10.0.1.5") / ICMP(type=0))) is None
    assert echo_reply(bytes(IP(dst="10.0.1.5") / UDP())) is None
    assert echo_reply(b"\x45\x00") is None


def test_port_unreachable_quotes_the_offending_datagram() -> None:
    pkt = IP(src="10.0.1.100", dst="10.0.1.5") / UDP(sport=4000, dport=9) / Raw(b"hello")
    raw = port_unreachable(bytes(pkt))
    assert raw is not None
    err = IP(raw)
    assert (err.src, err.dst) == ("10.0.1.5", "10.0.1.100")
    assert (err[ICMP].type, err[ICMP].code) == (3, 3)
    assert err[IPerror].dst == "10.0.1.5"
    assert err[UDPerror].dport == 9
    assert _valid(err)


def test_no_error_about_an_error_or_a_later_fragment() -> None:
    assert port_unreachable(bytes(IP(dst="10.0.1.5") / ICMP(type=3) / Raw(b"\0" * 28))) is None
    later = IP(dst="10.0.1.5", frag=10) / Raw(b"\0" * 20)
    assert port_unreachable(bytes(later)) is None
    assert port_unreachable(bytes(IP(src="224.0.0.1", dst="10.0.1.5") / TCP())) is None


def test_errors_are_rate_limited_like_icmp_msgs_per_sec() -> None:
    limit = icmp.RateLimit(rate=1000, burst=50)
    assert sum(limit.allow(0) for _ in range(200)) == 50  # the burst
    assert limit.suppressed == 150
    assert sum(limit.allow(10) for _ in range(200)) == 10  # 10 ms refill 10
    # A second of flood, five attempts a millisecond:
    sent = sum(limit.allow(1000 + ms) for ms in range(1000) for _ in range(5))
    assert sent == 50 + 999  # the refilled burst, then one per millisecond


def test_a_reset_answers_an_ack_with_its_acknowledgment_number() -> None:
    seg = (
        IP(src="10.0.1.100", dst="10.0.1.5")
        / TCP(sport=40000, dport=80, flags="PA", seq=1000, ack=5555)
        / Raw(b"GET / HTTP/1.1\r\n\r\n")
    )
    raw = icmp.tcp_reset(bytes(seg))
    assert raw is not None
    rst = IP(raw)
    assert (rst.src, rst.dst, rst[TCP].sport, rst[TCP].dport) == (
        "10.0.1.5",
        "10.0.1.100",
        80,
        40000,
    )
    assert (rst[TCP].flags, rst[TCP].seq) == ("R", 5555)
    again = IP(raw)
    del again.chksum
    del again[TCP].chksum
    rebuilt = IP(bytes(again))
    assert (rebuilt.chksum, rebuilt[TCP].chksum) == (rst.chksum, rst[TCP].chksum)


def test_a_reset_without_ack_acknowledges_what_the_segment_took() -> None:
    seg = (
        IP(src="10.0.1.100", dst="10.0.1.5")
        / TCP(sport=1, dport=80, flags="F", seq=7)
        / Raw(b"abc")
    )
    raw = icmp.tcp_reset(bytes(seg))
    assert raw is not None
    rst = IP(raw)
    assert (rst[TCP].flags, rst[TCP].seq, rst[TCP].ack) == ("RA", 0, 7 + 3 + 1)


def test_no_reset_answers_a_reset_a_later_fragment_or_a_multicast_source() -> None:
    assert icmp.tcp_reset(bytes(IP(dst="10.0.1.5") / TCP(flags="R"))) is None
    assert icmp.tcp_reset(bytes(IP(dst="10.0.1.5", frag=10) / TCP(flags="A"))) is None
    assert icmp.tcp_reset(bytes(IP(src="224.0.0.1", dst="10.0.1.5") / TCP(flags="A"))) is None
    assert icmp.tcp_reset(bytes(IP(dst="10.0.1.5") / UDP())) is None
