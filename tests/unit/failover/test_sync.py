"""Connection sync messages (IPVS sync v1 layout) and the sender's diffing."""

from __future__ import annotations

import ast
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failover import sync
from failover.sync import ConnEntry, Streamer, SyncError

U32 = st.integers(0, 2**32 - 1)
U16 = st.integers(0, 2**16 - 1)
ENTRIES = st.builds(
    ConnEntry,
    protocol=st.sampled_from([6, 17]),
    caddr=U32,
    cport=U16,
    vaddr=U32,
    vport=U16,
    daddr=U32,
    dport=U16,
    state=st.integers(0, 11),
    flags=st.sampled_from([0, sync.F_INACTIVE, sync.F_TEMPLATE, sync.F_REMOVED]),
    timeout=U32,
    fwmark=U32,
)


@given(st.lists(ENTRIES, max_size=200), st.integers(0, 255), st.integers(80, 9000))
def test_encode_decode_round_trip(entries: list[ConnEntry], syncid: int, mtu: int) -> None:
    messages = sync.encode(entries, syncid, max_size=mtu)
    decoded = [e for m in messages for e in sync.decode(m, syncid)]
    assert decoded == [ConnEntry(**{**_fields(e), "flags": e.flags | sync.F_SYNC}) for e in entries]
    for m in messages:
        assert len(m) <= max(mtu, sync.HEADER.size + sync.ENTRY.size)


def _fields(e: ConnEntry) -> dict[str, int]:
    return {f: getattr(e, f) for f in e.__slots__}


def test_layout_is_ipvs_sync_v1() -> None:
    e = ConnEntry(6, 0x0A000164, 40000, 0x0A000105, 80, 0xC0A8010A, 80, 1, 0, 900)
    [m] = sync.encode([e], syncid=7)
    assert len(m) == 8 + 36
    assert struct.unpack_from("!BBHBbH", m) == (0, 7, 44, 1, 1, 0)
    assert m[8:12] == bytes([0, 6, 0, 36])  # type 0 (IPv4), TCP, version 0 / size 36
    assert struct.unpack_from("!III", m, 8 + 24) == (0x0A000164, 0x0A000105, 0xC0A8010A)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda m: m[:-1], "size field"),
        (lambda m: m[:1] + b"\x05" + m[2:], "syncid"),
        (lambda m: b"\x01" + m[1:], "version 1"),
        (lambda m: m[:8] + b"\x01" + m[9:], "type"),
        (lambda m: m[:5] + b"\x00" + m[6:], "version 1"),
    ],
)
def test_bad_messages_refused(mutate: object, match: str) -> None:
    [m] = sync.encode([ConnEntry(6, 1, 2, 3, 4, 5, 6, 1, 0, 900)], syncid=7)
    assert callable(mutate)
    with pytest.raises(SyncError, match=match):
        sync.decode(mutate(m), syncid=7)


def _conn(cport: int, state: int = 1, dport: int = 80) -> ConnEntry:
    return ConnEntry(6, 1, cport, 2, 80, 3, dport, state, 0, 900)


def test_streamer_sends_changes_refreshes_and_removals() -> None:
    s = Streamer(refresh_ms=10_000)
    tmpl = ConnEntry(6, 1, 0, 2, 80, 3, 80, 0, sync.F_TEMPLATE, 300)
    syn = _conn(1, state=3)  # SYN_RECV: not synced, as the kernel
    first = s.changes([_conn(10), syn, tmpl], now=0)
    assert first == [tmpl, _conn(10)]  # templates first
    assert s.changes([_conn(10), syn, tmpl], now=1) == []
    assert s.changes([_conn(10, state=4), tmpl], now=2) == [_conn(10, state=4)]
    assert s.changes([_conn(10, state=4), tmpl], now=10_003) == [tmpl, _conn(10, state=4)]
    gone = s.changes([], now=10_004)
    assert [(e.cport, e.removed, e.template) for e in gone] == [(10, True, False), (0, True, True)]
    s.reset()
    assert s.changes([_conn(11)], now=10_005) == [_conn(11)]


def test_failover_is_a_leaf() -> None:
    """failover imports the standard library and itself only, never director or the others."""
    root = Path(__file__).resolve().parents[3] / "failover"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top == "failover" or top in sys.stdlib_module_names, (path.name, name)
