"""lvs.cf, Piranha's configuration language, read into one frozen and validated model.

``load_config(path)`` is the only parser and validator. It reads the whole file once,
checks every keyword and rule, and returns a ``DirectorConfig`` tree of frozen slotted
dataclasses; nothing reads the file or the environment after that. ``format_config``
writes the tree back as normalized lvs.cf text that parses to an equal tree.

The grammar, the keywords, their defaults and the validation rules are documented in
docs/configuration.md. Every error is a ``ConfigError`` whose message reads
``FILE:LINE: KEYWORD: what was wrong, got 'VALUE'``.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from pathlib import Path
from typing import Any, TypeVar

from director.errors import ConfigError
from healthcheck.specs import ProbeKind

T = TypeVar("T")

# ipvsadm's scheduler names (kernel ip_vs_<name>.c), sorted as error messages list them.
SCHEDULER_NAMES: tuple[str, ...] = (
    *("dh", "fo", "lblc", "lblcr", "lc", "mh", "nq"),
    *("ovf", "rr", "sed", "sh", "twos", "wlc", "wrr"),
)

# ipvsadm --sched-flags and the one scheduler each belongs to.
SCHED_FLAGS: dict[str, str] = {
    "sh-fallback": "sh",
    "sh-port": "sh",
    "mh-fallback": "mh",
    "mh-port": "mh",
}

# Piranha's pulse wrote debug_level as a name; an integer is also accepted.
DEBUG_LEVELS: dict[str, int] = {"NONE": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3}

HOST_MASK = IPv4Address("255.255.255.255")
NAT_NMASK = IPv4Address("255.255.255.0")
U32_MAX = 2**32 - 1
S32_MAX = 2**31 - 1
IFNAMSIZ = 16  # the kernel's limit, terminating NUL included
# The fast path's fixed slot arrays (the connection table is sized from max_connections):
# configurations beyond them are refused here, so that check, run and reload agree.
MAX_DESTINATIONS = 4096
MAX_SERVICES = 1024
# 16M entries is about 1.5 GB of table; more is a typing error, not a plan.
MAX_CONNECTIONS = 1 << 24


class Service(StrEnum):
    """Which blocks pulse runs: ``virtual`` (LVS) or ``failover`` (FOS) services."""

    LVS = "lvs"
    FOS = "fos"


class Network(StrEnum):
    """The IPVS forwarding method for every virtual server."""

    NAT = "nat"
    DIRECT = "direct"
    TUNNEL = "tunnel"


class Protocol(StrEnum):
    """A virtual server's transport protocol."""

    TCP = "tcp"
    UDP = "udp"


class RshCommand(StrEnum):
    """How Piranha copied files between the directors."""

    RSH = "rsh"
    SSH = "ssh"


class LoadMonitor(StrEnum):
    """How nanny read a real server's load to adjust its weight."""

    NONE = "none"
    UPTIME = "uptime"
    RUP = "rup"
    RUPTIME = "ruptime"


@dataclass(frozen=True, slots=True)
class HostPort:
    """An IPv4 address and a TCP port to listen on."""

    host: IPv4Address
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """One ``server NAME { }`` block: a real server (IPVS destination) of a virtual server.

    ``port`` None means "the port the client connected to": each of the virtual's ports;
    for a fwmark virtual, each packet's own port (IPVS destination port 0).
    ``u_threshold``/``l_threshold`` are IPVS connection thresholds; 0 means off.
    """

    name: str
    address: IPv4Address
    active: bool = True
    weight: int = 1
    port: int | None = None
    u_threshold: int = 0
    l_threshold: int = 0
    network: Network | None = None  # this server's forwarding method; None: the file's

    def dport(self, vport: int, fwmark: int = 0) -> int:
        """The IPVS destination port for the virtual's port ``vport``: ``port``; unset,
        ``vport``, or for a fwmark service 0 (IPVS then keeps each packet's port, as
        ipvsadm's ``-a -f MARK -r ADDR`` does). Unset, nanny probes ``vport``."""
        if self.port is not None:
            return self.port
        return 0 if fwmark else vport


