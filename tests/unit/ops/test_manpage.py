"""lvsd(8) and lvsadm(8): generated from the option definitions, current, complete, installed."""

from __future__ import annotations

import argparse
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from director.cli import build_parser
from director.ops import lvsadm
from director.ops.manpage import lvsadm_options, lvsadm_page, lvsd_page

ROOT = Path(__file__).resolve().parents[3]
MAN = ROOT / "man"


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def _roff(text: str) -> str:
    return text.replace("-", "\\-")


def test_the_pages_in_man_are_what_the_definitions_give() -> None:
    assert (MAN / "lvsd.8").read_text() == lvsd_page(build_parser()), "run make man"
    assert (MAN / "lvsadm.8").read_text() == lvsadm_page(), "run make man"


def test_lvsd_page_names_every_command_and_option() -> None:
    page = (MAN / "lvsd.8").read_text()
    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 5
    for parser in parsers:
        name = " ".join(parser.prog.split()[1:])
        if name:
            assert f".SS lvsd {_roff(name)}\n" in page, name
        for action in parser._actions:
            for flag in action.option_strings:
                assert f"\\fB{_roff(flag)}\\fR" in page, (parser.prog, flag)


def test_lvsadm_page_names_every_option_of_its_table() -> None:
    page = (MAN / "lvsadm.8").read_text()
    spellings = {f for flags, _, _ in lvsadm_options() for f in flags}
    assert {f"--{name}" for name in lvsadm._LONG} <= spellings
    letters = {k for k in lvsadm._LONG.values() if len(k) == 1}
    assert {f"-{k}" for k in letters} <= spellings
    assert set(lvsadm.OPTION_HELP) == set(lvsadm._LONG.values()) | {"socket"}
    for flag in spellings | {"--socket"}:
        assert f"\\fB{_roff(flag)}\\fR" in page, flag


def test_the_pages_are_installed_with_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    files = project["tool"]["setuptools"]["data-files"]["share/man/man8"]
    assert sorted(files) == ["man/lvsadm.8", "man/lvsd.8"]


@pytest.mark.parametrize("page", ["lvsd.8", "lvsadm.8"])
def test_man_formats_the_page_without_a_warning(page: str) -> None:
    try:
        done = subprocess.run(
            ["man", "--warnings", "-l", str(MAN / page)],
            capture_output=True,
            text=True,
            timeout=30,
            env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"},
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("man is not installed")
    assert done.returncode == 0, done.stderr
    assert not done.stderr.strip(), done.stderr
    assert page.split(".")[0].upper() in done.stdout
