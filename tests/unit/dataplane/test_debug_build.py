"""Which build of the C extensions this run imports: `make test-debug` must get the debug one.

A ``DIRECTOR_DEBUG_BUILD=1`` build is compiled with ``-g3 -DDIRECTOR_DEBUG=1``, which
records the macro in the object's debug information; the normal ``-O2`` build has no
such record. The Makefile's debug run sets ``DIRECTOR_EXPECT_DEBUG_BUILD=1``; every
other run expects the normal build.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

EXPECT_DEBUG = os.environ.get("DIRECTOR_EXPECT_DEBUG_BUILD") == "1"
DEBUG_MACRO = b"DIRECTOR_DEBUG 1"


@pytest.mark.c_extension
@pytest.mark.parametrize("module", ["director.dataplane._fastpath", "scheduling._schedhash"])
def test_the_expected_build_is_in_use(module: str) -> None:
    path = importlib.import_module(module).__file__
    assert path is not None
    debug = DEBUG_MACRO in Path(path).read_bytes()
    assert debug is EXPECT_DEBUG, f"{path}: debug build {debug}, expected {EXPECT_DEBUG}"
