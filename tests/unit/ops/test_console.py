"""The console over HTTP on the metrics listener: the page, its state, its guarded actions.

A real service layer (``Admin`` over ``IPVS``) behind ``exporter.serve`` with the console's
route, spoken to over loopback with raw HTTP requests, as a browser or a forger would.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from director.config import HostPort, parse_config
from director.errors import ConfigError
from director.ops import console as console_mod
from director.ops import exporter
from director.ops.console import Console, assets, read_token
from tests.unit.ops.console_fakes import FakeDirector, FakePulse, director

TOKEN = b"0123456789abcdef-token"
# A scheme's URL, or a protocol-relative one in an attribute or a CSS url().
EXTERNAL = re.compile(
    rb"(?i)\b[a-z][a-z0-9+.-]*://|(?:src|href|action)\s*=\s*['\"]?//|url\(\s*['\"]?//"
)


class Server:
    """``exporter.serve`` with a console, on a free loopback port."""

    def __init__(self, d: FakeDirector, console: Console, port: int) -> None:
        self.director = d
        self.console = console
        self.port = port
        self.reloads = 0

    async def request(
        self, method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        if body:
            head += f"Content-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        response = await reader.read()
        writer.close()
        top, _, payload = response.partition(b"\r\n\r\n")
        lines = top.decode().split("\r\n")
        got = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        return int(lines[0].split()[1]), got, payload

    async def act(self, req: dict[str, Any], **headers: str) -> tuple[int, dict[str, Any]]:
        base = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{self.port}"}
        base["Sec-Fetch-Site"] = "same-origin"
        base["X-LVSD-Token"] = TOKEN.decode()
        merged = {k: v for k, v in {**base, **headers}.items() if v}
        status, _, body = await self.request(
            "POST", "/console/action", merged, json.dumps(req).encode()
        )
        answer: dict[str, Any] = json.loads(body)
        return status, answer


async def _serve(tmp_path: Path, token: bytes | None) -> AsyncIterator[Server]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = director(tmp_path)
    d.pulse = FakePulse()
    d = replace(
        d, cfg=replace(d.cfg, primary=IPv4Address("10.0.1.1"), backup=IPv4Address("10.0.1.2"))
    )
    server = Server(d, Console(d, d.admin.commands(), lambda: None, token), port)

    def reload() -> None:
        server.reloads += 1

    server.console._reload = reload
    task = asyncio.ensure_future(
        exporter.serve(d, HostPort(IPv4Address("127.0.0.1"), port), server.console.route)
    )
    for _ in range(200):  # the server binds in its first steps
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            break
        except ConnectionRefusedError:
            await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.fixture
async def readonly(tmp_path: Path) -> AsyncIterator[Server]:
    async for s in _serve(tmp_path, None):
        yield s


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Server]:
    async for s in _serve(tmp_path, TOKEN):
        yield s


def weights(server: Server) -> dict[str, int]:
    listing: Any = server.director.admin.listing()
    return {d["addr"]: d["weight"] for s in listing["services"] for d in s["dests"]}


def test_the_assets_are_package_data_and_name_no_outside_address() -> None:
    files = assets()
    assert set(files) == {"console.html", "console.css", "console.js"}
    for name, body in files.items():
        assert not EXTERNAL.search(body), (name, EXTERNAL.search(body))
    assert sum(len(b) for b in files.values()) < 32 * 1024, "small assets"
    html = files["console.html"].decode()
    assert re.findall(r'(?:src|href)="([^"]+)"', html) == [
        "/console.css",
        "/console.js",
        "#services",
        "/metrics",
    ]


def test_the_pattern_sees_an_outside_address() -> None:
    for bad in (b'<script src="https://cdn.example/x.js">', b"url(//cdn.example/f)", b"ws://x"):
        assert EXTERNAL.search(bad), bad


async def test_page_assets_and_state_are_served_with_a_strict_policy(readonly: Server) -> None:
    status, headers, body = await readonly.request("GET", "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert body == assets()["console.html"]
    for path in ("/console.css", "/console.js"):
        status, _, body = await readonly.request("GET", path)
        assert status == 200
        assert body
    status, _, body = await readonly.request("GET", "/console/state")
    assert status == 200
    assert not EXTERNAL.search(body)
    state = json.loads(body)
    [svc] = state["services"]
    assert svc["name"] == "TCP 10.0.1.5:80"
    assert svc["scheduler"] == "wlc"
    dests = {d["addr"]: d for d in svc["dests"]}
    assert dests["192.168.1.10:80"]["weight"] == 2000
    assert dests["192.168.1.10:80"]["health"] == "up"
    assert dests["192.168.1.11:8080"]["health"] == "down"
    assert dests["192.168.1.11:8080"]["reason"] == "refused"
    assert state["actions"] is False
    assert state["failover"]["role"] == "BACKUP"
    assert state["failover"]["peer"] == "10.0.1.1"
    assert state["failover"]["heartbeats_lost"] == 2
    assert state["failover"]["sync_lag_ms"] == 250
    assert state["drops"]["truncated"] == 2
    assert state["max_connections"] == 4096
    # /metrics is still the exporter's.
    status, headers, body = await readonly.request("GET", "/metrics")
    assert status == 200
    assert b"node_ipvs_backend_weight" in body


async def test_sparklines_come_from_samples(readonly: Server) -> None:
    readonly.console.sample()
    readonly.console.sample()
    state: Any = readonly.console.state()
    [svc] = state["services"]
    assert len(svc["history"]) == 2
    _, active, inactive, _, _ = svc["history"][-1]
    assert active + inactive == 1  # the one connection of the table


async def test_read_only_refuses_every_action(readonly: Server) -> None:
    status, answer = await readonly.act(
        {"action": "drain", "service": "TCP 10.0.1.5:80", "real": "192.168.1.10:80"}
    )
    assert status == 403
    assert "actions are off" in answer["message"]
    assert weights(readonly)["192.168.1.10:80"] == 2000


@pytest.mark.parametrize(
    ("headers", "status", "why"),
    [
        ({"X-LVSD-Token": ""}, 401, "no valid token"),
        ({"X-LVSD-Token": "wrong-token-0123456789"}, 401, "no valid token"),
        ({"Sec-Fetch-Site": "cross-site"}, 403, "cross-site"),
        ({"Sec-Fetch-Site": "same-site"}, 403, "cross-site"),
        ({"Origin": "http://evil.example"}, 403, "cross-origin"),
        ({"Origin": "null"}, 403, "cross-origin"),
        ({"Content-Type": "text/plain"}, 415, "JSON request"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "JSON request"),
    ],
)
async def test_a_forged_or_unauthenticated_action_is_refused(
    guarded: Server, headers: dict[str, str], status: int, why: str
) -> None:
    req = {"action": "drain", "service": "TCP 10.0.1.5:80", "real": "192.168.1.10:80"}
    got, answer = await guarded.act(req, **headers)
    assert got == status, answer
    assert why in answer["message"]
    assert weights(guarded)["192.168.1.10:80"] == 2000


async def test_a_get_is_never_an_action(guarded: Server) -> None:
    status, _, _ = await guarded.request("GET", "/console/action")
    assert status == 405
    assert weights(guarded)["192.168.1.10:80"] == 2000


async def test_the_actions_go_through_the_control_commands(
    guarded: Server, caplog: pytest.LogCaptureFixture
) -> None:
    svc = {"service": "TCP 10.0.1.5:80"}
    real = {**svc, "real": "192.168.1.10:80"}
    caplog.set_level("INFO", logger="director.ops.console")
    assert (await guarded.act({**real, "action": "drain"}))[0] == 200
    assert weights(guarded)["192.168.1.10:80"] == 0
    assert "drained 192.168.1.10:80 of TCP 10.0.1.5:80 (weight 0) from 127.0.0.1:" in caplog.text
    assert (await guarded.act({**real, "action": "weight", "weight": 7}))[0] == 200
    assert weights(guarded)["192.168.1.10:80"] == 7
    assert (await guarded.act({**real, "action": "out"}))[0] == 200
    assert "192.168.1.10:80" not in weights(guarded)
    assert (await guarded.act({**real, "action": "back", "weight": 5}))[0] == 200
    assert weights(guarded)["192.168.1.10:80"] == 5
    assert (await guarded.act({**svc, "action": "zero"}))[0] == 200
    assert (await guarded.act({"action": "zero"}))[0] == 200
    assert (await guarded.act({"action": "reload"}))[0] == 200
    assert guarded.reloads == 1
    # What the kernel would refuse, the console refuses with the same words.
    status, answer = await guarded.act({**real, "action": "weight", "weight": 70000})
    assert status == 409
    assert "weight" in answer["message"]
    status, answer = await guarded.act({**svc, "real": "192.168.1.99:80", "action": "drain"})
    assert status == 409
    status, answer = await guarded.act({"action": "format-disk"})
    assert status == 400
    state = json.loads((await guarded.request("GET", "/console/state"))[2])
    assert state["actions"] is True
    assert state["log"][0]["what"] == "reloaded lvs.cf" or "zeroed" in state["log"][0]["what"]


def test_the_token_file(tmp_path: Path) -> None:
    assert read_token(None) is None
    path = tmp_path / "token"
    path.write_bytes(TOKEN + b"\n")
    assert read_token(path) == TOKEN
    path.write_bytes(b"short\n")
    with pytest.raises(ConfigError, match="16 bytes or more"):
        read_token(path)
    with pytest.raises(ConfigError, match="No such file"):
        read_token(tmp_path / "missing")


def test_lvs_cf_names_the_token_file() -> None:
    cfg = parse_config("console_token_file = /etc/lvsd/console.token\n", "lvs.cf")
    assert cfg.console_token_file == Path("/etc/lvsd/console.token")
    assert parse_config("", "lvs.cf").console_token_file is None


def test_the_cache_bounds_state_builds_per_second(tmp_path: Path) -> None:
    d = director(tmp_path)
    console = Console(d, d.admin.commands(), lambda: None)
    builds = 0
    real_state = console.state

    def counting() -> dict[str, object]:
        nonlocal builds
        builds += 1
        return real_state()

    console.state = counting  # type: ignore[method-assign]
    bodies = {console._state_body() for _ in range(50)}
    assert builds == 1
    assert len(bodies) == 1
    assert console_mod.STATE_CACHE_S <= 1.0
