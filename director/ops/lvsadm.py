"""``lvsadm``: ipvsadm's command line for a running lvsd, over its control socket.

The options, their checks, the listings and the error messages are ipvsadm 1.31's,
so that operators' habits and scripts carry over: ``lvsadm -A -t VIP:80 -s wlc``,
``lvsadm -a -t VIP:80 -r RIP:80 -m -w 2``, ``lvsadm -L -n --stats``, ``lvsadm -S``
and ``lvsadm -R``. As with ipvsadm, ``-a`` without a method means ``-g`` (direct
routing); ``-m`` masquerades; ``-i`` tunnels (IPIP). Differences: without ``-n`` host
names are looked up with a bounded wait (``NameResolver``), so a dead resolver slows a
listing by seconds, never hangs it; lvsd has no persistence engines (``--pe`` is refused
as the kernel refuses an unknown one); the control socket is ``/run/lvsd.sock`` unless
``--socket PATH`` or ``LVSD_CONTROL_SOCKET`` says otherwise. Exit status as ipvsadm's:
0, 2 for a bad command line, 255 for a refused operation, 1 for a listing that failed.
"""

from __future__ import annotations

import contextlib
import errno as errnos
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TextIO, cast

from director.ops import client
from director.ops.listing import (
    Namer,
    format_connections,
    format_list,
    format_rules,
    format_timeouts,
    numeric,
)

DEFAULT_SOCKET = "/run/lvsd.sock"
MAX_TIMEOUT = 86400 * 31
DEFAULT_PERSISTENT_TIMEOUT = 360  # libipvs.h IPVS_SVC_PERSISTENT_TIMEOUT
VERSION = "lvsadm v1.31 (ipvsadm-compatible, lvsd control socket; IPVS v1.2.1)"

# ipvsadm's commands: (name for messages, the request it sends).
COMMANDS = {
    "A": "add-service",
    "E": "edit-service",
    "D": "delete-service",
    "C": "flush",
    "L": "list",
    "a": "add-server",
    "d": "delete-server",
    "e": "edit-server",
    "set": "set",
    "R": "restore",
    "S": "save",
    "Z": "zero",
}
OPTIONS = (
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
)
# ipvsadm.c commands_v_options, one column per OPTIONS entry: '+' required, 'x'
# illegal, '1' at most one of these, ' ' optional.
_CHECKS = {
    "A": "xx+   " + "x" * 15 + "   ",
    "E": "xx+   " + "x" * 15 + "   ",
    "D": "xx+" + "x" * 21,
    "C": "x" * 24,
    "L": " 11" + "x" * 9 + "11" + " " * 7 + "xxx",
    "a": "xx+xxx+    " + "x" * 13,
    "d": "xx+xxx+" + "x" * 17,
    "e": "xx+xxx+    " + "x" * 13,
    "set": "x" * 24,
    "R": "x" * 24,
    "S": " " + "x" * 23,
    "Z": "xx " + "x" * 21,
}
# libipvs ipvs_strerror: the message depends on the operation and the errno.
_STRERROR = {
    ("A", errnos.EEXIST): "Service already exists",
    ("A", errnos.ENOENT): "Scheduler or persistence engine not found",
    ("E", errnos.ESRCH): "No such service",
    ("E", errnos.ENOENT): "Scheduler or persistence engine not found",
    ("D", errnos.ESRCH): "No such service",
    ("Z", errnos.ESRCH): "No such service",
    ("a", errnos.ESRCH): "Service not defined",
    ("a", errnos.EEXIST): "Destination already exists",
    ("e", errnos.ESRCH): "Service not defined",
    ("e", errnos.ENOENT): "No such destination",
    ("d", errnos.ESRCH): "Service not defined",
    ("d", errnos.ENOENT): "No such destination",
    (None, errnos.EPERM): "Permission denied (you must be root)",
    (None, errnos.EINVAL): "Invalid operation.  Possibly wrong module version, "
    "address not unicast, ...",
    (None, errnos.ENOPROTOOPT): "Protocol not available",
    (None, errnos.ENOMEM): "Memory allocation problem",
}
# How long one reverse lookup may take, and all of them in one listing together; past
# the budget, the remaining addresses print as numbers.
RESOLVE_TIMEOUT_S = 1.0
RESOLVE_BUDGET_S = 3.0
_SCHED_FLAG_NAMES = {
    "sh": ("sh-fallback", "sh-port"),
    "mh": ("mh-fallback", "mh-port"),
}

