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

from director.cli import COMMAND_MODULES

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


# The director's borders: which units a unit's modules may import. A unit is a
# subpackage of director, "director" for its foundation modules (config, errors,
# logsetup, stats), "director.cli" for the command line on top, a leaf, or the lab.
DIRECTOR_UNITS = ("dataplane", "ipvs", "ops", "daemon", "tools")
LEAF_SET = set(LEAVES)
BORDERS: dict[str, set[str]] = {
    "director": LEAF_SET,
    "director.dataplane": {"director"},
    "director.ipvs": {"director", "director.dataplane", "scheduling"},
    "director.ops": {"director", "director.dataplane", "director.ipvs"} | LEAF_SET,
    "director.daemon": {"director", "director.dataplane", "director.ipvs", "director.ops"}
    | LEAF_SET,
    "director.tools": {"director", "director.dataplane", "director.ipvs", "director.ops", "lab"}
    | LEAF_SET,
    "director.cli": {"director", "director.daemon", "director.ops", "director.tools", "lab"},
    "lab": set(),
}
# Third-party packages and the one unit that may hold each (so a process that does not
# need one never pays for its import).
THIRD_PARTY: dict[str, set[str]] = {
    "pyroute2": {"director.dataplane", "lab"},
    "scapy": set(),  # tests only: the director builds its few frames with struct
    "prometheus_client": {"director.ops"},
    "uvloop": {"director.daemon"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "director" or len(parts) == 1:
        return parts[0]
    if parts[1] in DIRECTOR_UNITS:
        return f"director.{parts[1]}"
    if parts[1] in ("cli", "__main__"):
        return "director.cli"
    return "director"


def _module_imports(path: Path, known: set[str]) -> set[str]:
    """Every module ``path`` imports, at any level of the file (TYPE_CHECKING included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found


def _graph() -> dict[str, set[str]]:
    paths = [p for top in ("director", "lab") for p in sorted((ROOT / top).rglob("*.py"))]
    known = {_module_name(p) for p in paths}
    return {_module_name(p): _module_imports(p, known) for p in paths}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_import_cycles_among_the_director_and_lab_modules() -> None:
    assert _cycles(_graph()) == []


def test_every_module_imports_only_across_its_units_borders() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    crossings = []
    for module, imported in sorted(_graph().items()):
        unit = _unit(module)
        assert unit in BORDERS, f"{module}: in no unit with written borders"
        for target in sorted(imported):
            top = target.split(".")[0]
            if top in stdlib:
                continue
            if top in THIRD_PARTY:
                if unit not in THIRD_PARTY[top]:
                    crossings.append(f"{module} imports {target}")
                continue
            if _unit(target) not in BORDERS[unit] | {unit}:
                crossings.append(f"{module} imports {target}")
    assert crossings == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_units_place_modules_as_the_docstrings_say() -> None:
    assert _unit("director.dataplane.fastpath") == "director.dataplane"
    assert _unit("director.config") == "director"
    assert _unit("director.cli") == "director.cli"
    assert _unit("lab.cluster") == "lab"
    assert "director.daemon" not in BORDERS["director.ops"]


def test_every_lvsd_command_module_is_one_the_command_line_may_import() -> None:
    for name, module in COMMAND_MODULES.items():
        assert (ROOT / (module.replace(".", "/") + ".py")).exists(), name
        assert _unit(module) in BORDERS["director.cli"], f"{name}: {module}"
