"""The lab's addressing plan and names, without building anything."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from lab.cluster import Lab, LabSpec, NodeLink, _icmp_echo, check_lab_name
from lab.errors import LabError


def test_defaults_are_the_thesis_cluster() -> None:
    spec = LabSpec()
    assert spec.links("director") == (
        NodeLink("eth0", "br-pub", IPv4Interface("10.0.1.1/24")),
        NodeLink("eth1", "br-priv", IPv4Interface("192.168.1.1/24")),
    )
    assert spec.links("backup")[1].address == IPv4Interface("192.168.1.2/24")
    assert spec.links("client") == (NodeLink("eth0", "br-pub", IPv4Interface("10.0.1.100/24")),)
    assert spec.links("real3") == (NodeLink("eth0", "br-priv", IPv4Interface("192.168.1.12/24")),)
    assert spec.links("sw") == ()
    assert spec.gateway("real1") == IPv4Address("192.168.1.254")
    assert spec.gateway("client") is None
    assert spec.gateway("director") is None


def test_spec_refuses_addresses_outside_their_segment() -> None:
    vip_outside = r"LabSpec\.vip: must be in 10\.0\.1\.0/24, got 192\.168\.1\.5$"
    with pytest.raises(LabError, match=vip_outside):
        LabSpec(vip=IPv4Address("192.168.1.5"))
    with pytest.raises(LabError, match=r"LabSpec\.primary_private: must be in 192\.168\.2\.0/24"):
        LabSpec(private_net=IPv4Network("192.168.2.0/24"))


def test_real_addresses_stop_before_collisions_and_the_broadcast() -> None:
    spec = LabSpec(first_real=IPv4Address("192.168.1.250"))
    assert spec.real_address(4) == IPv4Address("192.168.1.253")
    with pytest.raises(LabError, match="collides"):
        spec.real_address(5)
    with pytest.raises(LabError, match="outside"):
        spec.real_address(6)
    with pytest.raises(LabError, match="must be >= 1"):
        spec.real_address(0)


@pytest.mark.parametrize("name", ["", "Lab", "a-b", "x" * 17, "lab/1"])
def test_lab_names_without_hyphens_or_capitals(name: str) -> None:
    with pytest.raises(LabError, match="lab name"):
        check_lab_name(name)
    with pytest.raises(LabError):
        Lab(LabSpec(), name)


def test_namespace_names_carry_the_lab_prefix() -> None:
    lab = Lab(LabSpec(), "t42x0")
    assert lab.ns("real12") == "lvsd-t42x0-real12"
    assert lab.ns("sw") == "lvsd-t42x0-sw"
    assert lab.ns("router") == "lvsd-t42x0-router"  # the scale-out shape's (lab.router)
    assert lab.ns("director3") == "lvsd-t42x0-director3"
    for bad in ("real0", "real", "routers", "Real1", "director0", "director10"):
        with pytest.raises(LabError, match="unknown node"):
            lab.ns(bad)


def test_icmp_echo_checksum_sums_to_zero() -> None:
    packet = _icmp_echo(0x1234, 7, b"odd")
    padded = packet + b"\0"
    total = sum(int.from_bytes(padded[i : i + 2], "big") for i in range(0, len(padded), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF
