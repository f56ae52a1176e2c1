"""nanny's uptime parsing and weight formula; HAProxy agent-check lines."""

from __future__ import annotations

import pytest

from healthcheck.load import AgentAdmin, AgentParseError, nanny_weight, parse_agent, parse_uptime


@pytest.mark.parametrize(
    ("text", "load"),
    [
        (" 10:01:02 up 3 days,  2:03,  1 user,  load average: 0.42, 0.30, 0.20", 0.42),
        ("10:01  up 1 day, load averages: 1.50 1.20 1.00", 1.50),
        ("web1   up  2 days,  2:03,  load average: 3.00, 2.00, 1.00", 3.0),
        ("rup: host: load average: 0.00, 0.01, 0.05", 0.0),
    ],
)
def test_parse_uptime_reads_the_one_minute_average(text: str, load: float) -> None:
    assert parse_uptime(text) == load


@pytest.mark.parametrize("text", ["", "garbage", "load average: high", "load"])
def test_parse_uptime_refuses_garbage(text: str) -> None:
    assert parse_uptime(text) is None


def test_nanny_weight_formula() -> None:
    # weight 100: scale factor 50, threshold 25, cap 1000, floor 100.
    assert nanny_weight(100, 100, 0.0) == 150
    assert nanny_weight(100, 100, 0.875) == 125  # 50 * 0.5 = 25, at the threshold
    assert nanny_weight(100, 100, 0.9) == 100  # 50 * 0.46 = 23 < 25: unchanged
    assert nanny_weight(100, 960, 0.0) == 1000  # capped at scale * weight
    assert nanny_weight(100, 990, 0.0) == 990  # capped: a change of 10 < 25
    assert nanny_weight(100, 300, 9.0) == 200  # 50 * 2 = 100 down
    assert nanny_weight(100, 120, 9.0) == 120  # floor 100, change 20 < 25
    assert nanny_weight(100, 150, 1.0) == 150


@pytest.mark.parametrize(
    ("line", "percent", "weight", "up", "admin"),
    [
        ("75%\n", 75, None, None, None),
        ("up 50%", 50, None, True, None),
        ("drain", None, None, None, AgentAdmin.DRAIN),
        ("down#disk full", None, None, False, None),
        ("stopped", None, None, False, None),
        ("ready,up,100%", 100, None, True, AgentAdmin.READY),
        ("maint maxconn:30", None, None, None, AgentAdmin.MAINT),
        ("weight:7", None, 7, None, None),
        ("weight:40%", 40, None, None, None),
    ],
)
def test_parse_agent(
    line: str, percent: int | None, weight: int | None, up: bool | None, admin: AgentAdmin | None
) -> None:
    r = parse_agent(line)
    assert (r.percent, r.weight, r.up, r.admin) == (percent, weight, up, admin)


@pytest.mark.parametrize("line", ["", "hello", "#only a comment", "\x00\xff"])
def test_parse_agent_refuses_garbage(line: str) -> None:
    with pytest.raises(AgentParseError):
        parse_agent(line)
