"""The runner: misbehaving probes never delay the others; events reach the queue."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from healthcheck.events import Event, HealthChanged
from healthcheck.outcome import Outcome
from healthcheck.runner import PROBES, ProbeFn, Runner, read_load
from healthcheck.specs import LoadSpec, ProbeKind, ProbeSpec, ServiceKey, Target, TrackerSpec
from tests.unit.healthcheck.loopback import serving

KEY = ServiceKey(6, "10.0.1.5", 80)


def target(spec: ProbeSpec, interval: float = 0.05) -> Target:
    return Target(KEY, spec.host, spec.port, spec, TrackerSpec(timeout=1, reentry=0), interval)


async def test_hanging_program_and_trickling_server_do_not_delay_a_healthy_probe(
    tmp_path: Path,
) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while True:
                writer.write(b"2")
                await writer.drain()
                await asyncio.sleep(0.2)

    async def healthy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    hang = tmp_path / "hang.sh"
    hang.write_text("#!/bin/sh\nexec sleep 600\n")
    hang.chmod(0o755)
    async with serving(trickle) as slow_port, serving(healthy) as ok_port:
        await watch_three(hang, slow_port, ok_port)


async def watch_three(hang: Path, slow_port: int, ok_port: int) -> None:
    specs = [
        ProbeSpec(ProbeKind.PROGRAM, "127.0.0.1", 1, timeout=30, program=str(hang)),
        ProbeSpec(ProbeKind.SEND_EXPECT, "127.0.0.1", slow_port, timeout=30, expect="220 ready"),
        ProbeSpec(ProbeKind.TCP, "127.0.0.1", ok_port, timeout=5),
    ]
    done: Counter[ProbeKind] = Counter()
    healthy_ran = asyncio.Event()

    def counting(fn: ProbeFn) -> ProbeFn:
        async def wrapped(spec: ProbeSpec) -> Outcome:
            out = await fn(spec)
            done[spec.kind] += 1
            if done[ProbeKind.TCP] >= 10:
                healthy_ran.set()
            return out

        return wrapped

    probes = {kind: counting(fn) for kind, fn in PROBES.items()}
    queue: asyncio.Queue[Event] = asyncio.Queue()
    runner = Runner([target(s) for s in specs], queue, probes=probes)
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(20):
            await healthy_ran.wait()
        # Ten healthy probes completed while the two bad ones are still in their first run.
        assert done[ProbeKind.PROGRAM] == 0
        assert done[ProbeKind.SEND_EXPECT] == 0
        assert runner.statistics().passed >= 10
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert queue.empty()  # all were healthy or undecided: nothing for the director


def free_port() -> int:
    """A loopback TCP port nobody listens on (the kernel's pick, released again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_a_refused_server_is_reported_down_then_up() -> None:
    port = free_port()
    closed = ProbeSpec(ProbeKind.TCP, "127.0.0.1", port, timeout=1)
    queue: asyncio.Queue[Event] = asyncio.Queue()
    runner = Runner([target(closed)], queue)
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(10):
            down = await queue.get()
        [state] = runner.states()
        assert (state.health, state.in_service, state.weight) == ("down", False, 0)

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(accept, "127.0.0.1", port)
        async with server, asyncio.timeout(10):
            up = await queue.get()
            [state] = runner.states()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert isinstance(down, HealthChanged)
    assert (down.up, down.addr, down.port) == (False, "127.0.0.1", port)
    assert down.reason.startswith("connection refused")
    assert isinstance(up, HealthChanged)
    assert (up.up, up.addr, up.port) == (True, "127.0.0.1", port)
    assert (state.health, state.in_service) == ("up", True)


async def test_a_load_reading_that_fails_says_why(tmp_path: Path) -> None:
    def script(name: str, body: str) -> str:
        path = tmp_path / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(0o755)
        return str(path)

    ok = script("ok.sh", "echo ' 10:00:00 up 1 day,  load average: 1.50, 0.20, 0.10'")
    assert await read_load(LoadSpec((ok,), timeout=5)) == 1.5
    refused = script("refused.sh", "echo 'Permission denied (publickey).' >&2; exit 255")
    assert await read_load(LoadSpec((refused,), timeout=5)) == "exit status 255"
    garbled = script("garbled.sh", "echo 'Welcome!'")
    assert await read_load(LoadSpec((garbled,), timeout=5)) == (
        "no load average in its output 'Welcome!'"
    )
    slow = script("slow.sh", "exec sleep 600")
    assert await read_load(LoadSpec((slow,), timeout=0.2)) == "no answer within 0.2 s"
    missing = str(tmp_path / "absent")
    assert await read_load(LoadSpec((missing,), timeout=5)) == (
        "cannot run it: No such file or directory"
    )


async def test_failing_load_readings_are_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failing = tmp_path / "ssh"
    failing.write_text("#!/bin/sh\nexit 255\n")
    failing.chmod(0o755)
    spec = ProbeSpec(ProbeKind.PROGRAM, "127.0.0.1", 1, timeout=5, program="/bin/true")
    t = Target(
        KEY,
        "127.0.0.1",
        1,
        spec,
        TrackerSpec(timeout=1, reentry=0),
        60.0,
        LoadSpec((str(failing), "127.0.0.1", "uptime"), interval=0.01, timeout=5),
    )
    queue: asyncio.Queue[Event] = asyncio.Queue()
    runner = Runner([t], queue)
    third = asyncio.Event()

    class Third(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "(4 in a row)" in record.getMessage():
                third.set()

    handler = Third()
    logging.getLogger("healthcheck.runner").addHandler(handler)
    try:
        with caplog.at_level(logging.WARNING, logger="healthcheck.runner"):
            task = asyncio.create_task(runner.run())
            try:
                async with asyncio.timeout(30):
                    await third.wait()
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        logging.getLogger("healthcheck.runner").removeHandler(handler)
    assert runner.statistics().load_errors >= 4
    warnings = [r.getMessage() for r in caplog.records if "no load average" in r.getMessage()]
    # 1, 2, 4 failures in a row: rate-limited, never silent.
    assert warnings[:3] == [
        f"TCP 10.0.1.5:80 -> 127.0.0.1:1: no load average from "
        f"'{failing} 127.0.0.1 uptime': exit status 255 ({n} in a row)"
        for n in (1, 2, 4)
    ]


# In a child process (its own descriptor limit): descriptors exhausted, a probe of a
# closed port fails with EMFILE, which judges nothing; freed, the same probe judges.
EXHAUSTED = """
import asyncio, resource, socket, sys
from healthcheck.outcome import Outcome
from healthcheck.runner import Runner
from healthcheck.specs import ProbeKind, ProbeSpec, ServiceKey, Target, TrackerSpec

resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
spec = ProbeSpec(ProbeKind.TCP, "127.0.0.1", 1, timeout=1)
target = Target(ServiceKey(6, "10.0.1.5", 80), "127.0.0.1", 1, spec,
                TrackerSpec(timeout=1, reentry=0), 0.01)

async def main() -> None:
    queue = asyncio.Queue()
    runner = Runner([target], queue)
    hog = []
    try:
        while True:
            hog.append(socket.socket())
    except OSError as e:
        print("exhausted", e.errno)
    task = asyncio.create_task(runner.run())
    for _ in range(1000):
        await asyncio.sleep(0.01)
        if runner.statistics().internal_errors >= 5:
            break
    stats = runner.statistics()
    print("internal", stats.internal_errors >= 5, "judged", stats.probes, "events", queue.qsize())
    for s in hog:
        s.close()
    event = await asyncio.wait_for(queue.get(), 10)
    print("after", event.up, event.reason)
    task.cancel()

asyncio.run(main())
"""


def test_a_probe_failing_for_the_directors_own_reasons_never_judges_the_server() -> None:
    done = subprocess.run(
        [sys.executable, "-c", EXHAUSTED], capture_output=True, text=True, timeout=60, check=False
    )
    lines = done.stdout.splitlines()
    assert lines == [
        f"exhausted {errno.EMFILE}",
        "internal True judged 0 events 0",
        "after False connection refused",
    ], done.stdout + done.stderr
    assert "short of resources: too many open files" in done.stderr


async def test_the_shared_limit_bounds_probes_running_at_once() -> None:
    running = peak = 0
    started = asyncio.Event()

    async def slow(spec: ProbeSpec) -> Outcome:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if peak >= 3:
            started.set()
        await asyncio.sleep(0.01)
        running -= 1
        return Outcome(True, "ok")

    limit = asyncio.Semaphore(3)
    queue: asyncio.Queue[Event] = asyncio.Queue()
    probes = {ProbeKind.TCP: slow}
    runners = [
        Runner(
            [target(ProbeSpec(ProbeKind.TCP, "127.0.0.1", port, timeout=1), 0.001)],
            queue,
            probes=probes,
            limit=limit,
        )
        for port in range(1000, 1010)
    ]
    async with asyncio.timeout(30), asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(r.run()) for r in runners]
        await started.wait()
        for _ in range(20):
            await asyncio.sleep(0.005)
        for t in tasks:
            t.cancel()
    assert peak == 3
