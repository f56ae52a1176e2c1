"""Connection sync between directors, modelled on IPVS's sync daemon (protocol version 1).

A message is IPVS's v1 sync message, byte for byte, for IPv4 entries (see IPVS-SEMANTICS
section 5): an 8-byte header ``reserved 0, syncid, size, nr_conns, version 1, spare 0``
and ``nr_conns`` 36-byte entries ``type 0, protocol, ver_size, flags, state, cport, vport,
dport, fwmark, timeout, caddr, vaddr, daddr``, each on a 4-byte boundary. It travels as
the payload of an authenticated envelope (``failover.packet``) instead of multicast.

Departures from the kernel, all additive: ``REMOVED`` (a flag bit the kernel leaves
unused) tells the standby a connection or template is gone, where the kernel lets its
copy time out; and the envelope's ``SYNC_DUMP_END`` flag ends a full dump, so a standby
knows when it holds the whole table.

``Streamer`` is the sender's bookkeeping: given the active table's entries it returns
what changed since the last call (the kernel sends on state changes; here the table is
diffed), what must be refreshed before the standby's copy would time out, and removals.
Like the kernel it syncs TCP connections only in ESTABLISHED, FIN_WAIT, CLOSE,
CLOSE_WAIT and TIME_WAIT, every UDP connection, and every template, templates first.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

VERSION: Final = 1
HEADER: Final = struct.Struct("!BBHBbH")
ENTRY: Final = struct.Struct("!BBHIHHHHIIIII")
MAX_CONNS: Final = 255

F_INACTIVE: Final = 0x0100
F_TEMPLATE: Final = 0x1000
F_SYNC: Final = 0x0020
F_REMOVED: Final = 0x4000_0000
_KNOWN_FLAGS: Final = F_INACTIVE | F_TEMPLATE | F_SYNC | F_REMOVED

PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
# TCP states as the fast path numbers them (ip_vs_proto_tcp.c order).
ESTABLISHED, FIN_WAIT, TIME_WAIT, CLOSE, CLOSE_WAIT = 1, 4, 5, 6, 7
SYNCED_TCP_STATES: Final = frozenset({ESTABLISHED, FIN_WAIT, TIME_WAIT, CLOSE, CLOSE_WAIT})
MAX_STATE: Final = 11


class SyncError(ValueError):
    """A sync message that does not parse; the whole message is dropped."""


@dataclass(frozen=True, slots=True)
class ConnEntry:
    """One connection or template. Addresses are host-order ints; timeout in seconds.

    A template has ``flags & F_TEMPLATE``, ``caddr`` = the client network and cport 0.
    """

    protocol: int
    caddr: int
    cport: int
    vaddr: int
    vport: int
    daddr: int
    dport: int
    state: int
    flags: int
    timeout: int
    fwmark: int = 0

    @property
    def key(self) -> tuple[int, int, int, int, int, bool]:
        return (self.protocol, self.caddr, self.cport, self.vaddr, self.vport, self.template)

    @property
    def template(self) -> bool:
        return bool(self.flags & F_TEMPLATE)

    @property
    def removed(self) -> bool:
        return bool(self.flags & F_REMOVED)


def encode(entries: Iterable[ConnEntry], syncid: int = 0, max_size: int = 1400) -> list[bytes]:
    """Pack ``entries`` into as few messages as fit ``max_size`` bytes (<= 255 entries each)."""
    per = max(1, min(MAX_CONNS, (max_size - HEADER.size) // ENTRY.size))
    batch = list(entries)
    out = []
    for i in range(0, len(batch), per):
        chunk = batch[i : i + per]
        size = HEADER.size + ENTRY.size * len(chunk)
        parts = [HEADER.pack(0, syncid, size, len(chunk), VERSION, 0)]
        parts.extend(
            ENTRY.pack(
                0,
                e.protocol,
                ENTRY.size,  # entry version 0 in the top 4 bits
                e.flags & ~F_SYNC,
                e.state,
                e.cport,
                e.vport,
                e.dport,
                e.fwmark,
                e.timeout,
                e.caddr,
                e.vaddr,
                e.daddr,
            )
            for e in chunk
        )
        out.append(b"".join(parts))
    return out


def decode(data: bytes, syncid: int = 0) -> list[ConnEntry]:
    """The entries of one v1 message; raises SyncError as the kernel drops a message.

    A receiver with ``syncid`` != 0 drops messages of another syncid. Received entries
    carry F_SYNC, as the kernel marks sync-created connections.
    """
    if len(data) < HEADER.size:
        raise SyncError(f"sync message: need {HEADER.size} header bytes, got {len(data)}")
    reserved, sid, size, nr, version, spare = HEADER.unpack_from(data)
    if size != len(data):
        raise SyncError(f"sync message: size field {size}, got {len(data)} bytes")
    if reserved != 0 or version != VERSION or spare != 0:
        raise SyncError(f"sync message: not version 1 (reserved {reserved}, version {version})")
    if syncid and sid != syncid:
        raise SyncError(f"sync message: syncid {sid}, ours is {syncid}")
    out = []
    off = HEADER.size
    for i in range(nr):
        if off + ENTRY.size > len(data):
            raise SyncError(f"sync message: entry {i} overruns the message")
        (typ, proto, ver_size, flags, state, cport, vport, dport, fwmark, timeout, ca, va, da) = (
            ENTRY.unpack_from(data, off)
        )
        length = ver_size & 0x0FFF
        if typ != 0 or ver_size >> 12 != 0:
            raise SyncError(f"sync message: entry {i}: type {typ} / version {ver_size >> 12}")
        if length != ENTRY.size:
            # Options (SEQ_DATA, PE data) are never sent by lvsd: NAT does not shift seqs.
            raise SyncError(f"sync message: entry {i}: options are not supported ({length})")
        if proto not in (0, PROTO_TCP, PROTO_UDP) or state > MAX_STATE:
            raise SyncError(f"sync message: entry {i}: protocol {proto} state {state}")
        if flags & ~_KNOWN_FLAGS:
            flags &= _KNOWN_FLAGS
        out.append(
            ConnEntry(
                proto, ca, cport, va, vport, da, dport, state, flags | F_SYNC, timeout, fwmark
            )
        )
        off += (length + 3) & ~3
    if off != len(data):
        raise SyncError(f"sync message: {len(data) - off} bytes after the last entry")
    return out


def wanted(e: ConnEntry) -> bool:
    """Whether the active director syncs this entry in its current state (kernel's rule)."""
    return e.template or e.protocol != PROTO_TCP or e.state in SYNCED_TCP_STATES


class Streamer:
    """What to send to the standby next; pure, driven with the active table's entries.

    ``refresh_ms``: an unchanged entry is sent again after this long, so the standby's
    copy (armed with the state's timeout at each receipt) never expires while the active
    one lives. ``reset()`` forgets what was sent: the next ``changes`` is a full dump.
    """

    def __init__(self, refresh_ms: int = 60_000) -> None:
        self.refresh_ms = refresh_ms
        self._sent: dict[tuple[int, int, int, int, int, bool], tuple[tuple[int, ...], int]] = {}

    def reset(self) -> None:
        self._sent.clear()

    def __len__(self) -> int:
        return len(self._sent)

    def changes(self, entries: Iterable[ConnEntry], now: int) -> list[ConnEntry]:
        """New, changed and refresh-due entries (templates first), then removals."""
        templates: list[ConnEntry] = []
        conns: list[ConnEntry] = []
        seen = set()
        sent = self._sent
        for e in entries:
            if not wanted(e):
                continue
            key = e.key
            seen.add(key)
            what = (e.daddr, e.dport, e.state, e.flags & (F_INACTIVE | F_TEMPLATE))
            prev = sent.get(key)
            if prev is not None and prev[0] == what and now - prev[1] < self.refresh_ms:
                continue
            sent[key] = (what, now)
            (templates if e.template else conns).append(e)
        gone = [k for k in sent if k not in seen]
        removals = []
        for k in gone:
            (daddr, dport, state, flags), _ = sent.pop(k)
            proto, caddr, cport, vaddr, vport, _t = k
            removals.append(
                ConnEntry(
                    proto, caddr, cport, vaddr, vport, daddr, dport, state, flags | F_REMOVED, 0
                )
            )
        # Connections go before their templates are removed; templates before their conns.
        removals.sort(key=lambda e: e.template)
        return templates + conns + removals
