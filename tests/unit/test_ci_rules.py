"""The suite's own rule: under CI=true a skip fails the run unless ALLOWED_SKIPS lists it."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = (Path(__file__).resolve().parent.parent / "conftest.py").read_text()
EMPTY_LIST = "ALLOWED_SKIPS: dict[str, str] = {}"
REVIEWED = (
    'ALLOWED_SKIPS: dict[str, str] = {"test_it.py::test_reviewed": "reviewed", '
    '"test_skipped_module.py": "reviewed"}'
)
TEST = """
import shutil
import pytest

@pytest.mark.netns
def test_needs_root():
    pytest.skip("pretend we are not root")

def test_plain_skip():
    pytest.skip("not a netns test, e.g. a missing openssl")

@pytest.mark.skipif(True, reason="a tool is missing")
def test_skipif_mark():
    pass

@pytest.fixture
def needs_tool():
    pytest.skip("skipped in a fixture")

def test_fixture_skip(needs_tool):
    pass

@pytest.mark.parametrize("n", [1, 2])
def test_reviewed(n):
    pytest.skip("listed in ALLOWED_SKIPS without parameters")

@pytest.mark.xfail(reason="an expected failure is not a skip")
def test_xfail():
    assert False

def test_passes():
    pass
"""
SKIPPED_MODULE = """
import pytest
pytest.skip("the whole module", allow_module_level=True)

def test_never_collected():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    assert EMPTY_LIST in CONFTEST
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    netns: namespace test\n")
    pytester.makepyfile(test_it=TEST)
    return pytester


def test_every_unlisted_skip_fails_under_ci(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest_subprocess()
    # Skips in the test body fail (netns, plain, and both test_reviewed params: the list
    # here is empty); skips in setup (a skipif mark, a fixture) are errors.
    result.assert_outcomes(failed=4, passed=1, xfailed=1, errors=2)


def test_a_module_level_skip_fails_under_ci(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(test_netns_module=SKIPPED_MODULE)
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest_subprocess("test_netns_module.py")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_netns_module.py*not in ALLOWED_SKIPS*"])
    assert result.ret != 0


def test_listed_skips_stay_skips_under_ci(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makeconftest(CONFTEST.replace(EMPTY_LIST, REVIEWED))
    suite.makepyfile(test_skipped_module=SKIPPED_MODULE)
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest_subprocess("test_it.py", "test_skipped_module.py")
    result.assert_outcomes(failed=2, errors=2, passed=1, xfailed=1, skipped=3)


def test_skips_only_skip_outside_ci(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    suite.makepyfile(test_netns_module=SKIPPED_MODULE)
    result = suite.runpytest_subprocess()
    result.assert_outcomes(skipped=7, passed=1, xfailed=1)
    assert result.ret == 0
