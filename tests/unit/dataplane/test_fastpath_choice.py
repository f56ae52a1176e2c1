"""Which fast path runs: the C extension must be importable unless explicitly disabled."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from types import ModuleType

import pytest

import director.dataplane._fastpath_py as twin
from director.dataplane import fastpath


def _chosen(no_extensions: bool) -> str:
    """``fastpath.IMPLEMENTATION`` in a fresh interpreter, with or without the switch."""
    env = {k: v for k, v in os.environ.items() if k != "DIRECTOR_NO_EXTENSIONS"}
    if no_extensions:
        env["DIRECTOR_NO_EXTENSIONS"] = "1"
    code = "from director.dataplane import fastpath; print(fastpath.IMPLEMENTATION)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.c_extension
def test_c_extension_is_in_use() -> None:
    """Fails (never skips) when the C extension is missing, so CI cannot pass on the twin.

    Checked in a fresh interpreter without DIRECTOR_NO_EXTENSIONS whatever this run's
    environment says, so a run forced onto the twin still proves C is built and chosen.
    """
    importlib.import_module("director.dataplane._fastpath")
    assert _chosen(no_extensions=False) == "c"
    assert _chosen(no_extensions=True) == "py"
    forced = os.environ.get("DIRECTOR_NO_EXTENSIONS") == "1"
    assert ("py" if forced else "c") == fastpath.IMPLEMENTATION


def test_same_names_and_docstrings(fastpath: ModuleType) -> None:
    for name in twin.__all__:
        assert hasattr(fastpath, name), name
        if name.isupper():
            assert getattr(fastpath, name) == getattr(twin, name), name
    for name in dir(twin.ConnTable):
        if name.startswith("_") and name not in ("__len__",):
            continue
        assert hasattr(fastpath.ConnTable, name), name
        doc = inspect.getdoc(getattr(twin.ConnTable, name))
        if doc and name != "__len__":
            assert inspect.getdoc(getattr(fastpath.ConnTable, name)) == doc, name
    assert inspect.getdoc(fastpath.ConnTable) == inspect.getdoc(twin.ConnTable)