USAGE = """\
lvsadm v1.31 (ipvsadm's command line for lvsd)
Usage:
  {p} -A|E virtual-service [-s scheduler] [-b sched-flags] [-p [timeout]] [-M netmask]
        [-o]
  {p} -D virtual-service
  {p} -C
  {p} -R
  {p} -S [-n]
  {p} -a|e virtual-service -r server-address [-m] [-w weight] [-x upper] [-y lower]
  {p} -d virtual-service -r server-address
  {p} -L|l [virtual-service] [options]
  {p} -Z [virtual-service]
  {p} --set tcp tcpfin udp
  {p} -h

virtual-service: --tcp-service|-t service-address   or   --udp-service|-u service-address
Options: --numeric -n, --connection -c, --timeout, --stats, --rate, --thresholds,
  --persistent-conn, --sort, --nosort, --exact -X, --scheduler -s, --sched-flags -b,
  --persistent -p, --netmask -M, --ops -o, --real-server -r, --gatewaying -g, --ipip -i,
  --masquerading -m, --weight -w,
  --u-threshold -x, --l-threshold -y, --socket PATH (lvsd's control socket)
"""


class Exit(Exception):
    """Ends the command with a status after its message was written."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass
class Command:
    """One parsed ipvsadm command line."""

    cmd: str = ""
    options: set[str] = field(default_factory=set)
    proto: str = "tcp"
    addr: str | None = None
    port: int = 0
    fwmark: int = 0
    scheduler: str = ""
    flags: list[str] = field(default_factory=list)
    persistent: int = 0
    netmask: str = "255.255.255.255"
    daddr: str | None = None
    dport: int | None = None
    weight: int | None = None
    u_threshold: int | None = None
    l_threshold: int | None = None
    fwd: str | None = None  # "masq", "route" or "tunnel" (-m, -g, -i); None: not given
    timeouts: tuple[int, int, int] = (0, 0, 0)
    pe: str = ""
    flags_arg: str = ""

    def service(self) -> dict[str, object]:
        if self.fwmark:
            return {"proto": self.proto, "fwmark": self.fwmark}
        return {"proto": self.proto, "addr": self.addr, "port": self.port}


def fail(out: TextIO, message: str) -> NoReturn:
    """ipvsadm's fail(2, ...)."""
    out.write(message + "\n")
    raise Exit(2)


def _number(text: str, lo: int, hi: int) -> int | None:
    """ipvsadm's string_to_number: a whole decimal in [lo, hi], else None."""
    try:
        n = int(text, 10)
    except ValueError:
        return None
    return n if lo <= n <= hi and text.strip() == text else None


def _inet_aton(text: str) -> str | None:
    try:
        return socket.inet_ntoa(socket.inet_aton(text))
    except OSError:
        pass
    try:
        return socket.gethostbyname(text)
    except OSError:
        return None


def parse_service(text: str, proto: str) -> tuple[str, int | None] | None:
    """ipvsadm's parse_service: ``host[:port]`` (port a number or a service name)."""
    if not text or text.isdigit():
        return None
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, ""
    addr = _inet_aton(host)
    if addr is None:
        return None
    if not sep:
        return addr, None
    port = _number(port_text, 0, 65535)
    if port is None:
        try:
            port = socket.getservbyname(port_text, proto)
        except OSError:
            return None
    return addr, port


def _sched_flags(text: str, scheduler: str, out: TextIO) -> list[str]:
    """ipvsadm's parse_sched_flags, run once every option is read: flag-1..3 go with any
    scheduler (the kernel keeps the bits; a scheduler ignores those not its own);
    sh-*/mh-* only with sh/mh (no -s: the default wlc)."""
    scheduler = scheduler or "wlc"
    flags: list[str] = []
    for part in text.split(","):
        if part in ("flag-1", "flag-2", "flag-3"):
            pass
        elif part in ("sh-fallback", "sh-port", "mh-fallback", "mh-port"):
            if part[:2] != scheduler:
                fail(out, f"incompatible scheduler flag `{part}'")
        else:
            fail(out, f"invalid scheduler flag `{part}'")
        flags.append(part)
    return flags


