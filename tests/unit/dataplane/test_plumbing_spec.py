"""PlumbingSpec refuses what setup could not honour, before anything is touched."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest

from director.dataplane.plumbing import DEFAULT_RULE_PRIORITY, DEFAULT_TABLE, PlumbingSpec

VIP = IPv4Address("10.0.1.5")


def test_defaults() -> None:
    spec = PlumbingSpec(vips=(VIP,))
    assert (spec.tun, spec.table, spec.rule_priority) == ("lvs0", 0x1D5, 1000)
    assert (spec.table, spec.rule_priority) == (DEFAULT_TABLE, DEFAULT_RULE_PRIORITY)


def test_each_mark_has_its_tun_table_and_rule_priority() -> None:
    spec = PlumbingSpec(vips=(VIP,), fwmarks=(7, 1, 4294967295))
    assert [spec.fwmark_tun(m) for m in spec.fwmarks] == ["lvs0m7", "lvs0m1", "lvs0m4294967295"]
    assert [spec.fwmark_table(m) for m in spec.fwmarks] == [
        DEFAULT_TABLE + 1,
        DEFAULT_TABLE + 2,
        DEFAULT_TABLE + 3,
    ]
    # Replies (iif private) first, then what the director wrote (iif tun), then the marks.
    assert (spec.rule_priority, spec.guard_priority, spec.fwmark_priority) == (1000, 1001, 1002)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
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
        ({"fwmarks": (1, 1)}, r"fwmarks: duplicates in \[1, 1\]"),
        ({"fwmarks": (0,)}, "must be 1..2\\^32-1, got 0"),
        ({"fwmarks": (2**32,)}, "got 4294967296"),
        ({"tun": "lvs-long", "fwmarks": (4000000000,)}, "'lvs-longm4000000000' is over 15"),
        ({"table": 251, "fwmarks": (1, 2)}, "mark 2 would use table 253"),
        ({"table": 2**32 - 1, "fwmarks": (1,)}, "mark 1 would use table 4294967296"),
        ({"rule_priority": 32764, "fwmarks": (1,)}, "with fwmarks must be 1..32763, got 32764"),
    ],
)
def test_refuses(fields: dict[str, Any], message: str) -> None:
    fields = {"vips": (VIP,)} | fields
    with pytest.raises(ValueError, match=message):
        PlumbingSpec(**fields)
