"""The benchmark report: wrk's output is read right and the table has a row per metric
and a ``median (ratio)`` cell per peer. No load is generated here (tests/netns does)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from benchmarks.run import (
    BASELINE,
    BenchError,
    Results,
    format_download_ratios,
    format_table,
    parse_wrk,
)

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

WRK_LATENCY = """\
Running 2s test @ http://10.0.1.5:80/
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    71.20us   30.01us   1.52ms   97.01%
    Req/Sec    13.50k   520.11    14.20k    70.00%
  Latency Distribution
     50%   66.00us
     75%   72.00us
     90%   80.00us
     99%    1.20ms
  26866 requests in 2.00s, 4.15MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:  13433.00
Transfer/sec:      2.07MB
"""


def test_parse_wrk_reads_rate_errors_and_percentiles() -> None:
    got = parse_wrk(WRK_LATENCY)
    assert got == {"requests_per_s": 13433.0, "errors": 9.0, "p50_us": 66.0, "p99_us": 1200.0}


def test_parse_wrk_without_a_rate_is_an_error() -> None:
    with pytest.raises(BenchError, match="Requests/sec"):
        parse_wrk("unable to connect to 10.0.1.5:80 Connection refused\n")


def test_parse_wrk_with_no_completed_request_is_an_error() -> None:
    stalled = WRK_LATENCY.replace("26866 requests", "0 requests")
    with pytest.raises(BenchError, match="no request completed"):
        parse_wrk(stalled)


def test_table_gives_medians_and_ratios_to_the_baseline() -> None:
    results = Results()
    for value in (8.0, 10.0, 12.0):
        results.add(BASELINE, {"tcp_gbps": value, "conn_per_s": 1000.0})
    for value in (9.0, 1.0, 5.0):
        results.add("lvsd-c", {"tcp_gbps": value})
    table = format_table(results, ["lvsd-c", BASELINE])
    lines = table.splitlines()
    assert lines[0] == f"| test | lvsd-c | {BASELINE} |"
    assert re.fullmatch(r"\|---\|(---:\|){2}", lines[1])
    assert "| bulk TCP, Gbit/s | 5.00 (0.50×) | 10.0 |" in lines
    assert "| connection rate, conn/s | n/a | 1,000 |" in lines
    # Metrics nobody measured get no row.
    assert not any("UDP" in line for line in lines)


def test_the_download_is_reported_as_a_ratio_to_routing() -> None:
    results = Results()
    for peer, value in (("routing", 10.0), ("lvsd-dr", 9.5), ("lvsd-c", 4.0)):
        results.add(peer, {"tcp_down_gbps": value})
    text = format_download_ratios(results, ["lvsd-c", "lvsd-dr", "routing"])
    assert text.strip() == (
        "Bulk download real1 → client as a ratio to routing: lvsd-c 0.40, lvsd-dr 0.95"
    )
    assert format_download_ratios(Results(), ["lvsd-dr"]) == ""


@pytest.mark.parametrize(
    "module", sorted(p.stem for p in BENCHMARKS.glob("*.py") if p.stem != "__init__")
)
def test_every_benchmark_module_imports(module: str) -> None:
    # make bench imports them; a test module they borrow from may move.
    importlib.import_module(f"benchmarks.{module}")
