"""The TCP state machine of IPVS (IPVS-SEMANTICS.md §3.3), every cell, on both fast paths."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.vectors.nat_vectors import (
    T1_CLIENT,
    T1_CPORT,
    T1_RIP,
    T1_RPORT,
    T1_VIP,
    T1_VPORT,
    _tcp,
    ip4,
)

# Copied from the spec text, not from the code: columns NO ES SS SR FW TW CL CW LA LI SA.
SPEC = """
INPUT      syn: SR ES ES SR SR SR SR SR SR SR SR
           fin: CL CW SS TW TW TW CL CW LA LI TW
           ack: ES ES SS ES FW TW CL CW CL LI ES
           rst: CL CL CL SR CL CL CL CL LA LI SR
OUTPUT     syn: SS ES SS SR SS SS SS SS SS LI SR
           fin: TW FW SS TW FW TW CL TW LA LI TW
           ack: ES ES SS ES FW TW CL CW LA ES ES
           rst: CL CL SS CL CL TW CL CL CL CL CL
"""
ABBR = {
    "NO": "NONE",
    "ES": "ESTABLISHED",
    "SS": "SYN_SENT",
    "SR": "SYN_RECV",
    "FW": "FIN_WAIT",
    "TW": "TIME_WAIT",
    "CL": "CLOSE",
    "CW": "CLOSE_WAIT",
    "LA": "LAST_ACK",
    "LI": "LISTEN",
    "SA": "SYNACK",
}
COLUMNS = list(ABBR.values())
TIMEOUTS = {
    "NONE": 2,
    "ESTABLISHED": 900,
    "SYN_SENT": 120,
    "SYN_RECV": 60,
    "FIN_WAIT": 120,
    "TIME_WAIT": 120,
    "CLOSE": 10,
    "CLOSE_WAIT": 60,
    "LAST_ACK": 30,
    "LISTEN": 120,
    "SYNACK": 120,
}
ACTIVE = {"ESTABLISHED", "SYN_SENT", "SYN_RECV", "SYNACK"}
FLAGS = {"syn": "S", "fin": "FA", "ack": "A", "rst": "RA", "none": ""}


def _cells() -> list[tuple[str, str, str, str]]:
    cells = []
    direction = ""
    for line in SPEC.strip().splitlines():
        head, _, rest = line.partition(":")
        words = head.split()
        if len(words) == 2:
            direction = words[0]
        cls = words[-1]
        for state, nxt in zip(COLUMNS, rest.split(), strict=True):
            cells.append((direction, cls, state, ABBR[nxt]))
    for direction in ("INPUT", "OUTPUT"):
        for state in COLUMNS:
            cells.append((direction, "none", state, "CLOSE"))
    return cells


def _conn(fp: ModuleType, now: int = 0) -> tuple[Any, int]:
    t = fp.ConnTable(8, 4, 2)
    t.set_dest(0, 0, ip4(T1_RIP), T1_RPORT, 0, 0)
    h = t.insert(6, ip4(T1_CLIENT), T1_CPORT, ip4(T1_VIP), T1_VPORT, ip4(T1_RIP), T1_RPORT, 0, now)
    return t, h


def _packet(direction: str, cls: str) -> bytearray:
    if direction == "INPUT":
        return bytearray(_tcp(T1_CLIENT, T1_VIP, T1_CPORT, T1_VPORT, FLAGS[cls]))
    return bytearray(_tcp(T1_RIP, T1_CLIENT, T1_RPORT, T1_CPORT, FLAGS[cls]))


@pytest.mark.parametrize(("direction", "cls", "state", "expected"), _cells())
def test_transition(
    fastpath: ModuleType, direction: str, cls: str, state: str, expected: str
) -> None:
    fp = fastpath
    t, h = _conn(fp)
    t.set_state(h, getattr(fp, state), 0)
    if (direction, cls, state) == ("INPUT", "syn", "TIME_WAIT") or (
        direction,
        cls,
        state,
    ) == ("INPUT", "syn", "CLOSE"):
        # conn_reuse_mode=1: an uncontrolled conn in TIME_WAIT/CLOSE is expired for the SYN.
        assert t.process(_packet(direction, cls), 1000) == fp.NEW
        assert len(t) == 0
        return
    assert t.process(_packet(direction, cls), 1000) == fp.FORWARD
    info = t.conn_info(h)
    assert fp.STATE_NAMES[info[8]] == expected
    assert info[10] == 1000 + TIMEOUTS[expected] * 1000
    d = t.dest_buffer()
    active = expected in ACTIVE
    assert (d[fp.DEST_ACTIVE], d[fp.DEST_INACTIVE]) == ((1, 0) if active else (0, 1))
    assert bool(info[9] & fp.CONN_F_INACTIVE) is not active


def test_typical_nat_flow(fastpath: ModuleType) -> None:
    """SYN -> SYN_RECV(60s); SYN+ACK -> SYN_RECV; ACK -> ESTABLISHED(900s); FIN -> CLOSE_WAIT;
    server FIN -> TIME_WAIT(120s); the conn is active from SYN_RECV to CLOSE_WAIT."""
    fp = fastpath
    t, h = _conn(fp)
    steps = [
        ("INPUT", "syn", "SYN_RECV", 1),
        ("OUTPUT", "syn", "SYN_RECV", 1),
        ("INPUT", "ack", "ESTABLISHED", 1),
        ("INPUT", "fin", "CLOSE_WAIT", 0),
        ("OUTPUT", "fin", "TIME_WAIT", 0),
    ]
    for i, (direction, cls, state, active) in enumerate(steps):
        assert t.process(_packet(direction, cls), i * 10) == fp.FORWARD
        assert fp.STATE_NAMES[t.conn_info(h)[8]] == state
        assert t.dest_buffer()[fp.DEST_ACTIVE] == active
    assert t.conn_info(h)[10] == 40 + 120_000


def test_set_timeout_applies_to_the_next_packet(fastpath: ModuleType) -> None:
    fp = fastpath
    t, h = _conn(fp)
    t.set_timeout(6, fp.ESTABLISHED, 7200)
    t.process(_packet("INPUT", "ack"), 500)
    assert t.conn_info(h)[10] == 500 + 7_200_000
    with pytest.raises(ValueError, match="no state"):
        t.set_timeout(17, fp.ESTABLISHED, 10)
    with pytest.raises(ValueError, match="seconds"):
        t.set_timeout(6, fp.ESTABLISHED, -1)


def test_udp_is_inactive_and_rearmed(fastpath: ModuleType) -> None:
    fp = fastpath
    t = fp.ConnTable(8, 4, 2)
    t.set_dest(0, 0, 3, 53, 0, 0)
    h = t.insert(17, 1, 1000, 2, 53, 3, 53, 0, 0)
    info = t.conn_info(h)
    assert info[8] == fp.UDP
    assert fp.STATE_NAMES[fp.UDP] == "UDP"
    assert info[10] == 300_000
    t.set_timeout(17, fp.UDP, 30)
    pkt = bytearray(
        b"\x45\0\0\x1c\0\0\0\0\x40\x11\0\0" + (1).to_bytes(4, "big") + (2).to_bytes(4, "big")
    ) + bytearray(b"\x03\xe8\x00\x35\x00\x08\x00\x00")
    assert t.process(pkt, 100) == fp.FORWARD
    assert t.conn_info(h)[10] == 30_100
    assert t.dest_buffer()[fp.DEST_INACTIVE] == 1
    assert t.dest_buffer()[fp.DEST_ACTIVE] == 0
