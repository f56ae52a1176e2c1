"""The systemd unit passes systemd-analyze verify; sd_notify keep-alives reach NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from director.ops import watchdog
from director.ops.notify import Notifier

UNIT = Path(__file__).resolve().parents[3] / "systemd" / "lvsd.service"


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is installed by ./bootstrap (package systemd)"
    lvsd = Path(sys.executable).parent / "lvsd"
    unit = tmp_path / "lvsd.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/lvsd", str(lvsd)))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_unit_is_notify_with_only_the_network_capabilities() -> None:
    lines = set(UNIT.read_text().splitlines())
    assert "Type=notify" in lines
    assert "ExecReload=/bin/kill -HUP $MAINPID" in lines
    assert "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW" in lines
    assert "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW" in lines
    assert any(line.startswith("WatchdogSec=") for line in lines)


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], interval: float | None) -> None:
    assert watchdog.interval_from_environment(env) == interval


async def test_keep_alive_sends_watchdog_to_the_notify_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(watchdog.keep_alive(Notifier(path), 3600.0))
            first = await loop.sock_recv(sock, 4096)
            task.cancel()
    assert first == b"WATCHDOG=1"


def test_unit_sets_a_descriptor_limit_the_daemon_raises_its_soft_limit_to() -> None:
    lines = UNIT.read_text().splitlines()
    limit = [line for line in lines if line.startswith("LimitNOFILE=")]
    assert limit == ["LimitNOFILE=65536"]
