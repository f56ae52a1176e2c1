"""``lvsd agent``: a real agent process on loopback, answering as nanny's agent-check reads it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from director.tools.agent import capacity_line

START_BOUND_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def answer(port: int) -> str:
    """One agent-check: connect, read the line, as nanny does; waits (bounded) for the
    agent to listen."""
    deadline = time.monotonic() + START_BOUND_S
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                data = b""
                while chunk := s.recv(64):
                    data += chunk
                return data.decode()
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, f"no agent on port {port}"
            time.sleep(0.05)


def start(*args: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    argv = [sys.executable, "-m", "director", "agent", "--listen", "127.0.0.1"]
    proc = subprocess.Popen([*argv, "--port", str(port), *args], stderr=subprocess.PIPE, text=True)
    return proc, port


@pytest.fixture
def agents() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
            proc.communicate(timeout=30)


def test_the_default_answer_is_the_spare_capacity(agents: list[subprocess.Popen[str]]) -> None:
    before = os.getloadavg()[0]
    proc, port = start()
    agents.append(proc)
    line = answer(port)
    after = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    # NN% from the one-minute load average, read by the agent between our two readings.
    low, high = sorted(int(capacity_line(x, cpus)[:-1]) for x in (before, after))
    assert line.endswith("%\n"), line
    assert low <= int(line[:-2]) <= high, (line, before, after)


def test_capacity_is_a_share_between_1_and_100() -> None:
    assert capacity_line(0.0, 4) == "100%"
    assert capacity_line(1.0, 4) == "75%"
    assert capacity_line(3.98, 4) == "1%"  # never 0%: that would drain the server
    assert capacity_line(9.0, 4) == "1%"
    assert capacity_line(0.5, 0) == "50%"  # no CPU count: counted as one


def test_the_commands_first_line_then_kept_when_it_fails(
    agents: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    reply = tmp_path / "reply"
    reply.write_text("drain\nignored second line\n")
    proc, port = start("--interval", "0.1", "--command", f"cat {reply}")
    agents.append(proc)
    assert answer(port) == "drain\n"
    reply.write_text("42%\n")
    deadline = time.monotonic() + START_BOUND_S
    while (line := answer(port)) != "42%\n":
        assert time.monotonic() < deadline, line
        time.sleep(0.05)
    reply.unlink()  # cat now fails: the last good answer stays
    deadline = time.monotonic() + START_BOUND_S
    while "failed; keeping '42%'" not in (proc.stderr.readline() if proc.stderr else ""):
        assert time.monotonic() < deadline
    assert answer(port) == "42%\n"
