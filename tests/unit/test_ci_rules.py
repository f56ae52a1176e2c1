"""The suite's own rule: under CI=true a skipped netns test fails the run."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = (Path(__file__).resolve().parent.parent / "conftest.py").read_text()
TEST = """
import pytest

@pytest.mark.netns
def test_needs_root():
    pytest.skip("pretend we are not root")

def test_plain_skip():
    pytest.skip("not a netns test")
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    netns: namespace test\n")
    pytester.makepyfile(test_it=TEST)
    return pytester


def test_skipped_netns_test_fails_under_ci(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest_subprocess()
    result.assert_outcomes(failed=1, skipped=1)


def test_skipped_netns_test_only_skips_outside_ci(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = suite.runpytest_subprocess()
    result.assert_outcomes(skipped=2)
