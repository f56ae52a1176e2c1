"""ipvsadm's listings (``-L -n``, ``--stats``) rendered from a director snapshot.

The layout is ipvsadm 1.31's, column for column, so that scripts and eyes trained on
ipvsadm read lvsd the same way. Addresses are printed numerically (``-n``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# lvsd answers to ipvsadm's IPVS version and the kernel's default table size.
TITLE = "IP Virtual Server version 1.2.1 (size=4096)\n"
_STAT_FIELDS = ("conns", "inpkts", "outpkts", "inbytes", "outbytes")
_RATE_FIELDS = ("cps", "inpps", "outpps", "inbps", "outbps")


def largenum(n: int) -> str:
    """ipvsadm's print_largenum: 9 columns, K/M/G/T above 100 million."""
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


def _svc_name(svc: Mapping[str, Any]) -> str:
    return f"{svc['proto']}  {svc['addr']}"


def _numbers(entry: Mapping[str, Any], rate: bool) -> str:
    if rate:
        return "".join(largenum(int(entry["rates"][f])) for f in _RATE_FIELDS)
    return "".join(largenum(int(entry[f])) for f in _STAT_FIELDS)


def format_list(snapshot: Mapping[str, Any], *, stats: bool = False, rate: bool = False) -> str:
    """``ipvsadm -L -n``, or with ``stats`` its ``--stats``, with ``rate`` its ``--rate``."""
    out = [TITLE]
    services: Sequence[Mapping[str, Any]] = snapshot["services"]
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
        for svc in services:
            out.append(f"{_svc_name(svc):<33}{_numbers(svc, rate)}\n")
            for d in svc["dests"]:
                out.append(f"  -> {d['addr']:<28}{_numbers(d, rate)}\n")
        return "".join(out)
    out.append(
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    )
    for svc in services:
        line = f"{_svc_name(svc)} {svc['scheduler']}"
        if svc.get("flags"):
            line += f" ({','.join(svc['flags'])})"
        if svc.get("persistent"):
            line += f" persistent {svc['persistent']}"
        out.append(line + "\n")
        for d in svc["dests"]:
            out.append(
                f"  -> {d['addr']:<28} {'Masq':<7} {d['weight']:<6d} "
                f"{d['active']:<10d} {d['inactive']:<10d}\n"
            )
    return "".join(out)
