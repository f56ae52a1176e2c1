"""Suite-wide rules: under CI=true every skip fails the run unless it is reviewed below.

Root-only tests skip on a developer's machine without root; CI runs as root with TUN and
namespaces, so there a skip means a test that did not run: a failure, whether it comes
from a test, a fixture, a ``skipif`` mark or a module-level ``pytest.skip``.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

IN_CI = os.environ.get("CI") == "true"

pytest_plugins = ["pytester"]

# The skips a CI run accepts: node id as pytest prints it (a test, or a module for a
# module-level skip; parameters may be left off) -> why it was reviewed and found right.
# Add an entry only with a reason a reviewer agreed to; anything else fails under CI=true.
ALLOWED_SKIPS: dict[str, str] = {}


def skip_allowed(nodeid: str) -> bool:
    """True if ``nodeid`` (or the same test without its parameters) is in ALLOWED_SKIPS."""
    return nodeid in ALLOWED_SKIPS or nodeid.partition("[")[0] in ALLOWED_SKIPS


def _unlisted_skip(nodeid: str, longrepr: object) -> str:
    return (
        f"{nodeid}: skipped under CI=true and not in ALLOWED_SKIPS (tests/conftest.py): "
        f"{longrepr!r}"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """Under CI=true an unlisted skipped test is a failure (an xfail is not a skip)."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if (
        IN_CI
        and report.skipped
        and not hasattr(report, "wasxfail")
        and not skip_allowed(item.nodeid)
    ):
        report.longrepr = _unlisted_skip(item.nodeid, report.longrepr)
        report.outcome = "failed"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, None]:
    """Under CI=true an unlisted module-level skip is a collection error."""
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if IN_CI and report.skipped and not skip_allowed(report.nodeid):
        report.longrepr = _unlisted_skip(report.nodeid, report.longrepr)
        report.outcome = "failed"


def require_root() -> None:
    """Skip (fail under CI) unless this process may create network namespaces."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
