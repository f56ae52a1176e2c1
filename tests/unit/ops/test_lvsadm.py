"""lvsadm against a live control socket and service layer: options, errors and listings.

The expected texts are ipvsadm 1.31's, written from its format strings (ipvsadm.c
print_title, print_service_entry, list_conn, list_timeout) and libipvs's
ipvs_strerror, for the same rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from director.dataplane import fastpath
from director.ipvs.estimator import RateEstimator
from director.ipvs.service import IPVS
from director.ops import lvsadm
from director.ops.admin import Admin
from director.ops.control import ControlServer


@dataclass
class Result:
    status: int
    out: str
    err: str


class Daemon:
    """A control socket served by a real Admin over a real service layer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ipvs = IPVS(fastpath.ConnTable(4096))
        self.admin = Admin(self.ipvs, RateEstimator(), lambda: 0)

    def snapshot(self) -> dict[str, object]:
        return {}

    def run_sync(self, args: Sequence[str], stdin: str = "") -> Result:
        out, err = io.StringIO(), io.StringIO()
        old_stdin = sys.stdin
        sys.stdin = io.StringIO(stdin)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = lvsadm.main(["--socket", str(self.path), *args])
        finally:
            sys.stdin = old_stdin
        return Result(status, out.getvalue(), err.getvalue())

    async def run(self, *args: str, stdin: str = "") -> Result:
        return await asyncio.to_thread(self.run_sync, args, stdin)


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(tmp_path / "lvsd.sock")
    server = ControlServer(d.path, d, commands=d.admin.commands())
    await server.start()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(server.serve())
        yield d
        task.cancel()


RULES = (
    ("-A", "-t", "10.0.1.5:80", "-s", "wlc"),
    ("-a", "-t", "10.0.1.5:80", "-r", "192.168.1.11:80", "-m", "-w", "1000"),
    ("-a", "-t", "10.0.1.5:80", "-r", "192.168.1.10:80", "-m", "-w", "2000"),
    ("-A", "-u", "10.0.1.5:53", "-s", "sh", "-b", "sh-port", "-p", "600", "-M", "255.255.255.0"),
    ("-a", "-u", "10.0.1.5:53", "-r", "192.168.1.12:5353", "-m", "-x", "100", "-y", "50"),
    ("-A", "-t", "10.0.1.5:21", "-s", "rr", "-p"),
    ("-a", "-t", "10.0.1.5:21", "-r", "192.168.1.12", "-m", "-w", "0"),
)