def _resolve_flags(scheduler: str, flags: list[str]) -> list[str]:
    """flag-N names become the scheduler's own (ipvsadm: flag-1 is sh-fallback for sh)."""
    names = _SCHED_FLAG_NAMES.get(scheduler, ())
    out = []
    for f in flags:
        if f.startswith("flag-") and int(f[5:]) <= len(names):
            f = names[int(f[5:]) - 1]
        out.append(f)
    return sorted(set(out))


_LONG = {
    "add-service": "A",
    "edit-service": "E",
    "delete-service": "D",
    "clear": "C",
    "list": "L",
    "zero": "Z",
    "add-server": "a",
    "edit-server": "e",
    "delete-server": "d",
    "set": "set",
    "help": "h",
    "version": "v",
    "restore": "R",
    "save": "S",
    "tcp-service": "t",
    "udp-service": "u",
    "fwmark-service": "f",
    "scheduler": "s",
    "sched-flags": "b",
    "persistent": "p",
    "netmask": "M",
    "real-server": "r",
    "masquerading": "m",
    "ops": "o",
    "pe": "pe",
    "ipip": "i",
    "gatewaying": "g",
    "weight": "w",
    "u-threshold": "x",
    "l-threshold": "y",
    "numeric": "n",
    "connection": "c",
    "timeout": "timeout",
    "stats": "stats",
    "rate": "rate",
    "thresholds": "thresholds",
    "persistent-conn": "persistent-conn",
    "nosort": "nosort",
    "sort": "sort",
    "exact": "X",
    "start-daemon": "start-daemon",
    "stop-daemon": "stop-daemon",
    "daemon": "daemon",
}
# What each option of ``_LONG`` does, with its argument's name: the manual page's text
# (``director.ops.manpage``), one entry per option key, commands first.
OPTION_HELP: dict[str, tuple[str | None, str]] = {
    "A": (None, "Add a virtual service (with -t, -u or -f)."),
    "E": (None, "Edit a virtual service: its scheduler, flags, persistence, netmask."),
    "D": (None, "Delete a virtual service and its real servers."),
    "C": (None, "Clear the table: delete every virtual service."),
    "R": (None, "Restore the rules read on standard input (the output of -S)."),
    "S": (None, "Save the rules to standard output, in a form -R reads back."),
    "a": (None, "Add a real server to a virtual service (with -r)."),
    "e": (None, "Edit a real server: its weight and thresholds."),
    "d": (None, "Delete a real server from a virtual service; its connections are cut."),
    "L": (None, "List the virtual services and their real servers (-l is the same)."),
    "Z": (None, "Zero the counters of one virtual service, or of all."),
    "set": (None, "Set the TCP, TCP FIN and UDP timeouts, in seconds (0 keeps one)."),
    "h": (None, "Print the usage and exit."),
    "v": (None, "Print the version and exit."),
    "start-daemon": ("STATE", "Refused: lvsd runs no separate synchronization daemon."),
    "stop-daemon": ("STATE", "Refused: lvsd runs no separate synchronization daemon."),
    "t": ("ADDR:PORT", "The TCP virtual service at ADDR:PORT."),
    "u": ("ADDR:PORT", "The UDP virtual service at ADDR:PORT."),
    "f": ("MARK", "The virtual service of firewall mark MARK."),
    "s": (
        "SCHEDULER",
        "The scheduler: rr, wrr, lc, wlc (the default), lblc, lblcr, dh, sh, "
        "sed, nq, fo, ovf, mh or twos.",
    ),
    "b": (
        "FLAGS",
        "Scheduler flags, comma separated: flag-1..3, sh-fallback, sh-port, mh-fallback, mh-port.",
    ),
    "p": (
        "[TIMEOUT]",
        "Persistent service: a client keeps its real server for TIMEOUT "
        "seconds (360 without a value).",
    ),
    "M": ("NETMASK", "The netmask that groups clients of a persistent service."),
    "r": ("ADDR[:PORT]", "The real server (its port defaults to the service's)."),
    "m": (None, "Masquerading (NAT): the real server's replies come back through lvsd."),
    "o": (None, "One-packet scheduling: each UDP datagram is scheduled on its own."),
    "pe": ("ENGINE", "A persistence engine: refused, lvsd has none."),
    "i": (None, "Tunnelling (IPIP): the packet goes to the real server encapsulated."),
    "g": (None, "Direct routing (gatewaying), the default: the packet goes unchanged."),
    "w": ("WEIGHT", "The real server's weight, 0 to 65535 (0: no new connections)."),
    "x": ("UPPER", "The connection count above which the real server gets no new one."),
    "y": ("LOWER", "The connection count below which an overloaded real server is used again."),
    "n": (None, "Numeric output: addresses and ports, no name look-ups."),
    "c": (None, "List the connection table."),
    "timeout": (None, "List the TCP, TCP FIN and UDP timeouts."),
    "stats": (None, "List with counters: connections, packets and bytes."),
    "rate": (None, "List with rates: connections, packets and bytes per second."),
    "thresholds": (None, "List with the upper and lower connection thresholds."),
    "persistent-conn": (None, "List with the persistent connections of each real server."),
    "nosort": (None, "List in the table's order, not sorted."),
    "sort": (None, "List sorted (the default)."),
    "X": (None, "Exact numbers: no K/M/G rounding of counters."),
    "daemon": (None, "List the synchronization daemon's state (none in lvsd)."),
    "socket": ("PATH", "lvsd's control socket (default /run/lvsd.sock, or $LVSD_CONTROL_SOCKET)."),
}
_WITH_ARG = frozenset("tufsbMrwxy") | {"start-daemon", "stop-daemon", "pe"}
_COMMAND_OPTS = frozenset("AEDCLlZaedRShv") | {"set", "start-daemon", "stop-daemon"}


