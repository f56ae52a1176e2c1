"""ipvsadm's listings rendered from a director snapshot: ``-L -n`` and its variants, ``-c``, ``-S``.

The layout is ipvsadm 1.31's, column for column, so that scripts and eyes trained on
ipvsadm read lvsd the same way. Every ``address:port`` goes through ``name``, which
is ``numeric`` for ``-n`` and otherwise the caller's resolver (host and service names,
as ipvsadm's addrport_to_anyname prints them); names are cut to the columns as ipvsadm
cuts them. Services are sorted as libipvs's ipvs_cmp_services does (fwmark, protocol,
address, port) and destinations by address and port, unless ``sort`` is false
(``--nosort``: the kernel's list order).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

#: (``a.b.c.d:port``, protocol name as listed: "TCP", "UDP", "IP") -> what to print.
Namer = Callable[[str, str], str]


def numeric(addr: str, proto: str) -> str:
    """``-n``: the address and port as numbers."""
    return addr


# lvsd answers to ipvsadm's IPVS version and the kernel's default table size.
TITLE = "IP Virtual Server version 1.2.1 (size=4096)\n"
_STAT_FIELDS = ("conns", "inpkts", "outpkts", "inbytes", "outbytes")
_RATE_FIELDS = ("cps", "inpps", "outpps", "inbps", "outbps")
_PROTO_ORDER = {"TCP": 6, "UDP": 17}


def largenum(n: int, exact: bool = False) -> str:
    """ipvsadm's print_largenum: 9 columns, K/M/G/T above 100 million (``--exact``: none)."""
    if exact:
        text = str(n)
        return f"{n:{9 if len(text) <= 8 else len(text) + 1}d}"
    if n < 100_000_000:
        return f"{n:9d}"
    for limit, div, suffix in (
        (1_000_000_000, 1_000, "K"),
        (100_000_000_000, 1_000_000, "M"),
        (100_000_000_000_000, 1_000_000_000, "G"),
    ):
        if n < limit:
            return f"{n // div:8d}{suffix}"
    return f"{n // 1_000_000_000_000:8d}T"


def _addr_key(addr: str) -> tuple[int, int]:
    host, _, port = addr.rpartition(":")
    return int(ipaddress.IPv4Address(host)), int(port)


def _service_key(svc: Mapping[str, Any]) -> tuple[int, int, int, int]:
    return (int(svc.get("fwmark", 0)), _PROTO_ORDER.get(svc["proto"], 0), *_addr_key(svc["addr"]))


def _sorted(snapshot: Mapping[str, Any], sort: bool) -> list[tuple[Mapping[str, Any], list[Any]]]:
    services: Sequence[Mapping[str, Any]] = snapshot["services"]
    if not sort:
        return [(s, list(s["dests"])) for s in services]
    return [
        (s, sorted(s["dests"], key=lambda d: _addr_key(d["addr"])))
        for s in sorted(services, key=_service_key)
    ]


def _svc_name(svc: Mapping[str, Any], name: Namer) -> str:
    if svc.get("fwmark"):
        return f"FWM  {svc['fwmark']}"
    return f"{svc['proto']:<4} {name(svc['addr'], svc['proto'])}"[:33]


def _numbers(entry: Mapping[str, Any], rate: bool, exact: bool) -> str:
    if rate:
        return "".join(largenum(int(entry["rates"][f]), exact) for f in _RATE_FIELDS)
    return "".join(largenum(int(entry[f]), exact) for f in _STAT_FIELDS)


# The flag bits each name sets (IP_VS_SVC_F_SCHED1..3), and how ipvsadm's
# print_sched_flags names them for each scheduler.
_FLAG_BITS = {
    "flag-1": 1,
    "sh-fallback": 1,
    "mh-fallback": 1,
    "flag-2": 2,
    "sh-port": 2,
    "mh-port": 2,
    "flag-3": 3,
}
_FLAG_NAMES = {
    "sh": ((1, "sh-fallback"), (2, "sh-port")),
    "mh": ((1, "mh-fallback"), (2, "mh-port")),
}
_GENERIC_FLAG_NAMES = ((1, "flag-1"), (2, "flag-2"), (3, "flag-3"))


def _flags_text(svc: Mapping[str, Any]) -> str:
    bits = {_FLAG_BITS[f] for f in svc.get("flags") or () if f in _FLAG_BITS}
    names = _FLAG_NAMES.get(svc["scheduler"], _GENERIC_FLAG_NAMES)
    return ",".join(n for bit, n in names if bit in bits)


