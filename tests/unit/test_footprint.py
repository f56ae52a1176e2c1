"""What each lvsd process loads: a process that does not need a heavy package never imports it.

The resident sizes and CPU times themselves are measured by
``benchmarks/bench_footprint.py``, never asserted here; these tests pin the structure
that keeps them small (the reaper waits on the standard library alone; ``lvsd check``
and ``lvsadm`` load nothing of the daemon).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

THESIS_CF = Path(__file__).resolve().parents[2] / "examples" / "thesis-lvs.cf"
HEAVY = ("pyroute2", "scapy", "uvloop", "prometheus_client", "director.daemon.director")

# ``new(name)``: whether the body imported module ``name`` (not the interpreter's start-up,
# nor a tracer that ``make coverage`` starts in every process).
SHOW_MODULES = (
    "import json, sys\n"
    "before = set(sys.modules)\n"
    "def new(name): return name in sys.modules and name not in before\n"
    "heavy = {heavy!r}\n"
    "{body}\n"
    "loaded = sorted(h for h in heavy if new(h))\n"
    "sys.stderr.write('\\nMODULES ' + json.dumps(loaded) + '\\n')\n"
)


def loaded_heavy(body: str) -> list[str]:
    """Which of HEAVY a fresh interpreter has imported after running ``body``."""
    code = SHOW_MODULES.format(heavy=HEAVY, body=body)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    marker = [line for line in done.stderr.splitlines() if line.startswith("MODULES ")]
    assert marker, done.stderr
    result: list[str] = json.loads(marker[-1].removeprefix("MODULES "))
    return result


def test_the_waiting_reaper_holds_the_standard_library_only() -> None:
    # Not even dataclasses' inspect and ast: the reaper's budget is 15 MiB in all.
    body = "import director.daemon.reaper\nassert not new('inspect'), 'inspect'"
    assert loaded_heavy(body) == []


def test_lvsd_check_loads_nothing_of_the_daemon() -> None:
    body = (
        "from director.cli import main\n"
        f"status = main(['check', '-c', {str(THESIS_CF)!r}])\n"
        "assert status == 0, status"
    )
    assert loaded_heavy(body) == []


def test_lvsadm_loads_nothing_of_the_daemon() -> None:
    body = (
        "from director.ops import lvsadm\n"
        "try:\n"
        "    lvsadm.main(['-L', '-n', '--socket', '/nonexistent/lvsd.sock'])\n"
        "except SystemExit:\n"
        "    pass"
    )
    assert loaded_heavy(body) == []


def test_the_daemon_loads_no_scapy_no_lab_and_no_prometheus_client() -> None:
    # prometheus_client (3 MiB) is loaded only by the child that renders a scrape.
    loaded = loaded_heavy("import director.daemon.run\nassert not new('lab')")
    assert "scapy" not in loaded
    assert "prometheus_client" not in loaded
    assert "pyroute2" in loaded  # the check can see a heavy import


@pytest.mark.parametrize("body", ["import scapy.all", "import pyroute2"])
def test_the_check_sees_a_heavy_import(body: str) -> None:
    assert loaded_heavy(body) != []


def test_the_director_loads_pyroute2_without_its_import_everything_init() -> None:
    body = (
        "import director.dataplane.netlink as nl\n"
        "assert not new('pyroute2.ndb') and not new('sqlite3')\n"
        "from pyroute2 import NDB, IPRoute, config\n"  # the package still works whole
        "assert IPRoute is nl.IPRoute and new('pyroute2.ndb')\n"
        "with IPRoute() as ipr:\n"
        "    assert ipr.get_links()\n"
    )
    assert loaded_heavy(body) == ["pyroute2"]