def _tokens(argv: Sequence[str], err: TextIO) -> list[tuple[str, str | None]]:
    """popt's view of argv: (option, argument) pairs; positionals as ("", text)."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a.startswith("--") and len(a) > 2:
            name, eq, value = a[2:].partition("=")
            opt = _LONG.get(name)
            if opt is None:
                err.write(f"{a}: unknown option\n")
                raise Exit(255)
            if opt in _WITH_ARG and not eq:
                if i >= len(argv):
                    err.write(f"{a}: missing argument\n")
                    raise Exit(255)
                value, i = argv[i], i + 1
            elif opt == "p" and not eq:
                if i < len(argv) and not argv[i].startswith("-"):
                    value, i = argv[i], i + 1
                else:
                    value = None  # type: ignore[assignment]
            out.append((opt, value if (eq or opt in _WITH_ARG or opt == "p") else None))
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                opt = a[j]
                j += 1
                if opt not in "AEDCLlZaedRShvtufsbpMrmigwxyncXo":
                    err.write(f"-{opt}: unknown option\n")
                    raise Exit(255)
                if opt in _WITH_ARG or opt == "p":
                    if j < len(a):
                        value_s: str | None = a[j:]
                    elif opt == "p":
                        value_s = None
                        if i < len(argv) and not argv[i].startswith("-"):
                            value_s, i = argv[i], i + 1
                    elif i < len(argv):
                        value_s, i = argv[i], i + 1
                    else:
                        err.write(f"-{opt}: missing argument\n")
                        raise Exit(255)
                    out.append((opt, value_s))
                    break
                out.append((opt, None))
        else:
            out.append(("", a))
    return out


def parse(argv: Sequence[str], err: TextIO, prog: str = "lvsadm") -> Command:
    """Parse ipvsadm's options (``argv`` without the program name) and check them."""
    c = Command()
    positionals: list[str] = []

    def option(name: str) -> None:
        if name in c.options:
            fail(err, f"multiple '{name}' options specified")
        c.options.add(name)

    for opt, value in _tokens(argv, err):
        if opt in _COMMAND_OPTS:
            if opt == "h":
                sys.stdout.write(USAGE.format(p=prog))
                raise Exit(0)
            if opt == "v":
                sys.stdout.write(VERSION + "\n")
                raise Exit(0)
            if opt in ("start-daemon", "stop-daemon"):
                fail(err, "lvsd has no connection synchronization daemon")
            if c.cmd:
                fail(err, "multiple commands specified")
            c.cmd = "L" if opt == "l" else opt
        elif opt in ("t", "u"):
            option("service-address")
            c.proto = "tcp" if opt == "t" else "udp"
            parsed = parse_service(value or "", c.proto)
            if parsed is None:
                fail(err, "illegal virtual server address[:port] specified")
            c.addr, port = parsed
            c.port = port or 0
        elif opt == "f":
            option("service-address")
            mark = _number(value or "", 1, 0xFFFFFFFF)
            if mark is None:
                fail(err, f"invalid fwmark value `{value}' specified")
            c.fwmark = mark
        elif opt == "s":
            option("scheduler")
            c.scheduler = value or ""
        elif opt == "b":
            option("sched-flags")
            c.flags_arg = value or ""
        elif opt == "o":
            option("ops")
        elif opt == "pe":
            option("pe")
            c.pe = value or ""
        elif opt == "p":
            option("persistent")
            if value is None:
                c.persistent = DEFAULT_PERSISTENT_TIMEOUT
            else:
                t = _number(value, 1, MAX_TIMEOUT)
                if t is None:
                    fail(err, f"invalid timeout value `{value}' specified")
                c.persistent = t
        elif opt == "M":
            option("netmask")
            mask = _inet_aton(value or "")
            if mask is None:
                fail(err, "illegal virtual server persistent mask specified")
            c.netmask = mask
        elif opt == "r":
            option("real-server")
            parsed = parse_service(value or "", c.proto)
            if parsed is None:
                fail(err, "illegal real server address[:port] specified")
            c.daddr, c.dport = parsed
        elif opt in ("m", "g", "i"):
            option("forwarding-method")
            c.fwd = {"m": "masq", "g": "route", "i": "tunnel"}[opt]
        elif opt in ("w", "x", "y"):
            name = {"w": "weight", "x": "u-threshold", "y": "l-threshold"}[opt]
            option(name)
            n = _number(value or "", 0, 65535 if opt == "w" else 2**31 - 1)
            if n is None:
                fail(err, f"illegal {name.replace('-', '_')} specified")
            if opt == "w":
                c.weight = n
            elif opt == "x":
                c.u_threshold = n
            else:
                c.l_threshold = n
        elif opt == "n":
            option("numeric")
        elif opt == "c":
            option("connection")
        elif opt == "X":
            option("exact")
        elif opt in ("timeout", "daemon", "stats", "rate", "thresholds", "persistent-conn"):
            option(opt)
        elif opt == "nosort":
            option("nosort")
        elif opt == "sort":
            pass  # the default; accepted for compatibility
        else:
            positionals.append(value or "")

    if not c.cmd:
        if argv:
            err.write(f"Try `{prog} -h' or '{prog} --help' for more information.\n")
            raise Exit(255)
        c.cmd = "L"
    if c.cmd == "set":
        if len(positionals) < 3:
            fail(err, "--set option requires 3 timeout values")
        values = []
        for text in positionals[:3]:
            t = _number(text, 0, MAX_TIMEOUT)
            if t is None:
                fail(err, f"invalid timeout value `{text}' specified")
            values.append(t)
        c.timeouts = (values[0], values[1], values[2])
        positionals = positionals[3:]
    if positionals:
        fail(err, f"unexpected argument {positionals[0]}")
    _check(c, err)
    return c


