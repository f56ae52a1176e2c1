"""A smoke run of the data-plane benchmark on a lab of its own: the harness builds the lab,
runs a peer through two short tests, removes everything and writes a well-formed table.
One peer is enough: the harness is tested, and the routing peer runs no lvsd at all.

client 10.0.1.100 ── br-pub ── director 10.0.1.1 | 192.168.1.1 ── br-priv ── real1 192.168.1.10
(routing peer: the client reaches real1 through a route via the director)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab.cluster import Lab, LabSpec, lab_namespaces
from tests.conftest import require_root
from tests.netns.conftest import unique_lab_name

pytestmark = pytest.mark.netns

NUMBER = r"[\d,]+(\.\d+)?"


def test_quick_run_writes_a_table_and_removes_the_lab(tmp_path: Path) -> None:
    require_root()
    name = unique_lab_name()
    out = tmp_path / "report.md"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.run", "--quick", "--seconds", "1",
             "--only", "routing,udp_pps,conn_rate", "--lab", name, "--out", str(out)],
            capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
    finally:
        Lab(LabSpec(), name).down()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert lab_namespaces(name) == []  # the harness downed its own lab
    report = out.read_text()
    assert "## Data plane" in report
    lines = [line for line in report.splitlines() if line.startswith("|")]
    assert lines[0] == "| test | routing |"
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in lines[2:]}
    assert set(rows) == {
        "64-byte UDP received by real1, kpps",
        "64-byte UDP forwarded by the director, kpps",
        "director CPU per forwarded packet, µs",
        "whole machine's busy CPU per 64-byte UDP packet received, µs",
        "connection rate, conn/s",
        "connection errors (wrk socket + non-2xx)",
    }
    for cell in rows.values():
        assert re.fullmatch(NUMBER, cell), cell


def test_footprint_reports_the_four_figures_with_their_goals_and_removes_its_lab() -> None:
    require_root()
    name = unique_lab_name()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_footprint", "--repeat", "1", "--idle", "0",
             "--lab", name],
            capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
    finally:
        Lab(LabSpec(), name).down()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert lab_namespaces(name) == []
    rows = {
        cells[0]: cells[1:]
        for line in proc.stdout.splitlines()[4:]
        if line.startswith("|") and (cells := [c.strip() for c in line.strip("|").split("|")])
    }
    assert set(rows) == {
        "daemon RSS (MiB)",
        "helper RSS (MiB)",
        "lvsadm -L -n CPU (s)",
        "lvsd check CPU (s)",
    }
    for median, goal, holds in rows.values():
        assert float(median) > 0  # a helper of 0 MiB would mean no reaper was found
        assert goal.startswith("≤ ")
        assert holds in ("yes", "NO")
