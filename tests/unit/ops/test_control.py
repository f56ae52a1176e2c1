"""The control socket under hostile clients: every malformed request gets an error answer,
idle and surplus clients are hung up on, and a live daemon's socket is never taken over."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from director.errors import DirectorError
from director.ops.client import MAX_REQUEST
from director.ops.control import ControlServer


class Target:
    def snapshot(self) -> dict[str, object]:
        return {"services": []}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ControlServer]:
    srv = ControlServer(tmp_path / "lvsd.sock", Target(), max_clients=3, idle_timeout=0.5)
    await srv.start()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(srv.serve())
        yield srv
        task.cancel()


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> object:
    writer.write(line)
    await writer.drain()
    async with asyncio.timeout(10):
        return json.loads(await reader.readline())


async def test_deep_nesting_gets_an_error_and_the_connection_goes_on(
    server: ControlServer,
) -> None:
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    deep = b"[" * 20_000 + b"]" * 20_000 + b"\n"
    answer = await ask(reader, writer, deep)
    assert answer == {"ok": False, "error": "bad request: nested too deep"}
    status = await ask(reader, writer, b'{"cmd": "status"}\n')
    assert status == {"ok": True, "result": {"services": []}}
    writer.close()


async def test_a_line_over_the_limit_gets_an_error_and_the_next_is_answered(
    server: ControlServer,
) -> None:
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    long = b'{"cmd": "status", "pad": "' + b"x" * (3 * MAX_REQUEST) + b'"}\n'
    answer = await ask(reader, writer, long + b'{"cmd": "status"}\n')
    assert answer == {"ok": False, "error": f"bad request: longer than {MAX_REQUEST} bytes"}
    async with asyncio.timeout(10):
        second = json.loads(await reader.readline())
    assert second == {"ok": True, "result": {"services": []}}
    writer.close()


async def test_an_idle_client_is_hung_up_on(server: ControlServer) -> None:
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    async with asyncio.timeout(10):
        assert await reader.read() == b""  # closed by the server, without a word
    writer.close()


async def test_a_client_beyond_the_cap_is_told_so(server: ControlServer) -> None:
    held = [await asyncio.open_unix_connection(str(server.path)) for _ in range(3)]
    # The three are being served once each has had an answer.
    for reader, writer in held:
        assert await ask(reader, writer, b'{"cmd": "status"}\n') is not None
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    async with asyncio.timeout(10):
        answer = json.loads(await reader.readline())
    assert answer == {"ok": False, "error": "too many control clients; try again"}
    assert server.refused == 1
    for _, w in [*held, (reader, writer)]:
        w.close()


async def test_a_live_daemons_socket_is_refused_and_left_alone(
    server: ControlServer, tmp_path: Path
) -> None:
    second = ControlServer(server.path, Target())
    with pytest.raises(DirectorError) as e:
        await second.start()
    assert str(e.value) == (
        f"control_socket {server.path}: another lvsd is serving it; refusing to start"
    )
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    assert await ask(reader, writer, b'{"cmd": "status"}\n') == {
        "ok": True,
        "result": {"services": []},
    }
    writer.close()


async def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "lvsd.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))  # bound, never listening: what a killed daemon leaves
    srv = ControlServer(path, Target())
    await srv.start()
    srv.close()


async def test_a_socket_under_a_file_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    srv = ControlServer(tmp_path / "file" / "lvsd.sock", Target())
    with pytest.raises(DirectorError) as e:
        await srv.start()
    message = str(e.value)
    assert message.startswith(f"control_socket {tmp_path}/file/lvsd.sock: cannot listen: ")
    assert "\n" not in message
