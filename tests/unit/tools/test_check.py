"""``lvsd check`` refuses exactly what ``lvsd run`` refuses, on every example and fixture.

``run`` is stopped where the host comes in: its Director is replaced by one that does
what the real one does before it looks at the host (build the services on a small
connection table, work out the plumbing) and then raises, so a file ``run`` accepts shows
as that exception and a refused one as exit status 1 with its message. Addresses of this
host, the heartbeat key file and the TUN device are ``run``'s alone.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from director import logsetup
from director.config import DirectorConfig
from director.daemon import run
from director.daemon.director import build_ipvs, plumbing_spec
from director.dataplane import fastpath
from director.tools import check

ROOT = Path(__file__).resolve().parents[3]
FILES = sorted((ROOT / "examples").glob("*.cf")) + sorted(
    (ROOT / "tests" / "vectors" / "lvs_cf").glob("*.cf")
)


class Accepted(Exception):
    """``lvsd run`` went past its validation with this configuration."""

    def __init__(self, cfg: DirectorConfig) -> None:
        super().__init__()
        self.cfg = cfg


class _NoDirector:
    def __init__(self, cfg: DirectorConfig, **_: object) -> None:
        build_ipvs(cfg, fastpath.ConnTable(1024))
        plumbing_spec(cfg)
        raise Accepted(cfg)


def run_verdict(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str | None:
    """None when ``lvsd run`` accepts ``path``, else what it printed."""
    monkeypatch.setattr(run, "Director", _NoDirector)
    monkeypatch.setattr(logsetup, "setup", lambda *a, **k: None)
    try:
        rc = run.run_daemon(argparse.Namespace(config=str(path), tun="lvs0", verbose=False))
    except Accepted:
        return None
    assert rc == 1
    return capsys.readouterr().err


def check_verdict(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str | None, str]:
    rc = check.run_check(argparse.Namespace(config=str(path)))
    out = capsys.readouterr()
    return (None if rc == 0 else out.err), out.err


def test_there_are_files_of_both_outcomes() -> None:
    names = {p.name for p in FILES}
    assert {"thesis-lvs.cf", "host-nmask.cf", "direct-routing.cf"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_check_and_run_refuse_the_same_files_with_the_same_message(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    checked, _ = check_verdict(path, capsys)
    ran = run_verdict(path, monkeypatch, capsys)
    assert checked == ran
    refused = {"failover-without-primary.cf"}
    assert (checked is not None) == (path.name in refused), checked


@pytest.mark.parametrize("name", ["direct-routing.cf", "no-virtual.cf"])
def test_direct_routing_and_an_empty_director_are_served(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    checked, _ = check_verdict(ROOT / "tests" / "vectors" / "lvs_cf" / name, capsys)
    assert checked is None


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("host-nmask.cf", ["30: address: real server '10.11.12.21'", "35: address"]),
        ("repeated-keywords.cf", ["(lines 5 and 7)", "(lines 4 and 8)"]),
        ("no-heartbeat-times.cf", ["5: deadtime: deadtime (10.0) must be greater than"]),
    ],
)
def test_piranha_accepted_forms_are_warnings(
    name: str,
    fragments: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = ROOT / "tests" / "vectors" / "lvs_cf" / name
    checked, err = check_verdict(path, capsys)
    assert checked is None
    lines = err.splitlines()
    assert len(lines) == len(fragments)
    for line, fragment in zip(lines, fragments, strict=True):
        assert line.startswith(f"lvsd: warning: {path}:"), line
        assert fragment in line
    with caplog.at_level(logging.WARNING, logger="director.daemon.run"):
        assert run_verdict(path, monkeypatch, capsys) is None
    assert [r.getMessage() for r in caplog.records] == [
        line.removeprefix("lvsd: warning: ") for line in lines
    ]
