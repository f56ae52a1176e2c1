"""Which fast path runs: the C extension must be importable unless explicitly disabled."""

from __future__ import annotations

import importlib
import inspect
import os
from types import ModuleType

import pytest

import director.dataplane._fastpath_py as twin
from director.dataplane import fastpath


@pytest.mark.c_extension
def test_c_extension_is_in_use() -> None:
    """Fails (never skips) when the C extension is missing, so CI cannot pass on the twin."""
    if os.environ.get("DIRECTOR_NO_EXTENSIONS") == "1":
        assert fastpath.IMPLEMENTATION == "py"
        return
    importlib.import_module("director.dataplane._fastpath")
    assert fastpath.IMPLEMENTATION == "c"


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
