"""PlumbingSpec refuses what setup could not honour, before anything is touched."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest

from director.plumbing import DEFAULT_RULE_PRIORITY, DEFAULT_TABLE, PlumbingSpec

VIP = IPv4Address("10.0.1.5")


def test_defaults() -> None:
    spec = PlumbingSpec(vips=(VIP,))
    assert (spec.tun, spec.table, spec.rule_priority) == ("lvs0", 0x1D5, 1000)
    assert (spec.table, spec.rule_priority) == (DEFAULT_TABLE, DEFAULT_RULE_PRIORITY)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"vips": ()}, "need at least one VIP"),
        ({"vips": (VIP, VIP)}, "duplicates"),
        ({"table": 254}, "not 253/254/255, got 254"),
        ({"table": 0}, "got 0"),
        ({"rule_priority": 32766}, "must be 1..32765, got 32766"),
        ({"mtu": 40}, "must be 68..65535, got 40"),
        ({"nat_router_label": "eth1:1"}, "given without nat_router"),
        (
            {"nat_router": IPv4Interface("192.168.1.254/24"), "nat_router_label": "x" * 16},
            "must be 1..15 bytes",
        ),
        ({"nat_router": IPv4Interface("10.0.1.5/24")}, "10.0.1.5 is also a VIP"),
    ],
)
def test_refuses(fields: dict[str, Any], message: str) -> None:
    fields = {"vips": (VIP,)} | fields
    with pytest.raises(ValueError, match=message):
        PlumbingSpec(**fields)
