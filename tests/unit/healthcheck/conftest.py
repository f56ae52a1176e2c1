"""Fixtures for the probe tests: loopback servers in their own processes, a TLS certificate."""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

PEER_SERVER = Path(__file__).with_name("peer_server.py")
LINE_LIMIT_S = 30.0  # bound on waiting for a line from a peer (a hung peer fails the test)
CLOSE_LIMIT_S = 10.0  # bound on waiting for the probes' connections to finish closing


@dataclass(frozen=True)
class Peer:
    """A running ``peer_server.py``: its port on 127.0.0.1 and the process."""

    port: int
    proc: subprocess.Popen[bytes]

    def received(self) -> bytes:
        """The next request the server read (it prints each one before answering)."""
        return bytes.fromhex(next_line(self.proc, "no request").decode())


class StartPeer(Protocol):
    def __call__(self, *argv: str) -> Peer: ...


def next_line(proc: subprocess.Popen[bytes], missing: str) -> bytes:
    """The peer's next stdout line; fails the test if it exits or stays mute."""
    assert proc.stdout is not None  # unbuffered: the selector sees every byte not yet read
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(LINE_LIMIT_S):
            pytest.fail(f"{proc.args!r}: {missing} within {LINE_LIMIT_S}s")
    line = proc.stdout.readline()
    if not line.endswith(b"\n"):
        pytest.fail(f"{proc.args!r}: {missing}, exited with {proc.wait()}")
    return line.rstrip(b"\n")


@pytest.fixture
def peer_server() -> Iterator[StartPeer]:
    """Start ``peer_server.py *argv`` processes; each is killed by PID and reaped at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> Peer:
        proc = subprocess.Popen(
            [sys.executable, str(PEER_SERVER), *argv],
            stdin=subprocess.PIPE,  # the server exits when this pipe closes, even if we die
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        procs.append(proc)
        return Peer(int(next_line(proc, "no port")), proc)

    try:
        yield start
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()


@pytest.fixture
async def connections_closed(
    monkeypatch: pytest.MonkeyPatch, peer_server: StartPeer
) -> AsyncIterator[None]:
    """Every connection a probe opens has finished closing before the test's loop ends.

    A probe closes its stream without waiting: TLS then still exchanges close_notify with
    the server, which runs in another process. A daemon's loop lives on and completes it;
    a test's loop closes at once, so this waits (servers still running) to leave no socket
    behind.
    """
    writers: list[asyncio.StreamWriter] = []
    open_connection = asyncio.open_connection

    async def recording(
        *args: object, **kwargs: object
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await open_connection(*args, **kwargs)  # type: ignore[arg-type]
        writers.append(writer)
        return reader, writer

    monkeypatch.setattr(asyncio, "open_connection", recording)
    yield
    async with asyncio.timeout(CLOSE_LIMIT_S):
        for writer in writers:
            with contextlib.suppress(OSError):  # a reset or a TLS error ends it too
                await writer.wait_closed()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key (CN real2.lab), made by the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed (apt-get install openssl)")
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=real2.lab"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key
