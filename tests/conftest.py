"""Suite-wide rules: root-only tests skip outside CI and fail inside it."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

IN_CI = os.environ.get("CI") == "true"

pytest_plugins = ["pytester"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """Under CI=true a skipped netns test is a failure: CI runs as root and must run them."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if IN_CI and report.skipped and item.get_closest_marker("netns") is not None:
        report.outcome = "failed"
        report.longrepr = f"netns test skipped under CI=true ({report.longrepr!r})"


def require_root() -> None:
    """Skip (fail under CI) unless this process may create network namespaces."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