@dataclass(frozen=True, slots=True)
class VirtualConfig:
    """One ``virtual NAME { }`` block: one IPVS service per port in ``ports``.

    Every port shares the block's settings and servers (the thesis's ``port = 80,21``).
    ``persistent`` is in seconds, 0 = off; ``pmask`` is the persistence netmask.
    ``timeout`` and ``reentry`` are seconds (nanny's down and up delays).
    """

    name: str
    address: IPv4Address
    device: str | None = None
    vip_nmask: IPv4Address | None = None
    sorry_server: IPv4Address | None = None
    active: bool = True
    fwmark: int = 0
    protocol: Protocol = Protocol.TCP
    ports: tuple[int, ...] = (80,)
    scheduler: str = "wlc"
    sched_flags: tuple[str, ...] = ()
    persistent: int = 0
    pmask: IPv4Address = HOST_MASK
    send: str | None = None
    expect: str | None = None
    use_regex: bool = False
    send_program: str | None = None
    timeout: int = 10
    reentry: int = 180
    load_monitor: LoadMonitor = LoadMonitor.NONE
    quiesce_server: bool = False
    client_monitor: str = "/usr/sbin/nanny"
    # lvsd's own nanny keywords (docs/nanny.md)
    probe: str = "auto"
    probe_interval: int = 0
    http_path: str = "/"
    http_host: str | None = None
    http_status: tuple[tuple[int, int], ...] = ((200, 399),)
    dns_query: str = "localhost"
    agent_port: int = 0
    agent_interval: int = 2
    servers: tuple[ServerConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class FailoverConfig:
    """One ``failover NAME { }`` block (service = fos): a service pulse starts on the active node.

    lvsd validates and prints these blocks but does not run them.
    """

    name: str
    address: IPv4Address
    start_cmd: str
    stop_cmd: str
    device: str | None = None
    vip_nmask: IPv4Address | None = None
    active: bool = True
    port: int = 80
    send: str | None = None
    expect: str | None = None
    timeout: int = 10
    reentry: int = 180


@dataclass(frozen=True, slots=True)
class DirectorConfig:
    """The whole lvs.cf: global settings, then the virtual and failover services.

    Times are whole seconds, bar keepalive and deadtime (fractions allowed). Optional
    addresses and interfaces are None when absent; ``public_iface``/``private_iface``
    None means "find it from the addresses at run time".
    """

    service: Service = Service.LVS
    serial_no: int = 0
    primary: IPv4Address | None = None
    primary_private: IPv4Address | None = None
    backup: IPv4Address | None = None
    backup_active: bool = False
    backup_private: IPv4Address | None = None
    heartbeat: bool = True
    heartbeat_port: int = 539
    keepalive: float = 6
    deadtime: float = 18
    network: Network = Network.NAT
    nat_router: IPv4Address | None = None
    nat_router_device: str | None = None
    nat_nmask: IPv4Address = NAT_NMASK
    rsh_command: RshCommand = RshCommand.RSH
    debug_level: int = 0
    syncdaemon: bool = True
    syncd_iface: str | None = None
    syncd_id: int = 0
    tcp_timeout: int = 0
    tcpfin_timeout: int = 0
    udp_timeout: int = 0
    active_cmd: str | None = None
    inactive_cmd: str | None = None
    monitor_links: bool = False
    hard_shutdown: bool = True
    garp_master_refresh: float = 0
    # lvsd's own keywords
    public_iface: str | None = None
    private_iface: str | None = None
    metrics_address: HostPort | None = HostPort(IPv4Address("127.0.0.1"), 9561)
    control_socket: Path = Path("/run/lvsd.sock")
    heartbeat_key_file: Path | None = None
    console_token_file: Path | None = None
    heartbeat_insecure: bool = False
    max_connections: int = 1048576
    drain_timeout: int = 60
    # The ports of ip_vs_ftp's ``ports=``: TCP services on them get the FTP helper.
    ftp_ports: tuple[int, ...] = (21,)
    # Established connections forwarded by the kernel's tc program where it loads.
    offload: bool = True
    state_dir: Path = Path("/var/lib/lvsd")
    # Active-active (docs/scale-out.md): every director in ``directors`` serves, announces
    # the VIPs to ``bgp_neighbor`` over BGP, and syncs its connections to the others.
    active_active: bool = False
    directors: tuple[IPv4Address, ...] = ()
    bgp_neighbor: IPv4Address | None = None
    bgp_asn: int = 0
    bgp_neighbor_asn: int = 0
    bgp_hold_time: int = 9
    # Connection table snapshots in state_dir (docs/operations.md): how often (0: never),
    # and how many, how old and how many bytes of them are kept.
    snapshot_interval: float = 1.0
    snapshot_keep: int = 3
    snapshot_max_age: int = 3600
    snapshot_budget: int = 256 * 1024 * 1024
    virtuals: tuple[VirtualConfig, ...] = ()
    failovers: tuple[FailoverConfig, ...] = ()
    # What the file says that Piranha accepted and lvsd reads otherwise or doubts, each
    # "file:line: keyword: ..."; not part of the configuration's value.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def forwarding(self, server: ServerConfig) -> Network:
        """The forwarding method of ``server``: its own ``network``, else the file's."""
        return self.network if server.network is None else server.network

    def nat_subnets(self, virtual: VirtualConfig) -> tuple[IPv4Network, ...]:
        """The subnets the director reaches directly, where NAT real servers of ``virtual`` live.

        nat_router, primary_private and backup_private with nat_nmask; and, when the
        virtual sets vip_nmask, primary, backup and the virtual's address with vip_nmask.
        """
        nets: list[IPv4Network] = []
        for addr in (self.nat_router, self.primary_private, self.backup_private):
            if addr is not None:
                nets.append(_network(addr, self.nat_nmask))
        if virtual.vip_nmask is not None:
            for addr in (self.primary, self.backup, virtual.address):
                if addr is not None:
                    nets.append(_network(addr, virtual.vip_nmask))
        return tuple(dict.fromkeys(nets))


def _network(addr: IPv4Address, mask: IPv4Address) -> IPv4Network:
    return IPv4Network(f"{addr}/{mask}", strict=False)


# --------------------------------------------------------------------------- keywords


def _keys(model: type, *, drop: tuple[str, ...] = (), add: tuple[str, ...] = ()) -> frozenset[str]:
    return frozenset({f.name for f in fields(model)} - {"name", *drop} | set(add))


# The keywords of each section are the model's field names, bar a few that are spelled
# differently in lvs.cf (a virtual's ``ports`` is ``port``; a ``device`` follows its address).
GLOBAL_KEYS = _keys(DirectorConfig, drop=("nat_router_device", "virtuals", "failovers", "warnings"))
VIRTUAL_KEYS = _keys(VirtualConfig, drop=("device", "ports", "servers"), add=("port",))
SERVER_KEYS = _keys(ServerConfig)
FAILOVER_KEYS = _keys(FailoverConfig, drop=("device",))
# Which block keywords open nested blocks, per section kind.
BLOCKS: dict[str, frozenset[str]] = {
    "global": frozenset({"virtual", "failover"}),
    "virtual": frozenset({"server"}),
    "server": frozenset(),
    "failover": frozenset(),
}
KEYS: dict[str, frozenset[str]] = {
    "global": GLOBAL_KEYS,
    "virtual": VIRTUAL_KEYS,
    "server": SERVER_KEYS,
    "failover": FAILOVER_KEYS,
}
# Piranha keywords lvsd reads and ignores with a warning, and why: they drove machinery
# lvsd does not have.
UNSUPPORTED: dict[str, str] = {
    "sync": "Piranha's file synchronisation between directors",
    "ipvsadm": "the path of the ipvsadm binary (lvsd has no kernel IPVS to drive)",
    "primary_shared": "Piranha's shared-SCSI failover",
    "backup_shared": "Piranha's shared-SCSI failover",
    "reservation_conflict_action": "Piranha's shared-SCSI failover",
    "master": "Piranha's directory mirroring",
    "dirs": "Piranha's directory mirroring",
}


# --------------------------------------------------------------------------- syntax


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word", "string", "=", "{", "}", "nl", "eof"
    text: str
    line: int


@dataclass(slots=True)
class _Entry:
    key: str
    values: list[_Token]
    line: int


@dataclass(slots=True)
class _Block:
    kind: str
    name: str
    line: int
    entries: dict[str, _Entry] = field(default_factory=dict)
    children: list[_Block] = field(default_factory=list)

    def describe(self) -> str:
        if self.kind == "global":
            return "the global section"
        return f"{self.kind} {self.name!r}"


_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
_WORD_END = frozenset(" \t\n\r\f\v\"'#{}")


class _Parser:
    """Tokens to a tree of blocks with their keyword entries; syntax errors only."""

    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        self.tokens = list(self._tokenize(text))
        self.pos = 0
        self.warnings: list[str] = []

    def error(self, line: int, keyword: str, message: str) -> ConfigError:
        return ConfigError(f"{self.filename}:{line}: {keyword}: {message}")

    def _tokenize(self, text: str) -> Iterator[_Token]:
        line = 1
        i = 0
        n = len(text)
        # The first "=" of a statement separates key from value; later ones are value text.
        seen_equal = False
        while i < n:
            c = text[i]
            if c == "\n":
                yield _Token("nl", "\n", line)
                line += 1
                seen_equal = False
                i += 1
            elif c.isspace():
                i += 1
            elif c == "#":
                while i < n and text[i] != "\n":
                    i += 1
            elif c in "{}":
                yield _Token(c, c, line)
                seen_equal = False
                i += 1
            elif c == "=" and not seen_equal:
                yield _Token("=", c, line)
                seen_equal = True
                i += 1
            elif c in "\"'":
                i, value = self._quoted(text, i, line)
                yield _Token("string", value, line)
            else:
                start = i
                while i < n and text[i] not in _WORD_END and (seen_equal or text[i] != "="):
                    i += 1
                yield _Token("word", text[start:i], line)
        yield _Token("eof", "", line)

    def _quoted(self, text: str, i: int, line: int) -> tuple[int, str]:
        quote = text[i]
        out: list[str] = []
        i += 1
        while i < len(text) and text[i] != "\n":
            c = text[i]
            if c == quote:
                return i + 1, "".join(out)
            if c == "\\" and i + 1 < len(text) and text[i + 1] != "\n":
                nxt = text[i + 1]
                # An unknown escape stays as written, so regular expressions keep "\d".
                out.append(_ESCAPES.get(nxt, "\\" + nxt))
                i += 2
                continue
            out.append(c)
            i += 1
        raise self.error(line, quote, "unterminated quoted string (it must close on its line)")

    def next(self) -> _Token:
        tok = self.tokens[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def parse(self) -> _Block:
        root = _Block("global", "", 1)
        self._body(root)
        return root

    def _body(self, block: _Block) -> None:
        while True:
            tok = self.next()
            if tok.kind == "nl":
                continue
            if tok.kind == "eof":
                if block.kind != "global":
                    raise self.error(
                        block.line,
                        block.kind,
                        f"{block.describe()}: the '{{' opened on this line is never closed",
                    )
                return
            if tok.kind == "}":
                if block.kind == "global":
                    raise self.error(tok.line, "}", "stray '}': no block is open here")
                return
            if tok.kind in ("{", "="):
                raise self.error(tok.line, tok.text, "expected a keyword at the start of a line")
            self._statement(block, tok)

    def _statement(self, block: _Block, key_tok: _Token) -> None:
        key = key_tok.text
        line = key_tok.line
        if key_tok.kind == "string":
            raise self.error(line, key, "a keyword cannot be quoted")
        if key in BLOCKS[block.kind]:
            self._child(block, key_tok)
            return
        ignored = self._check_known(block, key, line)
        if self.peek().kind != "=":
            raise self.error(line, key, "expected '=' after the keyword")
        self.next()
        values: list[_Token] = []
        while self.peek().kind in ("word", "string"):
            values.append(self.next())
        if self.peek().kind == "{":
            raise self.error(line, key, "unexpected '{' in a value (quote it)")
        if not values:
            raise self.error(line, key, "missing value after '='")
        if ignored:
            self.warnings.append(
                f"{self.filename}:{line}: {key}: ignored, not supported by lvsd: {UNSUPPORTED[key]}"
            )
            return
        if key in block.entries:
            # Piranha's parser assigns each line as it reads it: the last one wins.
            first = block.entries[key].line
            self.warnings.append(
                f"{self.filename}:{line}: {key}: given twice in {block.describe()} "
                f"(lines {first} and {line}); line {line}'s value is used"
            )
            del block.entries[key]
        block.entries[key] = _Entry(key, values, line)

    def _check_known(self, block: _Block, key: str, line: int) -> bool:
        """Refuse an unknown keyword (as Piranha did); True for one to read and ignore."""
        if key in KEYS[block.kind]:
            return False
        if key in UNSUPPORTED:
            return True
        elsewhere = [k for k in ("global", "virtual", "server", "failover") if key in KEYS[k]]
        elsewhere += [k for k in ("global", "virtual") if key in BLOCKS[k]]
        if elsewhere:
            where = " or ".join(
                "the global section" if k == "global" else f"a {k} block" for k in elsewhere
            )
            raise self.error(line, key, f"not allowed in {block.describe()}; it belongs in {where}")
        known = sorted(KEYS[block.kind] | BLOCKS[block.kind])
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise self.error(line, key, f"unknown keyword in {block.describe()}{hint}")

    def _child(self, block: _Block, key_tok: _Token) -> None:
        kind = key_tok.text
        name_tok = self.next()
        if name_tok.kind not in ("word", "string") or not name_tok.text:
            raise self.error(key_tok.line, kind, f"expected a name after '{kind}'")
        while self.peek().kind == "nl":
            self.next()
        brace = self.next()
        if brace.kind != "{":
            raise self.error(key_tok.line, kind, f"expected '{{' after '{kind} {name_tok.text}'")
        child = _Block(kind, name_tok.text, key_tok.line)
        self._body(child)
        block.children.append(child)


# --------------------------------------------------------------------------- values


class _Bad(Exception):
    """A value that does not convert; the builder adds file, line and keyword."""


def _one(values: list[_Token]) -> str:
    if len(values) != 1:
        raise _Bad(
            f"expected one value, got {len(values)} "
            f"({' '.join(v.text for v in values)!r}; quote a value that contains spaces)"
        )
    return values[0].text


_INT_RE = re.compile(r"[+-]?[0-9]{1,20}")


def _integer(lo: int, hi: int) -> Callable[[list[_Token]], int]:
    def convert(values: list[_Token]) -> int:
        text = _one(values)
        if _INT_RE.fullmatch(text) and lo <= int(text) <= hi:
            return int(text)
        # A bound as large as the C type it mirrors reads better left unsaid, until it is hit.
        too_big = _INT_RE.fullmatch(text) is not None and int(text) > hi
        expected = f"from {lo} to {hi}" if too_big or hi < S32_MAX else f">= {lo}"
        raise _Bad(f"must be an integer {expected}, got {text!r}")

    return convert


_SECONDS_RE = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,3})?")


