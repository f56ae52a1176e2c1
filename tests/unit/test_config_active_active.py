"""lvs.cf's active-active keys: parsed, printed back, and each mistake named by file:line."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from director.config import format_config, parse_config
from director.errors import ConfigError

GOOD = """\
network = direct
active_active = 1
directors = 10.0.1.1 10.0.1.2, 10.0.1.3
bgp_neighbor = 10.0.1.254
bgp_asn = 65001
bgp_neighbor_asn = 65000
bgp_hold_time = 3
virtual web {
    address = 10.0.2.5
    port = 80
    server real1 {
        address = 192.168.1.10
    }
}
"""


def test_the_group_and_its_bgp_session_are_read_and_printed_back() -> None:
    cfg = parse_config(GOOD, "lvs.cf")
    assert cfg.active_active
    assert cfg.directors == tuple(IPv4Address(f"10.0.1.{i}") for i in (1, 2, 3))
    assert cfg.bgp_neighbor == IPv4Address("10.0.1.254")
    assert (cfg.bgp_asn, cfg.bgp_neighbor_asn, cfg.bgp_hold_time) == (65001, 65000, 3)
    assert parse_config(format_config(cfg), "normalized") == cfg
    # Off by default, and then printed not at all.
    plain = parse_config("virtual web {\n    address = 10.0.2.5\n    port = 80\n}\n", "lvs.cf")
    assert not plain.active_active
    assert "directors" not in format_config(plain)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("directors = 10.0.1.1 10.0.1.2, 10.0.1.3", "directors = 10.0.1.1"),
         "lvs.cf:3: directors: must name at least two directors, got 1"),
        (("directors = 10.0.1.1 10.0.1.2, 10.0.1.3", "directors = 10.0.1.1 10.0.1.1"),
         "lvs.cf:3: directors: 10.0.1.1 is listed twice"),
        (("directors = 10.0.1.1 10.0.1.2, 10.0.1.3", "directors = 10.0.1.1 10.0.1.300"),
         "lvs.cf:3: directors: must be an IPv4 address such as 192.0.2.1, got '10.0.1.300'"),
        (("bgp_asn = 65001", "bgp_asn = 0"),
         "lvs.cf:5: bgp_asn: must be an integer >= 1, got '0'"),
        (("bgp_asn = 65001", "bgp_asn = 4294967296"),
         "lvs.cf:5: bgp_asn: must be an integer from 1 to 4294967295, got '4294967296'"),
        (("bgp_hold_time = 3", "bgp_hold_time = 2"),
         "lvs.cf:7: bgp_hold_time: must be an integer from 3 to 65535, got '2'"),
        (("bgp_neighbor = 10.0.1.254\n", ""),
         "bgp_neighbor: the global section has no bgp_neighbor"),
        (("active_active = 1", "active_active = 0"),
         "lvs.cf:3: directors: needs active_active = 1"),
        (("active_active = 1", "active_active = 1\nbackup = 10.0.1.9"),
         "lvs.cf:2: active_active: cannot be combined with a backup director"),
    ],
)  # fmt: skip
def test_mistakes_are_named_by_line_and_key(edit: tuple[str, str], message: str) -> None:
    old, new = edit
    assert old in GOOD
    with pytest.raises(ConfigError) as err:
        parse_config(GOOD.replace(old, new), "lvs.cf")
    assert message in str(err.value)
