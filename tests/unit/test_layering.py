"""The package rule: scheduling, healthcheck and failover are leaves.

A leaf imports the standard library and itself only, never ``director`` (the
composition root) and never another leaf; ``director`` is the only package that
imports the other three.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
LEAVES = ("scheduling", "healthcheck", "failover")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaf_imports_only_the_standard_library_and_itself(leaf: str) -> None:
    files = sorted((ROOT / leaf).rglob("*.py"))
    assert files, f"{leaf}: no modules found"
    allowed = set(sys.stdlib_module_names) | {leaf, "__future__"}
    for path in files:
        foreign = _imports(path) - allowed
        assert not foreign, f"{path.relative_to(ROOT)} imports {sorted(foreign)}"


def test_the_walk_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from director.ipvs import IPVS\nimport healthcheck.tcp\nimport os\n")
    assert _imports(bad) == {"director", "healthcheck", "os"}