def _check(c: Command, err: TextIO) -> None:
    """ipvsadm's generic_opt_check, then the per-command rules of process_options."""
    row = _CHECKS[c.cmd]
    first: str | None = None
    for name, rule in zip(OPTIONS, row, strict=False):
        given = name in c.options
        if not given and rule == "+":
            fail(err, f"You need to supply the '{name}' option for the '{COMMANDS[c.cmd]}' command")
        if given and rule == "x":
            fail(err, f"Illegal '{name}' option with the '{COMMANDS[c.cmd]}' command")
        if given and rule == "1":
            if first is not None:
                fail(
                    err,
                    f"The option '{name}' conflicts with the '{first}' option "
                    f"in the '{COMMANDS[c.cmd]}' command",
                )
            first = name
    if "sched-flags" in c.options:
        c.flags = _sched_flags(c.flags_arg, c.scheduler, err)
    if c.cmd in ("A", "E"):
        if not c.fwmark and not c.port and not c.persistent:
            fail(err, "Zero port specified for non-persistent service")
        if "ops" in c.options and not c.fwmark and c.proto != "udp":
            fail(err, "One-Packet Scheduling is only for UDP virtual services")
        c.scheduler = c.scheduler or "wlc"
        c.flags = _resolve_flags(c.scheduler, c.flags)
    if c.cmd in ("a", "e", "d") and c.dport is None:
        c.dport = c.port
    if c.cmd == "L" and (
        (
            c.options & {"connection", "timeout", "daemon"}
            and c.options & {"stats", "rate", "thresholds"}
        )
        or (c.options & {"timeout", "daemon"} and "persistent-conn" in c.options)
    ):
        fail(err, "options conflicts in the list command")


