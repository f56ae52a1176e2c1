"""The takeover protocol between a running daemon and its successor, both ends real (the
control server, SCM_RIGHTS, the snapshot bytes), the daemons' parts stood in for."""

from __future__ import annotations

import asyncio
import os
import socket
from ipaddress import IPv4Address
from pathlib import Path
from socket import IPPROTO_TCP
from types import ModuleType
from typing import Any

import pytest

from director.config import DirectorConfig
from director.daemon import takeover
from director.daemon.director import Director
from director.dataplane.plumbing import Plumbing, PlumbingSpec
from director.errors import DirectorError
from director.ipvs.service import IPVS
from director.ops.control import ControlServer

VIP, RIP, CLIENT = 0x0A000105, 0xC0A8010A, 0xC6336401


class _Nanny:
    def export_health(self) -> list[list[object]]:
        return [[6, "10.0.1.5", 80, 0, "192.168.1.10", 80, "down", False, 0]]


class _Plumbing:
    """Stands in for Plumbing.export: one 'TUN' (a pipe's read end) and a journal."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        self.spec = PlumbingSpec(vips=(), tun="lvs0", private_iface="eth1", public_iface="eth0")

    def export(self) -> tuple[dict[str, Any], list[int]]:
        return {"journal": [["tun", 0, "lvs0", 7, True, [], False]]}, [self.r]


class _Running:
    """The running daemon as hand_over sees it."""

    def __init__(self, fp: ModuleType, listener: int) -> None:
        self.ipvs = IPVS(fp.ConnTable(64, 8, 4))
        svc = self.ipvs.add_service(IPPROTO_TCP, VIP, 80, "rr")
        svc.add_dest(RIP, 80)
        self.table = self.ipvs.table
        h = self.table.insert(6, CLIENT, 1000, VIP, 80, RIP, 80, svc.dests[0].slot, 0)
        self.table.set_state(h, 1, 0)
        self.plumbing = _Plumbing()
        self.nanny = _Nanny()
        self.listener = listener
        self.paused = self.resumed = 0
        self.successor: int | None = None

    @property
    def serving_packets(self) -> bool:
        return self.successor is None

    def clock(self) -> int:
        return 10

    def pause_packets(self) -> None:
        self.paused += 1

    def resume_packets(self) -> None:
        self.resumed += 1

    def listener_fds(self) -> list[tuple[str, int]]:
        return [("control", self.listener)]

    def failover_role(self) -> str | None:
        return "MASTER"

    def handed_over(self, pid: int) -> None:
        self.successor = pid


async def _serve(
    tmp_path: Path, fp: ModuleType, confirm: bool
) -> tuple[_Running, takeover.Received, bytes]:
    path = tmp_path / "lvsd.sock"
    server = ControlServer(path, target=None)  # type: ignore[arg-type]
    await server.start()
    running = _Running(fp, server.listener_fd())
    server.takeover = lambda r, w, req: takeover.hand_over(running, r, w, req)  # type: ignore[arg-type]
    serving = asyncio.ensure_future(server.serve())
    # What the running daemon's "TUN" holds: the successor reads it through its copy.
    os.write(running.plumbing.w, b"packet")

    def successor() -> tuple[takeover.Received, bytes]:
        got = takeover.request(path)
        data = os.read(got.tuns[0], 100)
        if confirm:
            for fd in got.tuns:
                os.close(fd)
            takeover.confirm(got)
        else:
            got.close()  # a successor that fails before it serves
        return got, data

    try:
        got, data = await asyncio.to_thread(successor)
        for _ in range(200):  # the running side finishes after the successor's last word
            if running.successor is not None or running.resumed:
                break
            await asyncio.sleep(0.01)
    finally:
        serving.cancel()
        server.close(unlink=False)
        os.close(running.plumbing.r)
        os.close(running.plumbing.w)
    return running, got, data


def test_the_successor_gets_the_descriptors_table_health_and_role(
    fastpath: ModuleType, tmp_path: Path
) -> None:
    running, got, data = asyncio.run(_serve(tmp_path, fastpath, confirm=True))
    # The TUN descriptor is the running daemon's pipe: what is written there reads here.
    assert len(got.tuns) == 1
    assert data == b"packet"
    # The listener is the very socket the running daemon listens on.
    assert set(got.listeners) == {"control"}
    assert got.listeners["control"].getsockname() == str(tmp_path / "lvsd.sock")
    assert got.snapshot.count == 1
    assert got.health == _Nanny().export_health()
    assert got.role == "MASTER"
    assert got.schedulers == [[6, VIP, 80, 0, "rr", [[RIP, 80]], [-1]]]  # rr at its head
    assert got.plumbing == {"journal": [["tun", 0, "lvs0", 7, True, [], False]]}
    assert (running.paused, running.resumed, running.successor) == (1, 0, os.getpid())
    for s in got.listeners.values():
        s.close()


def test_a_successor_that_never_confirms_leaves_the_running_daemon_serving(
    fastpath: ModuleType, tmp_path: Path
) -> None:
    running, _, _ = asyncio.run(_serve(tmp_path, fastpath, confirm=False))
    assert (running.paused, running.resumed, running.successor) == (1, 1, None)


def test_another_protocol_version_is_refused_and_nothing_changes(
    fastpath: ModuleType, tmp_path: Path
) -> None:
    async def ask() -> tuple[_Running, bytes]:
        path = tmp_path / "lvsd.sock"
        server = ControlServer(path, target=None)  # type: ignore[arg-type]
        await server.start()
        running = _Running(fastpath, server.listener_fd())
        server.takeover = lambda r, w, req: takeover.hand_over(running, r, w, req)  # type: ignore[arg-type]
        serving = asyncio.ensure_future(server.serve())

        def client() -> bytes:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(path))
                s.sendall(b'{"cmd": "takeover", "version": 2, "pid": 1}\n')
                return s.recv(4096)

        try:
            return running, await asyncio.to_thread(client)
        finally:
            serving.cancel()
            server.close()

    running, answer = asyncio.run(ask())
    assert b"takeover version 2; this lvsd speaks version 1" in answer
    assert (running.paused, running.successor) == (0, None)


def test_plumbing_export_and_adopt_give_the_same_journal(tmp_path: Path) -> None:
    spec = PlumbingSpec(vips=(), tun="lvs0", private_iface="eth1", public_iface="eth0")
    r, w = os.pipe()
    state = {
        "journal": [
            ["tun", 0, "lvs0", 7, True, ["csum"], False],
            ["sysctl", ["net", "ipv4", "ip_forward"], "0"],
            ["route", "10.0.1.5/32", 7, 254],
            ["proxy", "10.0.1.5", 2, "eth0"],
            ["rule", 0x1D5, 1000, "eth1", None],
            ["address", "192.168.1.254/24", 3, "eth1"],
        ],
        "ifs": ["eth0", 2, "eth1", 3],
        "runtime_vips": [],
        "holding": True,
        "tun": "lvs0",
        "fwmark_tuns": {},
    }
    p = Plumbing(spec)
    p.adopt(state, [r])
    assert p.tun.fd == r
    assert p.claimed
    assert p.sysctl_changes == ((("net", "ipv4", "ip_forward"), "0"),)
    again, fds = p.export()
    assert (again, fds) == (state, [r])
    with pytest.raises(Exception, match="cannot adopt"):
        Plumbing(spec).adopt({**state, "tun": "other"}, [r])
    os.close(r)
    os.close(w)


def test_an_active_active_director_refuses_takeover_before_touching_anything() -> None:
    # Its successor's BIRD would open a second BGP session from the same address.
    cfg = DirectorConfig(
        active_active=True,
        directors=(IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2")),
        bgp_neighbor=IPv4Address("192.0.2.254"),
        bgp_asn=65001,
        bgp_neighbor_asn=65000,
    )
    with pytest.raises(DirectorError, match="--takeover is not offered with active_active"):
        Director(cfg, take_over=True)
