"""Gratuitous ARP frames, checked against scapy's dissection (an independent builder)."""

from __future__ import annotations

from ipaddress import IPv4Address

from scapy.layers.l2 import ARP, Ether

from director.dataplane.plumbing import gratuitous_arp_frames

MAC = "02:00:0a:00:01:01"
VIP = IPv4Address("10.0.1.5")


def test_a_request_and_a_reply_both_saying_the_vip_is_at_the_directors_mac() -> None:
    request, reply = gratuitous_arp_frames(MAC, VIP)
    for frame, op, hwdst in ((request, 1, "00:00:00:00:00:00"), (reply, 2, "ff:ff:ff:ff:ff:ff")):
        eth = Ether(frame)
        assert len(frame) == 42
        assert (eth.dst, eth.src, eth.type) == ("ff:ff:ff:ff:ff:ff", MAC, 0x0806)
        arp = eth[ARP]
        assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen) == (1, 0x0800, 6, 4)
        assert (arp.op, arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst) == (
            op,
            MAC,
            str(VIP),
            hwdst,
            str(VIP),
        )


def test_the_frames_are_byte_for_byte_what_scapy_builds() -> None:
    expected = tuple(
        bytes(
            Ether(dst="ff:ff:ff:ff:ff:ff", src=MAC, type=0x0806)
            / ARP(op=op, hwsrc=MAC, psrc=str(VIP), hwdst=hwdst, pdst=str(VIP))
        )
        for op, hwdst in ((1, "00:00:00:00:00:00"), (2, "ff:ff:ff:ff:ff:ff"))
    )
    assert gratuitous_arp_frames(MAC, VIP) == expected
