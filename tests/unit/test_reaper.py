"""The reaper's wire format (PlumbingSpec as JSON) and its disarm path; no namespace touched."""

from __future__ import annotations

import io
from ipaddress import IPv4Address, IPv4Interface

import pytest

from director.plumbing import PlumbingSpec
from director.reaper import DISARM, spec_from_json, spec_to_json, watch

SPEC = PlumbingSpec(
    vips=(IPv4Address("10.0.1.5"), IPv4Address("10.0.1.6")),
    tun="lvs7",
    private_iface="eth1",
    reals=(IPv4Address("192.168.1.10"),),
    nat_router=IPv4Interface("192.168.1.254/24"),
    nat_router_label="eth1:1",
    table=77,
    rule_priority=900,
    mtu=1400,
    claim_on_setup=False,
    fwmarks=(1, 443),
)


@pytest.mark.parametrize("spec", [SPEC, PlumbingSpec(vips=(IPv4Address("10.0.1.5"),))])
def test_spec_round_trips_through_json(spec: PlumbingSpec) -> None:
    assert spec_from_json(spec_to_json(spec)) == spec


def test_spec_from_json_refuses_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown keys colour"):
        spec_from_json('{"vips": ["10.0.1.5"], "colour": 1}')
    with pytest.raises(ValueError, match="rule_priority"):
        spec_from_json('{"vips": ["10.0.1.5"], "rule_priority": 40000}')
    with pytest.raises(ValueError, match="JSON object"):
        spec_from_json("[]")


def test_disarmed_reaper_does_nothing() -> None:
    assert watch(SPEC, io.BytesIO(DISARM)) is None