LIST = (
    "IP Virtual Server version 1.2.1 (size=4096)\n"
    "Prot LocalAddress:Port Scheduler Flags\n"
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    "TCP  10.0.1.5:21 rr persistent 360\n"
    "  -> 192.168.1.12:21              Masq    0      0          0         \n"
    "TCP  10.0.1.5:80 wlc\n"
    "  -> 192.168.1.10:80              Masq    2000   0          0         \n"
    "  -> 192.168.1.11:80              Masq    1000   0          0         \n"
    "UDP  10.0.1.5:53 sh (sh-port) persistent 600 mask 255.255.255.0\n"
    "  -> 192.168.1.12:5353            Masq    1      0          0         \n"
)
STATS = (
    "IP Virtual Server version 1.2.1 (size=4096)\n"
    "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n"
    "  -> RemoteAddress:Port\n"
    "TCP  10.0.1.5:21                         0        0        0        0        0\n"
    "  -> 192.168.1.12:21                     0        0        0        0        0\n"
    "TCP  10.0.1.5:80                         0        0        0        0        0\n"
    "  -> 192.168.1.10:80                     0        0        0        0        0\n"
    "  -> 192.168.1.11:80                     0        0        0        0        0\n"
    "UDP  10.0.1.5:53                         0        0        0        0        0\n"
    "  -> 192.168.1.12:5353                   0        0        0        0        0\n"
)
RATE_HEAD = (
    "IP Virtual Server version 1.2.1 (size=4096)\n"
    "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n"
    "  -> RemoteAddress:Port\n"
)
SAVE = (
    "-A -t 10.0.1.5:21 -s rr -p 360\n"
    "-a -t 10.0.1.5:21 -r 192.168.1.12:21 -m -w 0\n"
    "-A -t 10.0.1.5:80 -s wlc\n"
    "-a -t 10.0.1.5:80 -r 192.168.1.10:80 -m -w 2000\n"
    "-a -t 10.0.1.5:80 -r 192.168.1.11:80 -m -w 1000\n"
    "-A -u 10.0.1.5:53 -s sh -p 600 -M 255.255.255.0 -b sh-port\n"
    "-a -u 10.0.1.5:53 -r 192.168.1.12:5353 -m -w 1\n"
)
# Without -n: host names from the resolver (here a table; 10.0.1.5 has none) and
# service names from /etc/services (ftp, http, domain, mdns), as addrport_to_anyname.
HOSTS = {"192.168.1.10": "web-a.lab", "192.168.1.11": "web-b.lab", "192.168.1.12": "files.lab"}
LIST_NAMES = (
    "IP Virtual Server version 1.2.1 (size=4096)\n"
    "Prot LocalAddress:Port Scheduler Flags\n"
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    "TCP  10.0.1.5:ftp rr persistent 360\n"
    "  -> files.lab:ftp                Masq    0      0          0         \n"
    "TCP  10.0.1.5:http wlc\n"
    "  -> web-a.lab:http               Masq    2000   0          0         \n"
    "  -> web-b.lab:http               Masq    1000   0          0         \n"
    "UDP  10.0.1.5:domain sh (sh-port) persistent 600 mask 255.255.255.0\n"
    "  -> files.lab:mdns               Masq    1      0          0         \n"
)
SAVE_NAMES = (
    "-A -t 10.0.1.5:ftp -s rr -p 360\n"
    "-a -t 10.0.1.5:ftp -r files.lab:ftp -m -w 0\n"
    "-A -t 10.0.1.5:http -s wlc\n"
    "-a -t 10.0.1.5:http -r web-a.lab:http -m -w 2000\n"
    "-a -t 10.0.1.5:http -r web-b.lab:http -m -w 1000\n"
    "-A -u 10.0.1.5:domain -s sh -p 600 -M 255.255.255.0 -b sh-port\n"
    "-a -u 10.0.1.5:domain -r files.lab:mdns -m -w 1\n"
)


