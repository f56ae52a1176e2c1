"""sd_notify: the datagrams a service manager would receive."""

from __future__ import annotations

import socket
from pathlib import Path

from director.ops.notify import Notifier


def test_ready_reloading_stopping_reach_the_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(path)
        n = Notifier(path)
        assert n.ready("serving 2 services")
        assert srv.recv(4096) == b"READY=1\nSTATUS=serving 2 services"
        assert n.reloading()
        assert srv.recv(4096) == b"RELOADING=1"
        assert n.stopping()
        assert srv.recv(4096) == b"STOPPING=1"


def test_without_socket_nothing_is_sent() -> None:
    n = Notifier(None)
    assert not n.enabled
    assert not n.ready()


def test_absent_listener_is_not_an_error(tmp_path: Path) -> None:
    assert not Notifier(str(tmp_path / "nobody")).ready()
