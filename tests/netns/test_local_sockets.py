"""A local socket left on a VIP's 4-tuple must not silence the VIP.

    client 10.0.1.100 --- eth0 [director] eth1 --- real1 192.168.1.10

Before lvsd runs, something on the director owned the VIP (a proxy, an old
configuration) and left a TIME_WAIT socket for client:45000 -> VIP:80. The kernel's
early demux would attach that socket to the client's next SYN on the same tuple, and
ip_forward drops a packet that carries a socket: the connection could not be made
through lvsd until the TIME_WAIT expired. lvsd turns early demux off in its namespace.
One fast path is enough: the kernel drops the SYN before either would see it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from director.config import parse_config
from director.tools.demo import LabDirector
from tests.netns.conftest import LabFactory

pytestmark = pytest.mark.netns

VIP = "10.0.1.5"
CPORT = 45000
SERVE_ONCE = f"""
import socket
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('{VIP}', 80))
srv.listen()
print('listening', flush=True)
conn, _ = srv.accept()
conn.recv(4096)  # read the request: closing with unread data would reset, not close
conn.sendall(b'HTTP/1.0 200 OK\\r\\nX-Real: director\\r\\n\\r\\n')
conn.close()  # the server closes first: the TIME_WAIT stays on the director
srv.close()
"""
CLIENT = f"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('10.0.1.100', {CPORT}))
s.settimeout(10)
s.connect(('{VIP}', 80))
s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')
data = b''
while chunk := s.recv(4096):
    data += chunk
print([l for l in data.decode().split('\\r\\n') if l.startswith('X-Real')][0])
"""
CONFIG = """
network = nat
nat_router = 192.168.1.254 eth1:1
virtual web {
    address = 10.0.1.5
    port = 80
    scheduler = rr
    server real1 {
        address = 192.168.1.10
    }
}
"""


def test_time_wait_on_the_vip_tuple_does_not_block_forwarding(lab_factory: LabFactory) -> None:
    lab = lab_factory(reals=1)
    lab.run("director", ["ip", "addr", "add", f"{VIP}/32", "dev", "eth0"])
    server = lab.popen("director", [sys.executable, "-c", SERVE_ONCE], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == b"listening\n"
        first = lab.run("client", [sys.executable, "-c", CLIENT], timeout=30).stdout
        assert first.strip() == "X-Real: director"
        assert server.wait(10) == 0
    finally:
        server.kill()
        server.communicate()
    time_wait = lab.run("director", ["ss", "-Htn", "state", "time-wait"]).stdout
    assert f"{VIP}:80" in time_wait
    lab.run("director", ["ip", "addr", "del", f"{VIP}/32", "dev", "eth0"])

    cfg = parse_config(CONFIG, "local-sockets.cf")
    with LabDirector(lab, cfg):
        again = lab.run("client", [sys.executable, "-c", CLIENT], timeout=30).stdout
    assert again.strip() == "X-Real: real1"
