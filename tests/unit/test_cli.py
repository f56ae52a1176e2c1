"""The ``lvsd`` command line: sub-commands, exit statuses and the errors users see.

Everything here is refused before any namespace, TUN or lab is touched, so it runs
without root; the commands' real work is tested in tests/netns.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from director import cli
from director.config import format_config, load_config
from director.tools.demo import THESIS_CF

BAD_CF = "virtual web {\n    address = 10.0.1.5\n    port = 80\n    scheduler = wlcx\n}\n"


def lvsd(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_help_lists_every_sub_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "director", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    for command in ("check", "lab", "run", "demo", "simulate", "agent", "save"):
        assert f"    {command} " in done.stdout, command


def test_an_unknown_or_missing_sub_command_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["nosuch"], []):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
        assert "usage: lvsd" in capsys.readouterr().err


def test_check_prints_the_normalized_file_or_names_the_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, err = lvsd(capsys, "check", "-c", str(THESIS_CF))
    assert (status, err) == (0, "")
    assert out == format_config(load_config(THESIS_CF))
    bad = tmp_path / "bad.cf"
    bad.write_text(BAD_CF)
    status, out, err = lvsd(capsys, "check", "-c", str(bad))
    assert (status, out) == (1, "")
    assert err.startswith(f"lvsd: {bad}:4: ")
    assert "unknown scheduler 'wlcx'" in err


@pytest.mark.parametrize("command", ["run", "demo", "save"])
def test_a_bad_file_stops_the_command_before_it_touches_anything(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    bad = tmp_path / "bad.cf"
    bad.write_text(BAD_CF)
    status, _, err = lvsd(capsys, command, "-c", str(bad))
    assert status == 1
    assert f"{bad}:4: " in err
    assert "wlcx" in err
    missing = tmp_path / "missing.cf"
    status, _, err = lvsd(capsys, command, "-c", str(missing))
    assert status == 1
    assert str(missing) in err


def test_lab_commands_refuse_bad_names_and_empty_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, _, err = lvsd(capsys, "lab", "status", "--name", "Not A Name")
    assert status == 1
    assert err.startswith("lvsd: ")
    assert "Not A Name" in err
    status, out, _ = lvsd(capsys, "lab", "status", "--name", "nosuchlab")
    assert (status, out) == (1, "lab nosuchlab: not up\n")
    status, _, err = lvsd(capsys, "lab", "exec", "--name", "nosuchlab", "client", "--")
    assert status == 2
    assert "no command given" in err
    status, _, err = lvsd(capsys, "lab", "exec", "--name", "nosuchlab", "client", "--", "true")
    assert status == 1
    assert "no node 'client'" in err
