"""The reaper's wire format (PlumbingSpec as JSON, the sysctls told), its disarm path and
sysctl restore on a scratch tree; no namespace touched."""

from __future__ import annotations

import io
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any, cast

import pytest

from director.daemon.reaper import (
    DISARM,
    SYSCTLS,
    Reaper,
    listen,
    spec_from_json,
    spec_to_json,
    watch,
)
from director.dataplane.plumbing import PlumbingSpec, _Sysctls, restore_sysctls

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


CHANGES = (
    (("net", "ipv4", "ip_forward"), "0"),
    (("net", "ipv4", "conf", "eth0.10", "rp_filter"), "1"),
    (("net", "ipv4", "ip_forward"), "2"),  # changed twice: the oldest value wins
)


def test_sysctls_told_then_disarmed() -> None:
    sent = io.BytesIO()
    Reaper(cast(Any, None), sent).tell_sysctls(CHANGES)
    assert listen(io.BytesIO(sent.getvalue() + DISARM)) == (True, list(CHANGES))
    assert listen(io.BytesIO(sent.getvalue())) == (False, list(CHANGES))  # died after telling
    assert listen(io.BytesIO(SYSCTLS + b"not json\n")) == (False, [])


def test_restore_sysctls_newest_first_skipping_gone_and_unchanged(tmp_path: Path) -> None:
    sysctls = _Sysctls(tmp_path)
    for key, value in ((("net", "ipv4", "ip_forward"), "1"), (("net", "ipv4", "x"), "5")):
        sysctls.path(key).parent.mkdir(parents=True, exist_ok=True)
        sysctls.write(key, value)
    changes = (*CHANGES, (("net", "ipv4", "x"), "5"))
    restored = restore_sysctls(changes, sysctls)
    assert sysctls.read(("net", "ipv4", "ip_forward")) == "0"
    assert sysctls.read(("net", "ipv4", "x")) == "5"  # unchanged: not written
    assert len(restored) == 2  # ip_forward twice; the gone interface and x skipped
