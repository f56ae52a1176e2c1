"""lvsadm's forwarding methods (-g, -m, -i) against a live control socket and service layer.

As ipvsadm: ``-a`` without a method means ``-g`` (direct routing), a direct-routing real
takes the virtual's port, ``-L -n`` names each real's method (Route, Masq) and ``-S``
writes it back as an option.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from director.dataplane import fastpath
from director.ipvs.service import DROUTE, MASQ, TUNNEL, IPVSError
from director.ops.control import ControlServer
from tests.unit.ops.test_lvsadm import Daemon


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(tmp_path / "lvsd.sock")
    server = ControlServer(d.path, d, commands=d.admin.commands())
    await server.start()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(server.serve())
        yield d
        task.cancel()


async def test_a_real_without_a_method_is_direct_routing(daemon: Daemon) -> None:
    assert (await daemon.run("-A", "-t", "10.0.1.5:80", "-s", "rr")).status == 0
    assert (await daemon.run("-a", "-t", "10.0.1.5:80", "-r", "192.168.1.10:8080")).status == 0
    assert (
        await daemon.run("-a", "-t", "10.0.1.5:80", "-r", "192.168.1.11:8080", "-m")
    ).status == 0
    svc = daemon.ipvs.get_service(6, 0x0A000105, 80)
    got = {str(d): d.fwd for d in svc.dests}
    # The DR real takes the virtual's port, as ipvsadm makes it; the NAT one keeps its own.
    assert got == {"192.168.1.10:80": DROUTE, "192.168.1.11:8080": MASQ}
    table = daemon.ipvs.table
    dr = svc.find_dest(0xC0A8010A, 80)
    assert dr is not None
    assert table.dest_buffer()[dr.slot * fastpath.DEST_FIELDS + fastpath.DEST_FWD] == DROUTE
    listing = [line.rstrip() for line in (await daemon.run("-L", "-n")).out.splitlines()]
    assert "  -> 192.168.1.10:80              Route   1      0          0" in listing
    assert "  -> 192.168.1.11:8080            Masq    1      0          0" in listing
    rules = (await daemon.run("-S", "-n")).out.splitlines()
    assert "-a -t 10.0.1.5:80 -r 192.168.1.10:80 -g -w 1" in rules
    assert "-a -t 10.0.1.5:80 -r 192.168.1.11:8080 -m -w 1" in rules


async def test_an_edit_changes_the_method_of_new_connections(daemon: Daemon) -> None:
    assert (await daemon.run("-A", "-t", "10.0.1.5:80", "-s", "rr")).status == 0
    assert (await daemon.run("-a", "-t", "10.0.1.5:80", "-r", "192.168.1.10", "-m")).status == 0
    h = daemon.ipvs.new_connection(6, 0x0A000164, 40000, 0x0A000105, 80, 0)
    assert h is not None
    assert (await daemon.run("-e", "-t", "10.0.1.5:80", "-r", "192.168.1.10", "-g")).status == 0
    (d,) = daemon.ipvs.get_service(6, 0x0A000105, 80).dests
    assert d.fwd == DROUTE
    handle = daemon.ipvs.table.entries(8)[0][0]
    assert daemon.ipvs.table.conn_info(handle)[9] & fastpath.CONN_F_FWD_MASK == MASQ


async def test_i_is_tunnelling_and_an_unknown_method_is_refused(daemon: Daemon) -> None:
    assert (await daemon.run("-A", "-t", "10.0.1.5:80", "-s", "rr")).status == 0
    assert (
        await daemon.run("-a", "-t", "10.0.1.5:80", "-r", "192.168.1.10:8080", "-i")
    ).status == 0
    svc = daemon.ipvs.get_service(6, 0x0A000105, 80)
    assert {str(d): d.fwd for d in svc.dests} == {"192.168.1.10:80": TUNNEL}
    listing = [line.rstrip() for line in (await daemon.run("-L", "-n")).out.splitlines()]
    assert "  -> 192.168.1.10:80              Tunnel  1      0          0" in listing
    assert "-a -t 10.0.1.5:80 -r 192.168.1.10:80 -i -w 1" in (await daemon.run("-S", "-n")).out
    with pytest.raises(IPVSError, match="forwarding method 1"):
        svc.add_dest(0xC0A8010B, 80, fwd=1)
