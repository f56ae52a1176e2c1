"""C and Python fast paths agree: byte-identical packets, verdicts and table state (Hypothesis)."""

from __future__ import annotations

import importlib
import os
import struct
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import director.dataplane._fastpath_py as py
from tests.unit.dataplane.fastpath_ref import ones_sum, standard_table, table_state
from tests.vectors.nat_vectors import CONNECTIONS, DESTS, VECTORS, ip4

pytestmark = pytest.mark.c_extension


@pytest.fixture(scope="module")
def c() -> ModuleType:
    if os.environ.get("DIRECTOR_NO_EXTENSIONS") == "1":
        pytest.skip("DIRECTOR_NO_EXTENSIONS=1")
    return importlib.import_module("director.dataplane._fastpath")


ADDRS = sorted({ip4(a) for conn in CONNECTIONS for a in (conn.caddr, conn.vaddr, conn.daddr)})
PORTS = sorted({p for conn in CONNECTIONS for p in (conn.cport, conn.vport, conn.dport)})
addrs = st.sampled_from(ADDRS) | st.integers(0, 0xFFFFFFFF)
ports = st.sampled_from(PORTS) | st.integers(0, 0xFFFF)


def _ip(src: int, dst: int, proto: int, payload: bytes, frag: int = 0) -> bytes:
    hdr = bytearray(
        struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(payload), 1, frag, 64, proto, 0, src, dst)
    )
    struct.pack_into("!H", hdr, 10, ~ones_sum(bytes(hdr)) & 0xFFFF)
    return bytes(hdr) + payload


@st.composite
def l4_packet(draw: st.DrawFn) -> bytes:
    src, dst = draw(addrs), draw(addrs)
    sport, dport = draw(ports), draw(ports)
    proto = draw(st.sampled_from([6, 17]))
    body = draw(st.binary(max_size=40))
    if proto == 6:
        flags = draw(st.sampled_from([0x02, 0x12, 0x10, 0x11, 0x04, 0x14, 0x06, 0x00, 0x18]))
        seg = bytearray(
            struct.pack("!HHIIBBHHH", sport, dport, 1, 2, 0x50, flags, 512, 0, 0) + body
        )
        at = 16
    else:
        seg = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(body), 0) + body)
        at = 6
    if draw(st.booleans()):
        pseudo = struct.pack("!IIBBH", src, dst, 0, proto, len(seg))
        struct.pack_into("!H", seg, at, ~ones_sum(pseudo + bytes(seg)) & 0xFFFF)
    return _ip(src, dst, proto, bytes(seg), draw(st.sampled_from([0, 0, 0, 0x2000, 0x4000, 5])))


@st.composite
def icmp_packet(draw: st.DrawFn) -> bytes:
    inner = draw(l4_packet())[: draw(st.sampled_from([28, 40, 48, 200]))]
    typ = draw(st.sampled_from([3, 11, 4, 12, 8, 0, 5]))
    msg = bytearray(struct.pack("!BBHI", typ, 4, 0, 1400) + inner)
    if draw(st.booleans()):
        struct.pack_into("!H", msg, 2, ~ones_sum(bytes(msg)) & 0xFFFF)
    return _ip(draw(addrs), draw(addrs), 1, bytes(msg))


@st.composite
def mutated_vector(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(VECTORS)).before)
    for _ in range(draw(st.integers(0, 3))):
        if raw:
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    return bytes(raw[: draw(st.integers(0, len(raw)))] if draw(st.booleans()) else raw)


@st.composite
def vnet(draw: st.DrawFn) -> bytes:
    flags = draw(st.sampled_from([0, 1]))
    return struct.pack("<BBHHHH", flags, 0, 0, 0, 20, draw(st.sampled_from([16, 6, 2])))


