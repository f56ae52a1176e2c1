"""``lvsd save``: the running director's services written back as lvs.cf.

The global settings, names and health-check settings come from the configuration
file (``-c``); the services, servers, weights, schedulers, persistence and
timeouts come from the running daemon (its control socket), so that changes made
with ``lvsadm`` survive a restart. A virtual whose ports all disappeared is kept
with ``active = 0``; a service that no virtual describes becomes a new virtual
named after it; a virtual whose ports came to differ is split, one per port.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from director.config import (
    SCHED_FLAGS,
    DirectorConfig,
    Network,
    Protocol,
    ServerConfig,
    VirtualConfig,
    format_config,
    load_config,
    parse_config,
)
from director.errors import DirectorError
from director.ops import client
from director.ops.admin import DEFAULT_TIMEOUTS

_Key = tuple[str, str, int, int]  # proto, vaddr, vport, fwmark


def add_command(sub: Any) -> None:
    p = sub.add_parser("save", help="write the running services back as lvs.cf")
    p.add_argument("-c", "--config", default="/etc/lvs.cf", help="the lvs.cf the daemon runs")
    p.add_argument("-o", "--output", help="where to write (default: the -c file; - for stdout)")
    p.add_argument("--socket", help="the daemon's control socket (default: the file's)")
    p.set_defaults(func=save_command)


def save_command(args: argparse.Namespace) -> int:
    try:
        base = load_config(args.config)
        path = args.socket or base.control_socket
        listing = cast(dict[str, Any], client.request(path, "list"))
        timeouts = cast(list[int], client.request(path, "timeouts"))
        text = format_config(running_config(base, listing, (timeouts[0], timeouts[1], timeouts[2])))
        parse_config(text, "<saved>")  # never write what lvsd would refuse to read
    except (DirectorError, OSError, RuntimeError) as e:
        print(f"lvsd save: {e}", file=sys.stderr)
        return 1
    out = args.output or args.config
    if out == "-":
        sys.stdout.write(text)
        return 0
    tmp = Path(f"{out}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return 0


def _key(svc: Mapping[str, Any]) -> _Key:
    host, _, port = str(svc["addr"]).rpartition(":")
    return (str(svc["proto"]).upper(), host, int(port), int(svc.get("fwmark") or 0))


def _virtual_key(v: VirtualConfig, port: int) -> _Key:
    proto = v.protocol.value.upper()
    if v.fwmark:
        return (proto, "0.0.0.0", 0, v.fwmark)
    return (proto, str(v.address), port, 0)


# A listing's forwarding method as lvs.cf's ``network``.
_NETWORK_OF_FWD = {"Masq": Network.NAT, "Route": Network.DIRECT, "Tunnel": Network.TUNNEL}


def _servers(
    svc: Mapping[str, Any], unset: int, known: Sequence[ServerConfig], network: Network
) -> tuple[ServerConfig, ...]:
    """The running destinations of ``svc`` as servers; a destination port ``unset`` is
    written as no ``port``, a method equal to the file's ``network`` as no ``network``."""
    out = []
    for d in sorted(svc["dests"], key=lambda d: _addr_key(str(d["addr"]))):
        host, _, port_text = str(d["addr"]).rpartition(":")
        address = ipaddress.IPv4Address(host)
        port = None if int(port_text) == unset else int(port_text)
        method = _NETWORK_OF_FWD[str(d.get("fwd", "Masq"))]
        name = next(
            (s.name for s in known if s.address == address and s.port == port),
            next((s.name for s in known if s.address == address), None),
        ) or f"real_{host.replace('.', '_')}" + (f"_{port}" if port is not None else "")
        out.append(
            ServerConfig(
                name=name,
                address=address,
                weight=int(d["weight"]),
                port=port,
                u_threshold=int(d.get("u_threshold", 0)),
                l_threshold=int(d.get("l_threshold", 0)),
                network=None if method is network else method,
            )
        )
    return tuple(out)


def _addr_key(addr: str) -> tuple[int, int]:
    host, _, port = addr.rpartition(":")
    return int(ipaddress.IPv4Address(host)), int(port)


def _settings(svc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "scheduler": str(svc["scheduler"]),
        # lvs.cf names the flags its scheduler reads; flag bits a scheduler ignores
        # (lvsadm -s rr -b flag-1) have no lvs.cf spelling and are left out.
        "sched_flags": tuple(
            sorted(f for f in svc.get("flags") or () if SCHED_FLAGS.get(f) == svc["scheduler"])
        ),
        "persistent": int(svc.get("persistent") or 0),
        "pmask": ipaddress.IPv4Address(str(svc.get("netmask") or "255.255.255.255")),
    }


def running_config(
    base: DirectorConfig, listing: Mapping[str, Any], timeouts: tuple[int, int, int]
) -> DirectorConfig:
    """``base`` with its services replaced by the running ones of ``listing``.

    ``listing`` is ``Admin.listing()``'s shape; ``timeouts`` are (tcp, tcpfin, udp).
    """
    running = {_key(s): s for s in listing["services"]}
    used: set[_Key] = set()
    virtuals: list[VirtualConfig] = []
    names = {v.name for v in base.virtuals}
    for v in base.virtuals:
        if not v.active:
            virtuals.append(v)
            continue
        present = [p for p in v.ports if _virtual_key(v, p) in running]
        if not present:
            virtuals.append(dataclasses.replace(v, active=False))
            continue
        inactive = tuple(s for s in v.servers if not s.active)
        groups: list[tuple[list[int], dict[str, Any]]] = []
        for port in present:
            key = _virtual_key(v, port)
            used.add(key)
            svc = running[key]
            unset = 0 if v.fwmark else port  # the destination port of a server without one
            fields = {
                **_settings(svc),
                "servers": _servers(svc, unset, v.servers, base.network) + inactive,
            }
            for ports, other in groups:
                if other == fields:
                    ports.append(port)
                    break
            else:
                groups.append(([port], fields))
        for i, (ports, fields) in enumerate(groups):
            name = v.name if i == 0 else _fresh(f"{v.name}_{ports[0]}", names)
            virtuals.append(dataclasses.replace(v, name=name, ports=tuple(ports), **fields))
    for key, svc in running.items():
        if key in used or key[3]:
            continue  # a fwmark service has no address of its own to describe it by
        proto, host, port, _ = key
        virtuals.append(
            VirtualConfig(
                name=_fresh(f"{proto.lower()}_{host.replace('.', '_')}_{port}", names),
                address=ipaddress.IPv4Address(host),
                protocol=Protocol(proto.lower()),
                ports=(port,),
                servers=_servers(svc, port, (), base.network),
                **_settings(svc),
            )
        )
    tcp, tcpfin, udp = (
        running_value if running_value != default else configured
        for running_value, default, configured in zip(
            timeouts,
            DEFAULT_TIMEOUTS,
            (base.tcp_timeout, base.tcpfin_timeout, base.udp_timeout),
            strict=True,
        )
    )
    return dataclasses.replace(
        base,
        virtuals=tuple(virtuals),
        tcp_timeout=tcp,
        tcpfin_timeout=tcpfin,
        udp_timeout=udp,
    )


def _fresh(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate
