"""Fixtures for unit tests: the fast path under test, C and Python alike."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

NO_EXTENSIONS = os.environ.get("DIRECTOR_NO_EXTENSIONS") == "1"


@pytest.fixture(
    scope="session",
    params=[pytest.param("c", marks=pytest.mark.c_extension), "py"],
)
def fastpath(request: pytest.FixtureRequest) -> ModuleType:
    """The C extension or the Python twin; every fast path test runs on both.

    The C param is skipped only when DIRECTOR_NO_EXTENSIONS=1; otherwise an import error fails.
    """
    if request.param == "c":
        if NO_EXTENSIONS:
            pytest.skip("DIRECTOR_NO_EXTENSIONS=1")
        return importlib.import_module("director.dataplane._fastpath")
    return importlib.import_module("director.dataplane._fastpath_py")