Request = Callable[..., object]


def run(
    c: Command,
    call: Request,
    out: TextIO,
    err: TextIO,
    stdin: TextIO | None = None,
    prog: str = "lvsadm",
    restoring: bool = False,
) -> int:
    """Carry out one parsed command through ``call(cmd, **args)`` (client.request's shape)."""
    try:
        return _run(c, call, out, err, stdin, prog, restoring)
    except client.ControlError as e:
        err.write(_strerror(c.cmd, e) + "\n")
        return 255


def _strerror(cmd: str, e: client.ControlError) -> str:
    if not e.errno:
        return str(e)
    text = _STRERROR.get((cmd, e.errno)) or _STRERROR.get((None, e.errno))
    return text or os.strerror(e.errno)


def _listing(call: Request) -> dict[str, Any]:
    return cast(dict[str, Any], call("list"))


def _run(
    c: Command,
    call: Request,
    out: TextIO,
    err: TextIO,
    stdin: TextIO | None,
    prog: str,
    restoring: bool,
) -> int:
    svc = c.service()
    name = numeric if "numeric" in c.options else NameResolver()
    match c.cmd:
        case "A" | "E":
            if c.pe:
                # No persistence engine is loaded in lvsd: the kernel's ENOENT.
                err.write(_STRERROR[(c.cmd, errnos.ENOENT)] + "\n")
                return 255
            call(
                "add_service" if c.cmd == "A" else "edit_service",
                **svc,
                scheduler=c.scheduler,
                flags=c.flags,
                persistent=c.persistent,
                netmask=c.netmask,
                ops="ops" in c.options,
            )
        case "D":
            call("del_service", **svc)
        case "C":
            call("flush")
        case "Z":
            call("zero", **(svc if "service-address" in c.options else {}))
        case "a" | "e":
            # ipvsadm sends every field on an edit too: an -e without -w sets weight 1, and
            # without a method -g (IP_VS_CONN_F_DROUTE is its default).
            fwd = c.fwd or "route"
            call(
                "add_dest" if c.cmd == "a" else "edit_dest",
                **svc,
                daddr=c.daddr,
                # ipvsadm: a real of a non-NAT method takes the virtual's port.
                dport=c.dport if fwd == "masq" or c.fwmark else c.port,
                fwd=fwd,
                weight=1 if c.weight is None else c.weight,
                u_threshold=c.u_threshold or 0,
                l_threshold=c.l_threshold or 0,
            )
        case "d":
            call("del_dest", **svc, daddr=c.daddr, dport=c.dport)
        case "set":
            tcp, tcpfin, udp = c.timeouts
            call("set_timeouts", tcp=tcp, tcpfin=tcpfin, udp=udp)
        case "S":
            out.write(format_rules(_listing(call), name=name))
        case "R":
            if restoring:
                err.write(f"Try `{prog} -h' or '{prog} --help' for more information.\n")
                return 255
            return _restore(call, stdin or sys.stdin, out, err, prog)
        case "L":
            return _list(c, call, out, err, name)
    return 0


def _list(c: Command, call: Request, out: TextIO, err: TextIO, name: Namer) -> int:
    if "connection" in c.options:
        conns = cast(list[dict[str, Any]], call("connections"))
        persistent = "persistent-conn" in c.options
        out.write(format_connections(conns, persistent_conn=persistent, name=name))
        return 0
    if "timeout" in c.options:
        tcp, tcpfin, udp = cast(list[int], call("timeouts"))
        out.write(format_timeouts(tcp, tcpfin, udp))
        return 0
    if "daemon" in c.options:
        return 0  # no sync daemon runs: ipvsadm prints nothing either
    snapshot = _listing(call)
    title = True
    if "service-address" in c.options:
        wanted = _matches(c)
        services = [s for s in snapshot["services"] if wanted(s)]
        if not services:
            err.write("No such service\n")
            return 1
        snapshot = {**snapshot, "services": services}
        title = False
    out.write(
        format_list(
            snapshot,
            stats="stats" in c.options,
            rate="rate" in c.options,
            thresholds="thresholds" in c.options,
            persistent_conn="persistent-conn" in c.options,
            exact="exact" in c.options,
            sort="nosort" not in c.options,
            title=title,
            name=name,
        )
    )
    return 0


