"""Deleting a real server cuts its connections, as in the kernel; adding it back resumes them.

    client 10.0.1.100 --br-pub-- eth0 10.0.1.1 [director: lvsd run, control socket]
                                  (VIP 10.0.1.5)                                  eth1
                                                                                   |
                                          br-priv -- real1 .10, real2 .11, real3 .12

The director runs the thesis's lvs.cf (no heartbeat); lvsadm adds a service of its own,
TCP 10.0.1.5:8080 -> real1:80, which nanny does not manage. A keep-alive HTTP connection
through it answers; after ``lvsadm -d`` of real1 the next request on that connection gets
no answer and the director counts DROP_DEST_UNAVAILABLE (ip_vs_in: the destination is no
longer AVAILABLE); after ``lvsadm -a`` of real1 (revived from the trash) the client's
retransmission goes through and the same connection works again. Both fast paths.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from director.config import parse_config
from director.tools.demo import THESIS_CF, LabDirector
from lab.cluster import Lab, LabSpec
from tests.conftest import require_root
from tests.netns.conftest import PAIRED, DataPath, data_paths, unique_lab_name

pytestmark = pytest.mark.netns

VIP = "10.0.1.5"
PORT = 8080
REAL = "192.168.1.10:80"
POLL_S = 0.1
ANSWER_TIMEOUT_S = 20.0
# How long the test listens for an answer that must not come (the client's TCP keeps
# retransmitting meanwhile, and every copy must be dropped as well).
SILENCE_S = 1.5


class Removal:
    def __init__(self, lab: Lab, director: LabDirector) -> None:
        self.lab = lab
        self.director = director

    def lvsadm(self, *args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "director.ops.lvsadm",
             "--socket", str(self.director.socket_path), *args],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    def dropped(self) -> int:
        return int(self.director.status()["drops"]["DROP_DEST_UNAVAILABLE"])


@pytest.fixture(scope="module", params=data_paths(PAIRED))
def removal(request: pytest.FixtureRequest) -> Iterator[Removal]:
    require_root()
    lab = Lab(LabSpec(), unique_lab_name())
    try:
        lab.up(reals=3)
        cfg = parse_config("heartbeat = 0\n" + THESIS_CF.read_text(), "thesis-lvs.cf")
        path: DataPath = request.param
        director = LabDirector(lab, path.configure(cfg), env=path.env).start()
        try:
            path.check(director.status())
            yield Removal(lab, director)
        finally:
            assert director.stop() == 0, director.log()
    finally:
        lab.down()


def _request(sock: socket.socket) -> None:
    sock.sendall(f"GET / HTTP/1.1\r\nHost: {VIP}\r\n\r\n".encode())


def _response(sock: socket.socket, timeout: float) -> bytes:
    """One whole HTTP response (headers and Content-Length body) from ``sock``."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def _wait_for_drop(r: Removal, above: int) -> None:
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while r.dropped() <= above:
        if time.monotonic() > deadline:
            pytest.fail(f"no DROP_DEST_UNAVAILABLE within {ANSWER_TIMEOUT_S}s")
        time.sleep(POLL_S)


def test_deleted_real_drops_its_connection_until_it_is_added_back(removal: Removal) -> None:
    r = removal
    r.lvsadm("-A", "-t", f"{VIP}:{PORT}", "-s", "rr")
    r.lvsadm("-a", "-t", f"{VIP}:{PORT}", "-r", REAL, "-m", "-w", "1")
    try:
        with r.lab.socket("client") as sock:
            sock.settimeout(ANSWER_TIMEOUT_S)
            sock.connect((VIP, PORT))
            _request(sock)
            first = _response(sock, ANSWER_TIMEOUT_S)
            assert first.startswith(b"HTTP/1.1 200")
            assert b"X-Real: real1" in first

            before = r.dropped()
            r.lvsadm("-d", "-t", f"{VIP}:{PORT}", "-r", REAL)
            _request(sock)
            _wait_for_drop(r, before)
            with pytest.raises(TimeoutError):
                _response(sock, SILENCE_S)

            # Revived from the trash: the retransmitted request is forwarded again.
            r.lvsadm("-a", "-t", f"{VIP}:{PORT}", "-r", REAL, "-m", "-w", "1")
            second = _response(sock, ANSWER_TIMEOUT_S)
            assert second.startswith(b"HTTP/1.1 200")
            assert b"X-Real: real1" in second
            _request(sock)
            assert b"X-Real: real1" in _response(sock, ANSWER_TIMEOUT_S)
    finally:
        r.lvsadm("-D", "-t", f"{VIP}:{PORT}")