def _seconds(values: list[_Token]) -> float:
    """A positive time in seconds with at most three decimals (``0.2``, ``6``)."""
    text = _one(values)
    if _SECONDS_RE.fullmatch(text) and float(text) > 0:
        return float(text)
    raise _Bad(f"must be seconds > 0 with at most 3 decimals, got {text!r}")


def _seconds_or_zero(values: list[_Token]) -> float:
    """A time in seconds >= 0 with at most three decimals; 0 means off."""
    text = _one(values)
    if _SECONDS_RE.fullmatch(text):
        return float(text)
    raise _Bad(f"must be seconds >= 0 with at most 3 decimals, got {text!r}")


def _seconds_text(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _boolean(values: list[_Token]) -> bool:
    text = _one(values)
    if text not in ("0", "1"):
        raise _Bad(f"must be 0 or 1, got {text!r}")
    return text == "1"


E = TypeVar("E", bound=StrEnum)


def _choice(enum: type[E]) -> Callable[[list[_Token]], E]:
    def convert(values: list[_Token]) -> E:
        text = _one(values)
        try:
            return enum(text.lower())
        except ValueError:
            options = ", ".join(m.value for m in enum)
            raise _Bad(f"must be one of: {options}, got {text!r}") from None

    return convert


def _ipv4_text(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except AddressValueError:
        raise _Bad(f"must be an IPv4 address such as 192.0.2.1, got {text!r}") from None


def _ipv4(values: list[_Token]) -> IPv4Address:
    return _ipv4_text(_one(values))


def _netmask(values: list[_Token]) -> IPv4Address:
    text = _one(values)
    try:
        mask = IPv4Address(text)
        # ipaddress also takes a host mask (0.0.0.255) after the "/"; lvs.cf means netmasks.
        if IPv4Network(f"0.0.0.0/{text}").netmask == mask:
            return mask
    except (AddressValueError, NetmaskValueError, ValueError):
        pass
    raise _Bad(f"must be a netmask such as 255.255.255.0, got {text!r}")


def _ifname_text(text: str) -> str:
    if (
        not text
        or len(text) >= IFNAMSIZ
        or text in (".", "..")
        or any(c == "/" or c.isspace() or not c.isprintable() for c in text)
    ):
        raise _Bad(f"must be an interface name of 1 to {IFNAMSIZ - 1} characters, got {text!r}")
    return text


def _ifname(values: list[_Token]) -> str:
    return _ifname_text(_one(values))


def _address_device(values: list[_Token]) -> tuple[IPv4Address, str | None]:
    if len(values) not in (1, 2):
        got = " ".join(v.text for v in values)
        raise _Bad(f"must be 'IP' or 'IP device', got {got!r}")
    addr = _ipv4_text(values[0].text)
    device = _ifname_text(values[1].text) if len(values) == 2 else None
    return addr, device


def _port_text(text: str, lo: int = 0) -> int:
    if _INT_RE.fullmatch(text):
        port = int(text)
        if lo <= port <= 65535:
            return port
    elif re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", text):
        # Piranha's getPort(): a service name from /etc/services, looked up once, at load.
        try:
            return socket.getservbyname(text, "tcp")
        except OSError:
            pass
    raise _Bad(f"must be a port number from 1 to 65535 or a service name, got {text!r}")


def _port(values: list[_Token]) -> int:
    return _port_text(_one(values), lo=1)


def _port_or_zero(values: list[_Token]) -> int:
    return _port_text(_one(values))


def _port_list(values: list[_Token]) -> tuple[int, ...]:
    text = ",".join(v.text for v in values)
    parts = [p.strip() for p in text.split(",")]
    ports = [_port_text(p) for p in parts if p]
    if not ports:
        raise _Bad(f"must be a port or a comma-separated list of ports, got {text!r}")
    seen: set[int] = set()
    for port in ports:
        if port in seen:
            raise _Bad(f"port {port} is listed twice in {text!r}")
        seen.add(port)
    return tuple(ports)


FTP_MAX_PORTS = 8


def _ftp_ports(values: list[_Token]) -> tuple[int, ...]:
    """ip_vs_ftp's ``ports=``: up to 8 ports (IP_VS_APP_MAX_PORTS), each 2..65535 (an active
    data connection comes from the port below)."""
    ports = _port_list(values)
    if len(ports) > FTP_MAX_PORTS:
        raise _Bad(f"at most {FTP_MAX_PORTS} ports, got {len(ports)}")
    for port in ports:
        if port < 2:
            raise _Bad(f"must be ports from 2 to 65535, got {port}")
    return ports


def _string(values: list[_Token]) -> str:
    return _one(values)


def _command(values: list[_Token]) -> str:
    text = _one(values)
    if not text.strip():
        raise _Bad("must not be empty")
    return text


PROBE_CHOICES = ("auto", *(k.value for k in ProbeKind))


def _probe(values: list[_Token]) -> str:
    text = _one(values).lower()
    if text not in PROBE_CHOICES:
        raise _Bad(f"must be one of: {', '.join(PROBE_CHOICES)}, got {_one(values)!r}")
    return text


def _status_ranges(values: list[_Token]) -> tuple[tuple[int, int], ...]:
    text = ",".join(v.text for v in values)
    ranges: list[tuple[int, int]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        if not (_INT_RE.fullmatch(lo) and (not hi or _INT_RE.fullmatch(hi))):
            raise _Bad(f"must be HTTP status codes or ranges like 200-399, got {text!r}")
        r = (int(lo), int(hi or lo))
        if not 100 <= r[0] <= r[1] <= 599:
            raise _Bad(f"must be status codes from 100 to 599, low-high, got {part!r}")
        ranges.append(r)
    if not ranges:
        raise _Bad("must name at least one status code")
    return tuple(ranges)


def format_status_ranges(ranges: tuple[tuple[int, int], ...]) -> str:
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


def _path(values: list[_Token]) -> Path:
    text = _one(values)
    if not text or "\0" in text:
        raise _Bad(f"must be a file system path, got {text!r}")
    return Path(text)


def _debug_level(values: list[_Token]) -> int:
    text = _one(values)
    if text.upper() in DEBUG_LEVELS:
        return DEBUG_LEVELS[text.upper()]
    if _INT_RE.fullmatch(text) and 0 <= int(text) <= 255:
        return int(text)
    names = ", ".join(DEBUG_LEVELS)
    raise _Bad(f"must be one of: {names} or an integer from 0 to 255, got {text!r}")


def _scheduler(values: list[_Token]) -> str:
    text = _one(values)
    if text.lower() not in SCHEDULER_NAMES:
        raise _Bad(f"unknown scheduler {text!r}; expected one of: {', '.join(SCHEDULER_NAMES)}")
    return text.lower()


def _sched_flags(values: list[_Token]) -> tuple[str, ...]:
    text = ",".join(v.text for v in values)
    flags: list[str] = []
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        if part not in SCHED_FLAGS:
            raise _Bad(f"unknown flag {part!r}; expected some of: {', '.join(SCHED_FLAGS)}")
        if part not in flags:
            flags.append(part)
    return tuple(sorted(flags))


def _host_port(values: list[_Token]) -> HostPort | None:
    text = _one(values)
    if text.lower() in ("none", "off"):
        return None
    host, sep, port = text.rpartition(":")
    if not sep:
        raise _Bad(f"must be IP:PORT or 'none', got {text!r}")
    try:
        return HostPort(_ipv4_text(host), _port_text(port, lo=1))
    except _Bad:
        raise _Bad(f"must be IP:PORT (such as 127.0.0.1:9561) or 'none', got {text!r}") from None


# --------------------------------------------------------------------------- model


class _Fields:
    """Reads one block's entries, converting each value and tagging errors with file:line."""

    def __init__(self, block: _Block, filename: str) -> None:
        self.block = block
        self.filename = filename

    def error(self, key: str, message: str, line: int | None = None) -> ConfigError:
        if line is None:
            entry = self.block.entries.get(key)
            line = entry.line if entry is not None else self.block.line
        return ConfigError(f"{self.filename}:{line}: {key}: {message}")

    def has(self, key: str) -> bool:
        return key in self.block.entries

    def line(self, key: str) -> int:
        entry = self.block.entries.get(key)
        return entry.line if entry is not None else self.block.line

    def get(self, key: str, convert: Callable[[list[_Token]], T], default: T) -> T:
        entry = self.block.entries.get(key)
        if entry is None:
            return default
        try:
            return convert(entry.values)
        except _Bad as e:
            raise self.error(key, str(e)) from None

    def require(self, key: str, convert: Callable[[list[_Token]], T]) -> T:
        if key not in self.block.entries:
            raise self.error(key, f"{self.block.describe()} has no {key} (required)")
        entry = self.block.entries[key]
        try:
            return convert(entry.values)
        except _Bad as e:
            raise self.error(key, str(e)) from None


def _build(root: _Block, filename: str, warnings: list[str]) -> DirectorConfig:
    g = _Fields(root, filename)
    defaults = DirectorConfig()
    backup = g.get("backup", _ipv4, None)
    nat_router = g.get("nat_router", _address_device, None)
    keepalive = g.get("keepalive", _seconds, defaults.keepalive)
    deadtime = g.get("deadtime", _seconds, defaults.deadtime)
    # Piranha's pulse ran a backup only with backup_active = 1; the thesis's file names a
    # backup without that line and expects failover, so a named backup defaults to active.
    backup_active = g.get("backup_active", _boolean, backup is not None)
    if backup_active and backup is None:
        raise g.error("backup_active", "is 1 but no backup address is given")
    heartbeat = g.get("heartbeat", _boolean, defaults.heartbeat)
    warnings.extend(_check_heartbeat_times(g, keepalive, deadtime, heartbeat and backup_active))
    cfg = DirectorConfig(
        service=g.get("service", _choice(Service), defaults.service),
        serial_no=g.get("serial_no", _integer(0, S32_MAX), defaults.serial_no),
        primary=g.get("primary", _ipv4, None),
        primary_private=g.get("primary_private", _ipv4, None),
        backup=backup,
        backup_active=backup_active,
        backup_private=g.get("backup_private", _ipv4, None),
        heartbeat=heartbeat,
        heartbeat_port=g.get("heartbeat_port", _port, defaults.heartbeat_port),
        keepalive=keepalive,
        deadtime=deadtime,
        network=g.get("network", _choice(Network), defaults.network),
        nat_router=nat_router[0] if nat_router else None,
        nat_router_device=nat_router[1] if nat_router else None,
        nat_nmask=g.get("nat_nmask", _netmask, defaults.nat_nmask),
        rsh_command=g.get("rsh_command", _choice(RshCommand), defaults.rsh_command),
        debug_level=g.get("debug_level", _debug_level, defaults.debug_level),
        syncdaemon=g.get("syncdaemon", _boolean, defaults.syncdaemon),
        syncd_iface=g.get("syncd_iface", _ifname, None),
        syncd_id=g.get("syncd_id", _integer(0, 255), defaults.syncd_id),
        tcp_timeout=g.get("tcp_timeout", _integer(0, S32_MAX), 0),
        tcpfin_timeout=g.get("tcpfin_timeout", _integer(0, S32_MAX), 0),
        udp_timeout=g.get("udp_timeout", _integer(0, S32_MAX), 0),
        active_cmd=g.get("active_cmd", _command, None),
        inactive_cmd=g.get("inactive_cmd", _command, None),
        monitor_links=g.get("monitor_links", _boolean, defaults.monitor_links),
        hard_shutdown=g.get("hard_shutdown", _boolean, defaults.hard_shutdown),
        garp_master_refresh=g.get(
            "garp_master_refresh", _seconds_or_zero, defaults.garp_master_refresh
        ),
        public_iface=g.get("public_iface", _ifname, None),
        private_iface=g.get("private_iface", _ifname, None),
        metrics_address=g.get("metrics_address", _host_port, defaults.metrics_address),
        control_socket=g.get("control_socket", _path, defaults.control_socket),
        heartbeat_key_file=g.get("heartbeat_key_file", _path, None),
        console_token_file=g.get("console_token_file", _path, None),
        heartbeat_insecure=g.get("heartbeat_insecure", _boolean, defaults.heartbeat_insecure),
        max_connections=g.get(
            "max_connections", _integer(1, MAX_CONNECTIONS), defaults.max_connections
        ),
        state_dir=g.get("state_dir", _path, defaults.state_dir),
        snapshot_interval=g.get("snapshot_interval", _seconds_or_zero, defaults.snapshot_interval),
        snapshot_keep=g.get("snapshot_keep", _integer(1, 1000), defaults.snapshot_keep),
        snapshot_max_age=g.get("snapshot_max_age", _integer(1, S32_MAX), defaults.snapshot_max_age),
        snapshot_budget=g.get("snapshot_budget", _integer(4096, 1 << 50), defaults.snapshot_budget),
        drain_timeout=g.get("drain_timeout", _integer(0, S32_MAX), defaults.drain_timeout),
        ftp_ports=g.get("ftp_ports", _ftp_ports, defaults.ftp_ports),
        offload=g.get("offload", _boolean, defaults.offload),
        **_active_active(g, defaults),
    )
    virtuals: list[VirtualConfig] = []
    failovers: list[FailoverConfig] = []
    names: dict[tuple[str, str], int] = {}
    services: dict[tuple[Protocol, IPv4Address, int], tuple[str, int]] = {}
    marks: dict[int, tuple[str, int]] = {}
    n_services = n_dests = 0
    for child in root.children:
        if (child.kind, child.name) in names:
            raise ConfigError(
                f"{filename}:{child.line}: {child.kind}: duplicate name {child.name!r} "
                f"(first on line {names[(child.kind, child.name)]})"
            )
        names[(child.kind, child.name)] = child.line
        if child.kind == "failover":
            failovers.append(_build_failover(child, filename))
            continue
        v = _build_virtual(child, filename)
        f = _Fields(child, filename)
        if v.fwmark:
            # IPVS knows a fwmark service by its mark alone (address:port is nanny's).
            if v.fwmark in marks:
                other, other_line = marks[v.fwmark]
                raise f.error(
                    "fwmark",
                    f"mark {v.fwmark} is already virtual {other!r}'s (line {other_line})",
                )
            marks[v.fwmark] = (v.name, child.line)
        for port in () if v.fwmark else v.ports:
            svc = (v.protocol, v.address, port)
            if svc in services:
                other, other_line = services[svc]
                raise f.error(
                    "port",
                    f"{v.protocol.upper()} {v.address}:{port} is already served by "
                    f"virtual {other!r} (line {other_line})",
                )
            services[svc] = (v.name, child.line)
        _check_routed_ports(cfg, v, child, filename)
        warnings.extend(_check_nat(cfg, v, child, filename))
        if v.active:
            ports = 1 if v.fwmark else len(v.ports)
            n_services += ports
            n_dests += ports * sum(1 for s in v.servers if s.active)
            if n_services > MAX_SERVICES:
                raise f.error(
                    "port",
                    f"the fast path holds at most {MAX_SERVICES} services; this virtual "
                    f"brings the active ones to {n_services}",
                )
            if n_dests > MAX_DESTINATIONS:
                raise ConfigError(
                    f"{filename}:{child.line}: server: the fast path holds at most "
                    f"{MAX_DESTINATIONS} destinations (one per server and port); "
                    f"{child.describe()} brings the active ones to {n_dests}"
                )
        virtuals.append(v)
    return replace(
        cfg, virtuals=tuple(virtuals), failovers=tuple(failovers), warnings=tuple(warnings)
    )


def _build_virtual(block: _Block, filename: str) -> VirtualConfig:
    f = _Fields(block, filename)
    d = VirtualConfig(name=block.name, address=IPv4Address(0))
    address, device = f.require("address", _address_device)
    persistent = f.get("persistent", _integer(0, S32_MAX), d.persistent)
    ports = f.get("port", _port_list, d.ports)
    fwmark = f.get("fwmark", _integer(0, U32_MAX), d.fwmark)
    if fwmark and len(ports) > 1:
        raise f.error(
            "port",
            f"a fwmark virtual is one IPVS service, FWM {fwmark}; its one port is where "
            f"nanny probes the servers, got {','.join(map(str, ports))!r}",
        )
    if 0 in ports and not persistent:
        raise f.error(
            "port",
            "port 0 (every port) needs persistent > 0, as in IPVS; "
            f"got {','.join(map(str, ports))!r}",
        )
    scheduler = f.get("scheduler", _scheduler, d.scheduler)
    flags = f.get("sched_flags", _sched_flags, d.sched_flags)
    for flag in flags:
        if SCHED_FLAGS[flag] != scheduler:
            raise f.error(
                "sched_flags",
                f"flag {flag!r} applies to scheduler {SCHED_FLAGS[flag]!r}, not {scheduler!r}",
            )
    servers: list[ServerConfig] = []
    seen_names: dict[str, int] = {}
    seen_dests: dict[tuple[IPv4Address, int], tuple[str, int]] = {}
    for child in block.children:
        if child.name in seen_names:
            raise ConfigError(
                f"{filename}:{child.line}: server: duplicate name {child.name!r} in "
                f"{block.describe()} (first on line {seen_names[child.name]})"
            )
        seen_names[child.name] = child.line
        server = _build_server(child, filename, persistent > 0)
        for dest in dict.fromkeys((server.address, server.dport(p, fwmark)) for p in ports):
            if dest in seen_dests:
                other, other_line = seen_dests[dest]
                raise ConfigError(
                    f"{filename}:{child.line}: server: {server.address}:{dest[1]} of "
                    f"{child.describe()} is already server {other!r} (line {other_line}) "
                    f"of {block.describe()}"
                )
            seen_dests[dest] = (child.name, child.line)
        servers.append(server)
    return VirtualConfig(
        name=block.name,
        address=address,
        device=device,
        vip_nmask=f.get("vip_nmask", _netmask, None),
        sorry_server=f.get("sorry_server", _ipv4, None),
        active=f.get("active", _boolean, d.active),
        fwmark=fwmark,
        protocol=f.get("protocol", _choice(Protocol), d.protocol),
        ports=ports,
        scheduler=scheduler,
        sched_flags=flags,
        persistent=persistent,
        pmask=f.get("pmask", _netmask, d.pmask),
        send=f.get("send", _string, None),
        expect=f.get("expect", _string, None),
        use_regex=f.get("use_regex", _boolean, d.use_regex),
        send_program=f.get("send_program", _command, None),
        timeout=f.get("timeout", _integer(1, S32_MAX), d.timeout),
        reentry=f.get("reentry", _integer(0, S32_MAX), d.reentry),
        load_monitor=f.get("load_monitor", _choice(LoadMonitor), d.load_monitor),
        quiesce_server=f.get("quiesce_server", _boolean, d.quiesce_server),
        client_monitor=f.get("client_monitor", _command, d.client_monitor),
        probe=f.get("probe", _probe, d.probe),
        probe_interval=f.get("probe_interval", _integer(0, S32_MAX), d.probe_interval),
        http_path=f.get("http_path", _command, d.http_path),
        http_host=f.get("http_host", _command, None),
        http_status=f.get("http_status", _status_ranges, d.http_status),
        dns_query=f.get("dns_query", _command, d.dns_query),
        agent_port=f.get("agent_port", _port_or_zero, d.agent_port),
        agent_interval=f.get("agent_interval", _integer(1, S32_MAX), d.agent_interval),
        servers=tuple(servers),
    )


def _build_server(block: _Block, filename: str, persistent: bool) -> ServerConfig:
    f = _Fields(block, filename)
    address = f.require("address", _ipv4)
    port = f.get("port", _port_or_zero, None)
    if port == 0 and not persistent:
        raise f.error("port", "port 0 needs a persistent virtual server, got '0'")
    u_threshold = f.get("u_threshold", _integer(0, U32_MAX), 0)
    l_threshold = f.get("l_threshold", _integer(0, U32_MAX), 0)
    # The kernel refuses l > u with ERANGE even when u is 0 (thresholds off).
    if l_threshold > u_threshold:
        raise f.error(
            "l_threshold",
            f"must not exceed u_threshold ({u_threshold}), got '{l_threshold}'",
        )
    return ServerConfig(
        name=block.name,
        address=address,
        active=f.get("active", _boolean, True),
        weight=f.get("weight", _integer(0, S32_MAX), 1),
        port=port,
        u_threshold=u_threshold,
        l_threshold=l_threshold,
        network=f.get("network", _choice(Network), None),
    )


def _build_failover(block: _Block, filename: str) -> FailoverConfig:
    f = _Fields(block, filename)
    address, device = f.require("address", _address_device)
    return FailoverConfig(
        name=block.name,
        address=address,
        start_cmd=f.require("start_cmd", _command),
        stop_cmd=f.require("stop_cmd", _command),
        device=device,
        vip_nmask=f.get("vip_nmask", _netmask, None),
        active=f.get("active", _boolean, True),
        port=f.get("port", _port, 80),
        send=f.get("send", _string, None),
        expect=f.get("expect", _string, None),
        timeout=f.get("timeout", _integer(1, S32_MAX), 10),
        reentry=f.get("reentry", _integer(0, S32_MAX), 180),
    )


def _check_routed_ports(
    cfg: DirectorConfig, v: VirtualConfig, block: _Block, filename: str
) -> None:
    """A direct-routing or tunnelled server receives the packet as the client sent it, so its
    port is the virtual's (ipvsadm sets it so): a different ``port`` would be a lie."""
    if v.fwmark:
        return  # each packet keeps its own port anyway, as with ipvsadm -f
    for server, child in zip(v.servers, block.children, strict=True):
        method = cfg.forwarding(server)
        if method is Network.NAT or server.port is None or v.ports == (server.port,):
            continue
        raise _Fields(child, filename).error(
            "port",
            f"with network = {method} the real server receives the virtual's port "
            f"({','.join(map(str, v.ports))}) unchanged; remove port, got '{server.port}'",
        )


def _ipv4_list(values: list[_Token]) -> tuple[IPv4Address, ...]:
    """Addresses separated by spaces or commas, none twice."""
    parts = [p for v in values for p in v.text.split(",") if p]
    if not parts:
        raise _Bad("must be one or more IPv4 addresses, got nothing")
    addrs = [_ipv4_text(p) for p in parts]
    for i, addr in enumerate(addrs):
        if addr in addrs[:i]:
            raise _Bad(f"{addr} is listed twice")
    return tuple(addrs)


BGP_ASN_MAX = 4294967295


def _active_active(g: _Fields, defaults: DirectorConfig) -> dict[str, Any]:
    """The active-active keys; with ``active_active = 1``, ``directors`` (two or more),
    ``bgp_neighbor``, ``bgp_asn`` and ``bgp_neighbor_asn`` are required, and a backup
    director (pulse failover) is refused: the group replaces it."""
    active = g.get("active_active", _boolean, defaults.active_active)
    keys = ("directors", "bgp_neighbor", "bgp_asn", "bgp_neighbor_asn", "bgp_hold_time")
    if not active:
        for key in keys:
            if g.has(key):
                raise g.error(key, "needs active_active = 1")
        return {}
    if g.get("backup_active", _boolean, g.has("backup")):
        raise g.error(
            "active_active", "cannot be combined with a backup director (backup_active = 1)"
        )
    directors = g.require("directors", _ipv4_list)
    if len(directors) < 2:
        raise g.error("directors", f"must name at least two directors, got {len(directors)}")
    asn = _integer(1, BGP_ASN_MAX)
    # RFC 4271: a hold time is 0 (no keepalives) or at least 3 seconds.
    hold = g.get("bgp_hold_time", _integer(3, 65535), defaults.bgp_hold_time)
    return {
        "active_active": True,
        "directors": directors,
        "bgp_neighbor": g.require("bgp_neighbor", _ipv4),
        "bgp_asn": g.require("bgp_asn", asn),
        "bgp_neighbor_asn": g.require("bgp_neighbor_asn", asn),
        "bgp_hold_time": hold,
    }


def _check_heartbeat_times(g: _Fields, keepalive: float, deadtime: float, used: bool) -> list[str]:
    """deadtime must exceed keepalive where heartbeats run; with backup_active = 0 (or
    heartbeat = 0) no heartbeat is sent or awaited, and Piranha took any pair: a warning."""
    if deadtime > keepalive:
        return []
    key = "deadtime" if g.has("deadtime") else "keepalive"
    message = (
        f"deadtime ({deadtime}) must be greater than keepalive ({keepalive}), "
        "or every late heartbeat declares the peer dead"
    )
    if used:
        raise g.error(key, message)
    return [
        f"{g.filename}:{g.line(key)}: {key}: {message}; no heartbeat runs here "
        "(backup_active = 0 or heartbeat = 0), so it is accepted"
    ]


def _check_nat(cfg: DirectorConfig, v: VirtualConfig, block: _Block, filename: str) -> list[str]:
    """Warnings for NAT real servers outside every subnet lvs.cf says the director is on.

    Piranha never checked: a real behind a router the director has a route to is served
    all the same (nat_nmask = 255.255.255.255 makes every real "outside"). Whether the
    routing table reaches it is the kernel's business.
    """
    nets = cfg.nat_subnets(v)
    out: list[str] = []
    for server, child in zip(v.servers, block.children, strict=True):
        if cfg.forwarding(server) is not Network.NAT or any(server.address in net for net in nets):
            continue
        known = ", ".join(map(str, nets)) if nets else "none: no nat_router"
        out.append(
            f"{filename}:{_Fields(child, filename).line('address')}: address: real server "
            f"{str(server.address)!r} is outside every subnet this file puts the director "
            f"on ({known}); it must be reachable through the routing table, and its replies "
            "must come back through the director"
        )
    return out


def _check_servable(root: _Block, cfg: DirectorConfig, filename: str) -> None:
    """What ``lvsd run`` (and a reload) refuses before it looks at the host: the one
    validation ``lvsd check`` shares, so both refuse exactly the same files."""
    g = _Fields(root, filename)
    if cfg.heartbeat and cfg.backup_active and cfg.primary is None:
        raise g.error("backup", "failover needs the primary's address too (primary = ...)")


# --------------------------------------------------------------------------- entry points


def parse_config(text: str, filename: str = "<string>", *, serve: bool = False) -> DirectorConfig:
    """Parse and validate lvs.cf ``text``; ``filename`` only labels error messages.

    Raises ConfigError naming file:line, the keyword, the value and what was expected.
    What Piranha accepted and lvsd doubts or reads otherwise is accepted and listed in
    the result's ``warnings``. ``serve`` adds what ``lvsd run`` refuses before touching
    the host (``lvsd check``, ``run`` and a reload all pass it): failover without a
    primary. A file without virtual servers is served: the director starts empty, as
    kernel IPVS does, and lvsadm fills it.
    """
    parser = _Parser(text, filename)
    root = parser.parse()
    cfg = _build(root, filename, parser.warnings)
    if serve:
        _check_servable(root, cfg, filename)
    return cfg


def load_config(path: str | os.PathLike[str], *, serve: bool = False) -> DirectorConfig:
    """Read, parse and validate the lvs.cf at ``path`` (``serve`` as ``parse_config``);
    a missing file is a ConfigError too."""
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except OSError as e:
        raise ConfigError(f"{name}: cannot read the configuration: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{name}:{line}: the file is not UTF-8 text") from None
    return parse_config(text, name, serve=serve)


# --------------------------------------------------------------------------- output

_PLAIN_RE = re.compile(r"[^\s\"'#{}=\\]+")
_QUOTE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote(text: str) -> str:
    """``text`` as one lvs.cf token: bare when it is a plain word, else double-quoted."""
    if _PLAIN_RE.fullmatch(text) and text.isprintable():
        return text
    return '"' + "".join(_QUOTE_ESCAPES.get(c, c) for c in text) + '"'


def _debug_name(level: int) -> str:
    for name, value in DEBUG_LEVELS.items():
        if value == level:
            return name
    return str(level)


def _line(out: list[str], indent: str, key: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        text = "1" if value else "0"
    elif isinstance(value, str):
        text = _quote(value)
    else:
        text = str(value)
    out.append(f"{indent}{key} = {text}")


def format_config(cfg: DirectorConfig) -> str:
    """Normalized lvs.cf text for ``cfg``: every setting explicit, one per line.

    ``parse_config(format_config(cfg)) == cfg`` holds for every valid configuration.
    """
    out: list[str] = []
    _line(out, "", "service", cfg.service.value)
    _line(out, "", "serial_no", cfg.serial_no)
    _line(out, "", "primary", cfg.primary)
    _line(out, "", "primary_private", cfg.primary_private)
    _line(out, "", "backup", cfg.backup)
    _line(out, "", "backup_active", cfg.backup_active)
    _line(out, "", "backup_private", cfg.backup_private)
    _line(out, "", "heartbeat", cfg.heartbeat)
    _line(out, "", "heartbeat_port", cfg.heartbeat_port)
    _line(out, "", "keepalive", _seconds_text(cfg.keepalive))
    _line(out, "", "deadtime", _seconds_text(cfg.deadtime))
    _line(out, "", "network", cfg.network.value)
    if cfg.nat_router is not None:
        device = f" {_quote(cfg.nat_router_device)}" if cfg.nat_router_device else ""
        out.append(f"nat_router = {cfg.nat_router}{device}")
    _line(out, "", "nat_nmask", cfg.nat_nmask)
    _line(out, "", "rsh_command", cfg.rsh_command.value)
    _line(out, "", "debug_level", _debug_name(cfg.debug_level))
    _line(out, "", "syncdaemon", cfg.syncdaemon)
    _line(out, "", "syncd_iface", cfg.syncd_iface)
    _line(out, "", "syncd_id", cfg.syncd_id)
    _line(out, "", "tcp_timeout", cfg.tcp_timeout)
    _line(out, "", "tcpfin_timeout", cfg.tcpfin_timeout)
    _line(out, "", "udp_timeout", cfg.udp_timeout)
    _line(out, "", "active_cmd", cfg.active_cmd)
    _line(out, "", "inactive_cmd", cfg.inactive_cmd)
    _line(out, "", "monitor_links", cfg.monitor_links)
    _line(out, "", "hard_shutdown", cfg.hard_shutdown)
    _line(out, "", "garp_master_refresh", _seconds_text(cfg.garp_master_refresh) or "0")
    _line(out, "", "public_iface", cfg.public_iface)
    _line(out, "", "private_iface", cfg.private_iface)
    _line(out, "", "metrics_address", str(cfg.metrics_address) if cfg.metrics_address else "none")
    _line(out, "", "control_socket", str(cfg.control_socket))
    _line(out, "", "heartbeat_key_file", _path_text(cfg.heartbeat_key_file))
    _line(out, "", "console_token_file", _path_text(cfg.console_token_file))
    _line(out, "", "heartbeat_insecure", cfg.heartbeat_insecure)
    _line(out, "", "max_connections", cfg.max_connections)
    _line(out, "", "state_dir", str(cfg.state_dir))
    _line(out, "", "snapshot_interval", _seconds_text(cfg.snapshot_interval))
    _line(out, "", "snapshot_keep", cfg.snapshot_keep)
    _line(out, "", "snapshot_max_age", cfg.snapshot_max_age)
    _line(out, "", "snapshot_budget", cfg.snapshot_budget)
    _line(out, "", "drain_timeout", cfg.drain_timeout)
    out.append(f"ftp_ports = {','.join(map(str, cfg.ftp_ports))}")
    _line(out, "", "offload", cfg.offload)
    if cfg.active_active:
        _line(out, "", "active_active", cfg.active_active)
        out.append(f"directors = {' '.join(map(str, cfg.directors))}")
        _line(out, "", "bgp_neighbor", cfg.bgp_neighbor)
        _line(out, "", "bgp_asn", cfg.bgp_asn)
        _line(out, "", "bgp_neighbor_asn", cfg.bgp_neighbor_asn)
        _line(out, "", "bgp_hold_time", cfg.bgp_hold_time)
    for v in cfg.virtuals:
        out.append("")
        out.extend(_format_virtual(v))
    for fo in cfg.failovers:
        out.append("")
        out.extend(_format_failover(fo))
    return "\n".join(out) + "\n"


def _path_text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _address_text(address: IPv4Address, device: str | None) -> str:
    return f"{address} {_quote(device)}" if device else str(address)


def _format_virtual(v: VirtualConfig) -> list[str]:
    out = [f"virtual {_quote(v.name)} {{"]
    i = "    "
    out.append(f"{i}address = {_address_text(v.address, v.device)}")
    _line(out, i, "vip_nmask", v.vip_nmask)
    _line(out, i, "sorry_server", v.sorry_server)
    _line(out, i, "active", v.active)
    _line(out, i, "fwmark", v.fwmark)
    _line(out, i, "protocol", v.protocol.value)
    out.append(f"{i}port = {','.join(map(str, v.ports))}")
    _line(out, i, "scheduler", v.scheduler)
    if v.sched_flags:
        out.append(f"{i}sched_flags = {','.join(v.sched_flags)}")
    _line(out, i, "persistent", v.persistent)
    _line(out, i, "pmask", v.pmask)
    _line(out, i, "send", v.send)
    _line(out, i, "expect", v.expect)
    _line(out, i, "use_regex", v.use_regex)
    _line(out, i, "send_program", v.send_program)
    _line(out, i, "timeout", v.timeout)
    _line(out, i, "reentry", v.reentry)
    _line(out, i, "load_monitor", v.load_monitor.value)
    _line(out, i, "quiesce_server", v.quiesce_server)
    _line(out, i, "client_monitor", v.client_monitor)
    _line(out, i, "probe", v.probe)
    _line(out, i, "probe_interval", v.probe_interval)
    _line(out, i, "http_path", v.http_path)
    _line(out, i, "http_host", v.http_host)
    out.append(f"{i}http_status = {format_status_ranges(v.http_status)}")
    _line(out, i, "dns_query", v.dns_query)
    _line(out, i, "agent_port", v.agent_port)
    _line(out, i, "agent_interval", v.agent_interval)
    for s in v.servers:
        out.append("")
        out.append(f"{i}server {_quote(s.name)} {{")
        j = i * 2
        _line(out, j, "address", s.address)
        _line(out, j, "active", s.active)
        _line(out, j, "weight", s.weight)
        _line(out, j, "port", s.port)
        _line(out, j, "u_threshold", s.u_threshold)
        _line(out, j, "l_threshold", s.l_threshold)
        _line(out, j, "network", None if s.network is None else s.network.value)
        out.append(f"{i}}}")
    out.append("}")
    return out


def _format_failover(fo: FailoverConfig) -> list[str]:
    out = [f"failover {_quote(fo.name)} {{"]
    i = "    "
    out.append(f"{i}address = {_address_text(fo.address, fo.device)}")
    _line(out, i, "vip_nmask", fo.vip_nmask)
    _line(out, i, "active", fo.active)
    _line(out, i, "port", fo.port)
    _line(out, i, "send", fo.send)
    _line(out, i, "expect", fo.expect)
    _line(out, i, "timeout", fo.timeout)
    _line(out, i, "reentry", fo.reentry)
    _line(out, i, "start_cmd", fo.start_cmd)
    _line(out, i, "stop_cmd", fo.stop_cmd)
    out.append("}")
    return out