def _matches(c: Command) -> Callable[[dict[str, Any]], bool]:
    if c.fwmark:
        return lambda s: bool(s.get("fwmark") == c.fwmark)
    name = f"{c.addr}:{c.port}"
    proto = c.proto.upper()
    return lambda s: bool(s["proto"] == proto and s["addr"] == name and not s.get("fwmark"))


class NameResolver:
    """ipvsadm's addrport_to_anyname without ``-n``: ``host:service``.

    The host is the reverse lookup's name (gethostbyaddr, as ipvsadm's addr_to_host),
    the port the service's name for the protocol in /etc/services (getservbyport);
    either falls back to the number. Each lookup runs in a daemon thread and is given
    ``timeout`` seconds, and all of them ``budget`` seconds together: a resolver that
    does not answer costs a listing a few seconds at most. Results are cached.
    """

    def __init__(
        self,
        timeout: float = RESOLVE_TIMEOUT_S,
        budget: float = RESOLVE_BUDGET_S,
        lookup: Callable[[str], str] | None = None,
    ) -> None:
        self.timeout = timeout
        self.budget = budget
        self._lookup = lookup or (lambda ip: socket.gethostbyaddr(ip)[0])
        self._hosts: dict[str, str] = {}

    def __call__(self, addr: str, proto: str) -> str:
        host, _, port = addr.rpartition(":")
        return f"{self.host(host)}:{self.service(int(port), proto)}"

    def host(self, ip: str) -> str:
        known = self._hosts.get(ip)
        if known is not None:
            return known
        name = ip
        if self.budget > 0:
            found: list[str] = []

            def work() -> None:
                with contextlib.suppress(OSError, UnicodeError):
                    found.append(self._lookup(ip))

            start = time.monotonic()
            worker = threading.Thread(target=work, name=f"resolve {ip}", daemon=True)
            worker.start()
            worker.join(min(self.timeout, self.budget))
            self.budget -= time.monotonic() - start
            if found:
                name = found[0]
        self._hosts[ip] = name
        return name

    @staticmethod
    def service(port: int, proto: str) -> str:
        if proto in ("TCP", "UDP"):
            try:
                return socket.getservbyport(port, proto.lower())
            except (OSError, OverflowError):
                pass
        return str(port)


def _restore(call: Request, stdin: TextIO, out: TextIO, err: TextIO, prog: str) -> int:
    """ipvsadm -R: every line of ``stdin`` is one command line (``#`` starts a comment)."""
    status = 0
    for line in stdin:
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] in (prog, "ipvsadm", "lvsadm"):
            words = words[1:]
        try:
            c = parse(words, err, prog)
            result = run(c, call, out, err, prog=prog, restoring=True)
        except Exit as e:
            result = e.status
        if result:
            status = result
    return status


def _socket_path(argv: list[str]) -> str:
    path = os.environ.get("LVSD_CONTROL_SOCKET", DEFAULT_SOCKET)
    for i, a in enumerate(argv):
        if a == "--socket" and i + 1 < len(argv):
            path = argv[i + 1]
            del argv[i : i + 2]
            break
        if a.startswith("--socket="):
            path = a.split("=", 1)[1]
            del argv[i]
            break
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path = _socket_path(args)

    def call(cmd: str, **kwargs: Any) -> object:
        try:
            return client.request(path, cmd, 5.0, **kwargs)
        except OSError as e:
            sys.stderr.write(
                f"Can't initialize ipvs: {e.strerror or e}\n"
                f"Is lvsd running? (control socket {path})\n"
            )
            raise Exit(2) from None

    try:
        return run(parse(args, sys.stderr), call, sys.stdout, sys.stderr)
    except Exit as e:
        return e.status


if __name__ == "__main__":
    sys.exit(main())