def format_list(
    snapshot: Mapping[str, Any],
    *,
    stats: bool = False,
    rate: bool = False,
    thresholds: bool = False,
    persistent_conn: bool = False,
    exact: bool = False,
    sort: bool = True,
    title: bool = True,
    name: Namer = numeric,
) -> str:
    """``ipvsadm -L``, or its ``--stats``, ``--rate``, ``--thresholds``, ``--persistent-conn``.

    ``title`` false leaves out the version line, as ``-L -t SERVICE`` does.
    """
    out = [TITLE] if title else []
    entries = _sorted(snapshot, sort)
    if stats or rate:
        heads = (
            ("CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
            if rate
            else ("Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
        )
        out.append(
            f"{'Prot LocalAddress:Port':<33}"
            + "".join(f" {h:>8}" for h in heads)
            + "\n  -> RemoteAddress:Port\n"
        )
        for svc, dests in entries:
            out.append(f"{_svc_name(svc, name):<33}{_numbers(svc, rate, exact)}\n")
            for d in dests:
                dname = name(d["addr"], svc["proto"])[:28]
                out.append(f"  -> {dname:<28}{_numbers(d, rate, exact)}\n")
        return "".join(out)
    if thresholds:
        out.append(
            f"{'Prot LocalAddress:Port':<33} {'Uthreshold':<10} {'Lthreshold':<10} "
            f"{'ActiveConn':<10} {'InActConn':<10}\n  -> RemoteAddress:Port\n"
        )
    elif persistent_conn:
        out.append(
            f"{'Prot LocalAddress:Port':<33} {'Weight':<9} {'PersistConn':<11} "
            f"{'ActiveConn':<10} {'InActConn':<10}\n  -> RemoteAddress:Port\n"
        )
    else:
        out.append(
            "Prot LocalAddress:Port Scheduler Flags\n"
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        )
    for svc, dests in entries:
        line = f"{_svc_name(svc, name)} {svc['scheduler']}"
        if _flags_text(svc):
            line += f" ({_flags_text(svc)})"
        if svc.get("persistent"):
            line += f" persistent {svc['persistent']}"
            if svc.get("netmask", "255.255.255.255") != "255.255.255.255":
                line += f" mask {svc['netmask']}"
        if svc.get("ops"):
            line += " ops"
        out.append(line + "\n")
        for d in dests:
            dname = name(d["addr"], svc["proto"])[:28]
            if thresholds:
                out.append(
                    f"  -> {dname:<28} {d.get('u_threshold', 0):<10d} "
                    f"{d.get('l_threshold', 0):<10d} {d['active']:<10d} {d['inactive']:<10d}\n"
                )
            elif persistent_conn:
                out.append(
                    f"  -> {dname:<28} {d['weight']:<9d} {d.get('persist', 0):<11d} "
                    f"{d['active']:<10d} {d['inactive']:<10d}\n"
                )
            else:
                out.append(
                    f"  -> {dname:<28} {d.get('fwd', 'Masq'):<7} {d['weight']:<6d} "
                    f"{d['active']:<10d} {d['inactive']:<10d}\n"
                )
    return "".join(out)


# ipvsadm -S's option for each forwarding method.
_FWD_OPTION = {"Masq": "-m", "Route": "-g", "Tunnel": "-i"}


def _rule_service(svc: Mapping[str, Any], name: Namer) -> str:
    if svc.get("fwmark"):
        return f"-f {svc['fwmark']}"
    return f"{'-t' if svc['proto'] == 'TCP' else '-u'} {name(svc['addr'], svc['proto'])}"


def format_rules(snapshot: Mapping[str, Any], *, name: Namer = numeric) -> str:
    """``ipvsadm -S``: one ``-A`` line per service, then one ``-a`` line per destination.

    In ipvsadm 1.31's order (its print_service_entry with FMT_RULE): ``-s``, then ``-p``
    and ``-M`` when persistent, ``-o``, then ``-b``; and for a destination ``-r``, the
    forwarding method and ``-w`` only: ipvsadm saves no thresholds, so neither does lvsadm.
    Always sorted: ipvsadm's option table refuses ``--nosort`` with ``-S``.
    """
    out: list[str] = []
    for svc, dests in _sorted(snapshot, True):
        vname = _rule_service(svc, name)
        line = f"-A {vname} -s {svc['scheduler']}"
        if svc.get("persistent"):
            line += f" -p {svc['persistent']}"
            if svc.get("netmask", "255.255.255.255") != "255.255.255.255":
                line += f" -M {svc['netmask']}"
        if svc.get("ops"):
            line += " -o"
        if _flags_text(svc):
            line += f" -b {_flags_text(svc)}"
        out.append(line + "\n")
        for d in dests:
            method = _FWD_OPTION.get(str(d.get("fwd", "Masq")), "-m")
            out.append(f"-a {vname} -r {name(d['addr'], svc['proto'])} {method} -w {d['weight']}\n")
    return "".join(out)


def format_connections(
    conns: Iterable[Mapping[str, Any]], *, persistent_conn: bool = False, name: Namer = numeric
) -> str:
    """``ipvsadm -L -c``: the connection entries, expiry as mm:ss.

    ``persistent_conn`` (``--persistent-conn``) adds the ``pe name`` and ``pe_data``
    columns to the title; an entry fills them only when a persistence engine made it
    (the kernel's /proc/net/ip_vs_conn), and lvsd has none, so its rows keep six columns.
    """
    out = ["IPVS connection entries\n"]
    if persistent_conn:
        out.append(
            f"pro expire {'state':<11} {'source':<18} {'virtual':<18} "
            f"{'destination':<18} {'pe name':<16} pe_data\n"
        )
    else:
        out.append(f"pro expire {'state':<11} {'source':<18} {'virtual':<18} destination\n")
    for c in conns:
        minutes, seconds = divmod(int(c["expire"]), 60)
        expire = f"{minutes:02d}:{seconds:02d}"
        proto = c["proto"]
        out.append(
            f"{proto:<3} {expire:<6} {c['state']:<11} {name(c['source'], proto):<18} "
            f"{name(c['virtual'], proto):<18} {name(c['destination'], proto)}\n"
        )
    return "".join(out)


def format_timeouts(tcp: int, tcpfin: int, udp: int) -> str:
    """``ipvsadm -L --timeout``."""
    return f"Timeout (tcp tcpfin udp): {tcp} {tcpfin} {udp}\n"
