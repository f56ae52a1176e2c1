"""The lab's HTTP server on loopback: names, deterministic bytes, counters, errors."""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
from collections.abc import Iterator

import pytest

from lab.server import BLOCK, CHUNK, LabServer, expected_digest, pattern


@pytest.fixture
def server() -> Iterator[LabServer]:
    srv = LabServer(("127.0.0.1", 0), "real7")
    thread = threading.Thread(
        target=srv.serve_forever, kwargs={"poll_interval": 0.01}, name="labserver"
    )
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        thread.join()
        srv.server_close()


@pytest.fixture
def conn(server: LabServer) -> Iterator[http.client.HTTPConnection]:
    c = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        yield c
    finally:
        c.close()


def fetch(conn: http.client.HTTPConnection, path: str, method: str = "GET") -> tuple[int, bytes]:
    conn.request(method, path)
    resp = conn.getresponse()
    assert resp.getheader("X-Real") == "real7"
    return resp.status, resp.read()


@pytest.mark.parametrize("n", [0, 1, 31, 32, len(BLOCK) - 1, len(BLOCK), len(CHUNK) + 5])
def test_expected_digest_is_the_digest_of_the_pattern(n: int) -> None:
    assert expected_digest(n) == hashlib.sha256(pattern(0, n)).hexdigest()


def test_pattern_repeats_the_block() -> None:
    assert pattern(0, 32) == hashlib.sha256((0).to_bytes(4, "big")).digest()
    assert pattern(len(BLOCK) * 3 + 32, 32) == hashlib.sha256((1).to_bytes(4, "big")).digest()
    assert pattern(len(BLOCK) - 2, 4) == BLOCK[-2:] + BLOCK[:2]
    assert BLOCK * (len(CHUNK) // len(BLOCK)) == CHUNK


def test_expected_digest_refuses_negative() -> None:
    with pytest.raises(ValueError, match="got -1"):
        expected_digest(-1)


def test_root_names_the_real(conn: http.client.HTTPConnection) -> None:
    assert fetch(conn, "/") == (200, b"real7\n")


@pytest.mark.parametrize("n", [0, 100, len(CHUNK) * 2 + 3])
def test_bytes_body_matches_expected_digest(conn: http.client.HTTPConnection, n: int) -> None:
    status, body = fetch(conn, f"/bytes/{n}")
    assert status == 200
    assert len(body) == n
    assert hashlib.sha256(body).hexdigest() == expected_digest(n)


@pytest.mark.parametrize("path", ["/bytes/-1", "/bytes/x", f"/bytes/{(1 << 40) + 1}"])
def test_bytes_refuses_bad_counts(conn: http.client.HTTPConnection, path: str) -> None:
    status, body = fetch(conn, path)
    assert status == 400
    assert b"N must be an integer" in body


def test_unknown_path_is_404_and_head_has_no_body(conn: http.client.HTTPConnection) -> None:
    assert fetch(conn, "/nope")[0] == 404
    conn.request("HEAD", "/bytes/1000")
    resp = conn.getresponse()
    assert (resp.status, resp.getheader("Content-Length"), resp.read()) == (200, "1000", b"")
    assert fetch(conn, "/") == (200, b"real7\n"), "the connection survives a HEAD"


def test_stats_count_requests_but_not_themselves(conn: http.client.HTTPConnection) -> None:
    for path in ("/", "/", "/bytes/10", "/missing"):
        fetch(conn, path)
    _, body = fetch(conn, "/stats")
    _, body = fetch(conn, "/stats")
    assert json.loads(body) == {
        "name": "real7",
        "requests": 4,
        "paths": {"/": 2, "/bytes": 1, "other": 1},
        "bytes_sent": 2 * len(b"real7\n") + 10,
    }