def fake_hosts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Reverse lookups from HOSTS (others: no name); returns the addresses asked."""
    asked: list[str] = []

    def gethostbyaddr(ip: str) -> tuple[str, list[str], list[str]]:
        asked.append(ip)
        if ip not in HOSTS:
            raise socket.herror(1, "Unknown host")
        return HOSTS[ip], [], [ip]

    monkeypatch.setattr(socket, "gethostbyaddr", gethostbyaddr)
    return asked


async def load(daemon: Daemon) -> None:
    for rule in RULES:
        r = await daemon.run(*rule)
        assert (r.status, r.err) == (0, ""), rule


async def test_listings_match_ipvsadm(daemon: Daemon) -> None:
    await load(daemon)
    assert (await daemon.run("-L", "-n")).out == LIST
    assert (await daemon.run("-Ln", "--stats")).out == STATS
    rate = (await daemon.run("-l", "-n", "--rate")).out
    assert rate.startswith(RATE_HEAD)
    assert rate.splitlines()[3] == f"{'TCP  10.0.1.5:21':<33}" + f"{0:9d}" * 5
    assert (await daemon.run("-S", "-n")).out == SAVE
    assert (await daemon.run("-L", "-n", "--timeout")).out == (
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    )
    one = await daemon.run("-L", "-n", "-t", "10.0.1.5:80")
    assert one.out == "".join(LIST.splitlines(keepends=True)[i] for i in (1, 2, 5, 6, 7))


async def test_thresholds_and_persistent_conn_layouts(daemon: Daemon) -> None:
    await load(daemon)
    thr = (await daemon.run("-L", "-n", "--thresholds")).out.splitlines()
    assert thr[1] == (
        "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn "
    )
    assert (
        thr[-1] == "  -> 192.168.1.12:5353            100        50         0          0         "
    )
    pc = (await daemon.run("-L", "-n", "--persistent-conn")).out.splitlines()
    assert pc[1] == "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn "
    assert pc[4] == "  -> 192.168.1.12:21              0         0           0          0         "


async def test_save_clear_restore_gives_the_same_listing(daemon: Daemon) -> None:
    await load(daemon)
    saved = (await daemon.run("-S", "-n")).out
    assert (await daemon.run("-C")).status == 0
    assert (await daemon.run("-L", "-n")).out.count("\n") == 3
    restored = await daemon.run("-R", stdin="# saved rules\n" + saved + "\n")
    assert (restored.status, restored.err) == (0, "")
    assert (await daemon.run("-L", "-n")).out == LIST


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-E", "-t", "10.9.9.9:80", "-s", "rr"), "No such service"),
        (("-D", "-t", "10.9.9.9:80"), "No such service"),
        (("-Z", "-t", "10.9.9.9:80"), "No such service"),
        (("-a", "-t", "10.9.9.9:80", "-r", "192.168.1.10"), "Service not defined"),
        (("-e", "-t", "10.9.9.9:80", "-r", "192.168.1.10"), "Service not defined"),
        (("-d", "-t", "10.9.9.9:80", "-r", "192.168.1.10"), "Service not defined"),
        (("-a", "-t", "10.0.1.5:80", "-r", "192.168.1.10:80", "-m"), "Destination already exists"),
        (("-e", "-t", "10.0.1.5:80", "-r", "192.168.1.99"), "No such destination"),
        (("-d", "-t", "10.0.1.5:80", "-r", "192.168.1.99"), "No such destination"),
        (("-A", "-t", "10.0.1.5:80"), "Service already exists"),
        (("-A", "-t", "10.0.1.5:81", "-s", "wlcx"), "Scheduler or persistence engine not found"),
    ],
)
async def test_refused_operations_are_worded_as_ipvsadm(
    daemon: Daemon, args: tuple[str, ...], message: str
) -> None:
    await load(daemon)
    r = await daemon.run(*args)
    assert (r.status, r.out, r.err) == (255, "", message + "\n")
    assert (await daemon.run("-L", "-n")).out == LIST


async def test_a_fwmark_service_needs_a_steered_mark(daemon: Daemon) -> None:
    # The director's Admin knows the marks its plumbing steers into TUNs (here 1).
    daemon.admin.fwmarks = frozenset({1})
    r = await daemon.run("-A", "-f", "2", "-s", "rr", "-p")
    assert r.status == 255
    assert r.err.startswith("Firewall mark not steered to lvsd: FWM 2: "), r.err
    assert "(steered: 1)" in r.err
    assert "add a virtual with fwmark = 2 to lvs.cf and restart lvsd" in r.err
    assert (await daemon.run("-A", "-f", "1", "-s", "rr", "-p")).status == 0
    assert (await daemon.run("-a", "-f", "1", "-r", "192.168.1.10", "-m")).status == 0
    svc = daemon.ipvs.get_service(6, 0, 0, 1)
    assert [(d.addr, d.port) for d in svc.dests] == [(0xC0A8010A, 0)]


async def test_edit_and_delete_apply_at_once(daemon: Daemon) -> None:
    await load(daemon)
    assert (
        await daemon.run("-e", "-t", "10.0.1.5:80", "-r", "192.168.1.11", "-w", "7")
    ).status == 0
    assert (await daemon.run("-d", "-t", "10.0.1.5:80", "-r", "192.168.1.10")).status == 0
    assert (await daemon.run("-E", "-t", "10.0.1.5:80", "-s", "rr", "-p", "30")).status == 0
    svc = daemon.ipvs.get_service(6, 0x0A000105, 80)
    assert (svc.sched_name, svc.timeout) == ("rr", 30)
    assert [(str(d), d.weight) for d in svc.dests] == [("192.168.1.11:80", 7)]
    assert (await daemon.run("-D", "-u", "10.0.1.5:53")).status == 0
    assert (await daemon.run("--set", "100", "0", "20")).status == 0
    assert (await daemon.run("-L", "--timeout")).out == "Timeout (tcp tcpfin udp): 100 120 20\n"


async def test_connection_listing_and_zero(daemon: Daemon) -> None:
    await load(daemon)
    table = daemon.ipvs.table
    h = daemon.ipvs.new_connection(6, 0x0A000164, 40000, 0x0A000105, 80, 0)
    assert h is not None
    out = (await daemon.run("-L", "-n", "-c")).out.splitlines()
    assert out[:2] == [
        "IPVS connection entries",
        "pro expire state       source             virtual            destination",
    ]
    # A connection the table saw no packet of yet: the kernel's NONE state, 2 s.
    state, expire = ("NONE", "00:02")
    assert out[2] == (
        f"TCP {expire:<6} {state:<11} {'10.0.1.100:40000':<18} {'10.0.1.5:80':<18} 192.168.1.10:80"
    )
    assert len(table) == 1
    http = "TCP  10.0.1.5:80                         1"
    assert http in (await daemon.run("-L", "-n", "--stats")).out
    assert (await daemon.run("-Z", "-t", "10.0.1.5:80")).status == 0
    assert http not in (await daemon.run("-L", "-n", "--stats")).out
    assert (await daemon.run("-L", "-n", "--stats")).out == STATS


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (
            ("-A",),
            2,
            "You need to supply the 'service-address' option for the 'add-service' command",
        ),
        (
            ("-a", "-t", "10.0.1.5:80"),
            2,
            "You need to supply the 'real-server' option for the 'add-server' command",
        ),
        (
            ("-D", "-t", "10.0.1.5:80", "-s", "rr"),
            2,
            "Illegal 'scheduler' option with the 'delete-service' command",
        ),
        (("-L", "-c", "--stats"), 2, "options conflicts in the list command"),
        (
            ("-L", "-c", "-t", "10.0.1.5:80"),
            2,
            "The option 'service-address' conflicts with the 'connection' option "
            "in the 'list' command",
        ),
        (("-A", "-L"), 2, "multiple commands specified"),
        (
            ("-A", "-t", "10.0.1.5:80", "-s", "rr", "-s", "wlc"),
            2,
            "multiple 'scheduler' options specified",
        ),
        (("-A", "-t", "10.0.1.5"), 2, "Zero port specified for non-persistent service"),
        (("-A", "-t", "nowhere.invalid:80"), 2, "illegal virtual server address[:port] specified"),
        (
            ("-a", "-t", "10.0.1.5:80", "-r", "192.168.1.10", "-w", "70000"),
            2,
            "illegal weight specified",
        ),
        (("-A", "-t", "10.0.1.5:80", "-p", "0"), 2, "invalid timeout value `0' specified"),
        (("--set", "1", "2"), 2, "--set option requires 3 timeout values"),
        (("-t", "10.0.1.5:80"), 255, "Try `lvsadm -h' or 'lvsadm --help' for more information."),
    ],
)
async def test_bad_command_lines_fail_as_ipvsadm(
    daemon: Daemon, args: tuple[str, ...], status: int, message: str
) -> None:
    r = await daemon.run(*args)
    assert (r.status, r.err) == (status, message + "\n")


def test_no_daemon_is_reported(tmp_path: Path) -> None:
    r = Daemon(tmp_path / "absent.sock").run_sync(["-L", "-n"])
    assert r.status == 2
    assert r.err.startswith("Can't initialize ipvs: ")


def test_sched_flag_numbers_become_the_schedulers_names() -> None:
    c = lvsadm.parse(["-A", "-t", "10.0.1.5:80", "-s", "sh", "-b", "flag-2,flag-1"], sys.stderr)
    assert c.flags == ["sh-fallback", "sh-port"]
    c = lvsadm.parse(["-E", "--tcp-service=10.0.1.5:http", "--persistent"], sys.stderr)
    assert (c.port, c.persistent, c.scheduler) == (80, 360, "wlc")


async def test_without_n_names_are_resolved_as_ipvsadm_does(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    await load(daemon)
    asked = fake_hosts(monkeypatch)
    assert (await daemon.run()).out == LIST_NAMES  # no argument lists, as ipvsadm does
    assert (await daemon.run("-L")).out == LIST_NAMES
    assert (await daemon.run("-S")).out == SAVE_NAMES
    assert (await daemon.run("-S", "-n")).out == SAVE
    # One lookup per address and listing: the resolver caches.
    assert sorted(set(asked)) == ["10.0.1.5", *sorted(HOSTS)]
    daemon.ipvs.new_connection(6, 0x0A000164, 40000, 0x0A000105, 80, 0)
    conns = (await daemon.run("-L", "-c")).out.splitlines()
    assert conns[2] == (
        f"TCP 00:02  NONE        {'10.0.1.100:40000':<18} {'10.0.1.5:http':<18} web-a.lab:http"
    )


async def test_a_resolver_that_hangs_costs_a_bounded_wait(daemon: Daemon) -> None:
    """Each lookup waits at most the timeout, all of them the budget; then numbers."""
    release = threading.Event()

    def hang(ip: str) -> str:
        release.wait(30)
        return "late.example"

    names = lvsadm.NameResolver(timeout=0.05, budget=0.2, lookup=hang)
    try:
        got = [names.host(f"192.0.2.{i}") for i in range(20)]
    finally:
        release.set()
    assert got == [f"192.0.2.{i}" for i in range(20)]
    assert names.budget <= 0
    assert names("192.0.2.1:80", "TCP") == "192.0.2.1:http"
    assert names("192.0.2.1:40000", "UDP") == "192.0.2.1:40000"
    assert names("192.0.2.1:80", "IP") == "192.0.2.1:80"  # a template: no protocol


async def test_one_packet_scheduling_is_listed_and_saved(daemon: Daemon) -> None:
    r = await daemon.run("-A", "-t", "10.0.1.5:80", "-o")
    assert (r.status, r.err) == (2, "One-Packet Scheduling is only for UDP virtual services\n")
    assert (await daemon.run("-A", "-u", "10.0.1.5:53", "-s", "rr", "--ops")).status == 0
    assert (await daemon.run("-a", "-u", "10.0.1.5:53", "-r", "192.168.1.10")).status == 0
    out = (await daemon.run("-L", "-n")).out.splitlines()
    assert out[3] == "UDP  10.0.1.5:53 rr ops"
    assert (await daemon.run("-S", "-n")).out.splitlines()[0] == "-A -u 10.0.1.5:53 -s rr -o"
    assert daemon.ipvs.get_service(17, 0x0A000105, 53).one_packet
    assert (await daemon.run("-E", "-u", "10.0.1.5:53", "-s", "rr", "-p", "60", "-o")).status == 0
    assert (await daemon.run("-L", "-n")).out.splitlines()[3] == (
        "UDP  10.0.1.5:53 rr persistent 60 ops"
    )
    assert (await daemon.run("-S", "-n")).out.splitlines()[0] == (
        "-A -u 10.0.1.5:53 -s rr -p 60 -o"
    )
    assert (await daemon.run("-E", "-u", "10.0.1.5:53", "-s", "rr")).status == 0
    assert not daemon.ipvs.get_service(17, 0x0A000105, 53).one_packet


async def test_a_flag_a_scheduler_ignores_is_kept_as_the_kernel_keeps_it(daemon: Daemon) -> None:
    assert (await daemon.run("-A", "-t", "10.0.1.5:80", "-s", "rr", "-b", "flag-1")).status == 0
    assert (await daemon.run("-L", "-n")).out.splitlines()[3] == "TCP  10.0.1.5:80 rr (flag-1)"
    assert (await daemon.run("-S", "-n")).out == "-A -t 10.0.1.5:80 -s rr -b flag-1\n"
    r = await daemon.run("-A", "-t", "10.0.1.5:81", "-s", "rr", "-b", "sh-port")
    assert (r.status, r.err) == (2, "incompatible scheduler flag `sh-port'\n")
    r = await daemon.run("-A", "-t", "10.0.1.5:81", "-b", "flag-9")
    assert (r.status, r.err) == (2, "invalid scheduler flag `flag-9'\n")
    # sh: flag-2 is sh-port; a third flag is kept but sh's listing names only its own.
    assert (
        await daemon.run("-A", "-t", "10.0.1.5:82", "-s", "sh", "-b", "flag-2,flag-3")
    ).status == 0
    assert "TCP  10.0.1.5:82 sh (sh-port)" in (await daemon.run("-L", "-n")).out


async def test_persistent_conn_listing_has_the_pe_columns(daemon: Daemon) -> None:
    await load(daemon)
    daemon.ipvs.new_connection(6, 0x0A000164, 40000, 0x0A000105, 80, 0)
    out = (await daemon.run("-L", "-n", "-c", "--persistent-conn")).out.splitlines()
    assert out[1] == (
        "pro expire state       source             virtual            destination        "
        "pe name          pe_data"
    )
    # No persistence engine made the entry: six columns, as the kernel lists it.
    assert out[2] == (
        f"TCP 00:02  NONE        {'10.0.1.100:40000':<18} {'10.0.1.5:80':<18} 192.168.1.10:80"
    )
    r = await daemon.run("-A", "-t", "10.0.1.5:90", "-p", "--pe", "sip")
    assert (r.status, r.err) == (255, "Scheduler or persistence engine not found\n")


async def test_counters_of_a_service_deleted_and_added_again_start_at_zero(
    daemon: Daemon,
) -> None:
    await load(daemon)
    http = "TCP  10.0.1.5:80                         1"
    daemon.ipvs.new_connection(6, 0x0A000164, 40000, 0x0A000105, 80, 0)
    assert http in (await daemon.run("-L", "-n", "--stats")).out
    assert (await daemon.run("-Z")).status == 0
    assert (await daemon.run("-D", "-t", "10.0.1.5:80")).status == 0
    for rule in RULES[:3]:
        assert (await daemon.run(*rule)).status == 0
    assert (await daemon.run("-L", "-n", "--stats")).out == STATS
    # Without -Z too: the new service is a new object. Its destinations come back from
    # the trash (the service's identity matches) with their own counters, as the
    # kernel's do: the one bound to the live connection still counts it.
    daemon.ipvs.new_connection(6, 0x0A000165, 40001, 0x0A000105, 80, 0)
    assert (await daemon.run("-D", "-t", "10.0.1.5:80")).status == 0
    for rule in RULES[:3]:
        assert (await daemon.run(*rule)).status == 0
    lines = (await daemon.run("-L", "-n", "--stats")).out.splitlines()
    assert (
        lines[5] == "TCP  10.0.1.5:80                         0        0        0        0        0"
    )
    assert sorted(line.split()[2] for line in lines[6:8]) == ["0", "1"]


async def test_a_zeroed_destination_deleted_and_revived_stays_zeroed(daemon: Daemon) -> None:
    await load(daemon)
    h = daemon.ipvs.new_connection(6, 0x0A000164, 40000, 0x0A000105, 80, 0)
    assert h is not None
    dest = "  -> 192.168.1.10:80                     1"
    assert dest in (await daemon.run("-L", "-n", "--stats")).out
    assert (await daemon.run("-Z", "-t", "10.0.1.5:80")).status == 0
    assert (await daemon.run("-d", "-t", "10.0.1.5:80", "-r", "192.168.1.10")).status == 0
    # The connection keeps the destination in the trash; -a revives that object.
    assert (await daemon.run(*RULES[2])).status == 0
    assert (await daemon.run("-L", "-n", "--stats")).out == STATS


async def test_nosort_lists_in_the_tables_order_and_sort_is_the_default(daemon: Daemon) -> None:
    await load(daemon)
    services = [line for line in LIST.splitlines() if line[:3] in ("TCP", "UDP")]
    listed = cast(list[dict[str, Any]], daemon.admin.listing()["services"])
    in_table_order = [f"{s['proto']}  {s['addr']}" for s in listed]
    assert [s[:17].rstrip() for s in services] != in_table_order  # sorting changes it
    nosort = (await daemon.run("-L", "-n", "--nosort")).out
    assert [
        line.split(" ", 3)[0] + "  " + line.split()[1]
        for line in nosort.splitlines()
        if line[:3] in ("TCP", "UDP")
    ] == in_table_order
    assert sorted(nosort.splitlines()) == sorted(LIST.splitlines())
    assert (await daemon.run("-L", "-n", "--sort")).out == LIST


async def test_help_and_version_answer_without_a_daemon(tmp_path: Path) -> None:
    nobody = Daemon(tmp_path / "absent.sock")
    for flag in ("-h", "--help"):
        r = await nobody.run(flag)
        assert (r.status, r.err) == (0, "")
        assert r.out.startswith("lvsadm v1.31 (ipvsadm's command line for lvsd)\nUsage:\n")
        assert "  lvsadm -L|l [virtual-service] [options]\n" in r.out
    for flag in ("-v", "--version"):
        r = await nobody.run(flag)
        assert (r.status, r.out, r.err) == (0, lvsadm.VERSION + "\n", "")


async def test_list_one_fwmark_service(daemon: Daemon) -> None:
    await load(daemon)
    daemon.admin.fwmarks = frozenset({7})
    assert (await daemon.run("-A", "-f", "7", "-s", "rr")).status == 0
    assert (await daemon.run("-a", "-f", "7", "-r", "192.168.1.10", "-m", "-w", "3")).status == 0
    one = await daemon.run("-L", "-n", "-f", "7")
    assert (one.status, one.err) == (0, "")
    assert one.out == (
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "FWM  7 rr\n"
        "  -> 192.168.1.10:0               Masq    3      0          0         \n"
    )
    missing = await daemon.run("-L", "-n", "-f", "8")
    assert (missing.status, missing.out, missing.err) == (1, "", "No such service\n")


async def test_exact_prints_large_counters_in_full(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "lvsd.sock")
    svc = d.ipvs.add_service(6, 0x0A000105, 80, "wlc")
    svc.add_dest(0xC0A8010A, 80, 1)
    big = 123_456_789_012

    def listing(req: object) -> object:
        # The fast path's counters are read-only; a listing as a long-running director's.
        out = d.admin.listing()
        for s in cast(list[dict[str, Any]], out["services"]):
            s["inbytes"] = big
            for dest in s["dests"]:
                dest["inbytes"] = big
        return out

    server = ControlServer(d.path, d, commands={**d.admin.commands(), "list": listing})
    await server.start()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(server.serve())
        rounded = (await d.run("-L", "-n", "--stats")).out.splitlines()
        exact = (await d.run("-L", "-n", "--stats", "-X")).out.splitlines()
        task.cancel()
    assert rounded[3].split()[5] == "123G"
    assert exact[3].split()[5] == str(big)
    assert exact[4].split()[5] == str(big)
    assert exact[:3] == rounded[:3]


async def test_the_control_socket_from_the_environment(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    await load(daemon)
    monkeypatch.setenv("LVSD_CONTROL_SOCKET", str(daemon.path))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = await asyncio.to_thread(lvsadm.main, ["-L", "-n"])
    assert (status, out.getvalue()) == (0, LIST)
    monkeypatch.setenv("LVSD_CONTROL_SOCKET", str(daemon.path.with_name("elsewhere.sock")))
    r = await daemon.run("-L", "-n")  # --socket wins over the environment
    assert (r.status, r.out) == (0, LIST)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = await asyncio.to_thread(lvsadm.main, ["-L", "-n"])
    assert status == 2
    assert "elsewhere.sock" in err.getvalue()


async def test_restore_goes_on_past_bad_lines_and_fails_at_the_end(daemon: Daemon) -> None:
    rules = (
        "# a comment, then a blank line\n"
        "\n"
        "-A -t 10.0.1.5:80 -s wlc\n"
        "-A -t 10.0.1.5:80 -s rr\n"  # refused: the service exists
        "-a -t 10.0.1.5:80 -r 192.168.1.10:80 -m -w 70000\n"  # bad: the weight
        "--bogus\n"  # bad: no such option
        "ipvsadm -a -t 10.0.1.5:80 -r 192.168.1.11:80 -m -w 2\n"  # the program name is skipped
        "-R\n"  # no restore inside a restore
        "-a -t 10.0.1.5:80 -r 192.168.1.12:80 -m 'unterminated\n"
    )
    r = await daemon.run("-R", stdin=rules)
    assert r.status != 0
    errors = r.err.splitlines()
    assert "Service already exists" in errors
    assert "illegal weight specified" in errors
    assert any("bogus" in e for e in errors), errors
    assert "Try `lvsadm -h' or 'lvsadm --help' for more information." in errors
    # The good lines were applied, each bad one skipped.
    svc = daemon.ipvs.get_service(6, 0x0A000105, 80)
    assert svc.sched_name == "wlc"
    assert [(str(d), d.weight) for d in svc.dests] == [("192.168.1.11:80", 2)]
