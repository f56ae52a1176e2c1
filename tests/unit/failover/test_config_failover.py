"""lvs.cf settings of failover: fractional heartbeat timing and the insecure switch."""

from __future__ import annotations

import pytest

from director.config import format_config, parse_config
from director.errors import ConfigError


def test_fractional_keepalive_and_deadtime() -> None:
    cfg = parse_config("keepalive = 0.2\ndeadtime = 1\n")
    assert (cfg.keepalive, cfg.deadtime) == (0.2, 1.0)
    text = format_config(cfg)
    assert "keepalive = 0.2\n" in text
    assert "deadtime = 1\n" in text
    assert parse_config(text) == cfg


@pytest.mark.parametrize("value", ["0", "0.0", "-1", "1.2345", "1e3", ".5", "0x10"])
def test_bad_seconds_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"keepalive.*seconds > 0"):
        parse_config(f"keepalive = {value}\n")


def test_fractional_deadtime_must_exceed_keepalive() -> None:
    with pytest.raises(ConfigError, match="greater than keepalive"):
        parse_config("backup = 10.0.0.2\nkeepalive = 0.5\ndeadtime = 0.5\n")


def test_heartbeat_insecure_defaults_off_and_round_trips() -> None:
    assert parse_config("").heartbeat_insecure is False
    cfg = parse_config("heartbeat_insecure = 1\n")
    assert cfg.heartbeat_insecure is True
    assert parse_config(format_config(cfg)) == cfg