packets = st.one_of(l4_packet(), icmp_packet(), mutated_vector(), st.binary(max_size=64))
# Now and then a dest is deleted (not AVAILABLE) or added back, as ipvsadm -d / -a would.
availability = st.one_of(
    st.none(), st.tuples(st.sampled_from([d.slot for d in DESTS]), st.booleans())
)
ops = st.lists(
    st.tuples(
        packets,
        st.one_of(st.none(), vnet()),
        st.integers(0, 400_000),
        st.booleans(),
        availability,
    ),
    max_size=25,
)


def _step(fp: ModuleType, t: Any, raw: bytes, hdr: bytes | None, now: int) -> tuple[int, bytes]:
    buf = bytearray((hdr or b"") + raw)
    v: int = t.process_vnet(buf, now) if hdr is not None else t.process(buf, now)
    if v == fp.NEW and len(raw) >= 24:
        # Schedule to dest (now % 4) the way the daemon would, then process the packet again.
        s, d = struct.unpack_from("!II", raw, 12)
        sp, dp = struct.unpack_from("!HH", raw, 20)
        t.insert(raw[9], s, sp, d, dp, 0x0A0001FE, 8080 + now % 3, now % 4, now)
        v = t.process_vnet(buf, now) if hdr is not None else t.process(buf, now)
    return v, bytes(buf)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_random_traffic_gives_identical_results(
    c: ModuleType, steps: list[tuple[bytes, bytes | None, int, bool, tuple[int, bool] | None]]
) -> None:
    tc, tp = standard_table(c, max_conns=12), standard_table(py, max_conns=12)
    now = 0
    for raw, hdr, dt, tick, avail in steps:
        now += dt
        if avail is not None:
            tc.set_dest_available(*avail)
            tp.set_dest_available(*avail)
        assert _step(c, tc, raw, hdr, now) == _step(py, tp, raw, hdr, now)
        if tick:
            assert tc.expire(now) == tp.expire(now)
        assert table_state(c, tc) == table_state(py, tp)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 10**12))
def test_random_bytes_never_crash_and_agree(c: ModuleType, raw: bytes, now: int) -> None:
    tc, tp = standard_table(c), standard_table(py)
    for fn in ("process", "process_vnet"):
        bc, bp = bytearray(raw), bytearray(raw)
        assert getattr(tc, fn)(bc, now) == getattr(tp, fn)(bp, now)
        assert bc == bp
    assert table_state(c, tc) == table_state(py, tp)


S32 = st.integers(-(2**31), 2**31 - 1)
U32 = st.integers(0, 2**32 - 1)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.booleans(), U32, st.integers(-200, 200)), max_size=6),
    st.lists(st.tuples(l4_packet(), U32, U32, st.booleans()), min_size=1, max_size=8),
)
def test_sequence_offsets_agree(
    c: ModuleType,
    updates: list[tuple[bool, int, int]],
    packets: list[tuple[bytes, int, int, bool]],
) -> None:
    """seq_update on a connection, then its packets (any seq/ack, with or without the vnet
    partial sum): identical offsets, bytes and verdicts."""
    tc, tp = standard_table(c), standard_table(py)
    for t in (tc, tp):
        for inbound, seq, diff in updates:
            t.seq_update(0, inbound, seq, diff)
    assert tc.seq_state(0) == tp.seq_state(0)
    t1 = CONNECTIONS[0]
    for raw, seq, ack, vnet in packets:
        if raw[9] != 6 or len(raw) < 40:
            continue
        pkt = bytearray(raw)
        inbound = bool(seq & 1)
        src, dst = (ip4(t1.caddr), ip4(t1.vaddr)) if inbound else (ip4(t1.daddr), ip4(t1.caddr))
        sport, dport = (t1.cport, t1.vport) if inbound else (t1.dport, t1.cport)
        struct.pack_into("!IIHHII", pkt, 12, src, dst, sport, dport, seq, ack)
        hdr = bytes(10) if vnet else None
        assert _step(c, tc, bytes(pkt), hdr, 5) == _step(py, tp, bytes(pkt), hdr, 5)
        assert tc.seq_fix(0, inbound, seq, ack) == tp.seq_fix(0, inbound, seq, ack)
    assert table_state(c, tc) == table_state(py, tp)
