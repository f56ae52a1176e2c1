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

``Streamer`` decides what the active director sends, as the kernel does from its packet
path rather than by scanning: each tick it takes the table's sync log (inserts, TCP state
changes, removals, recorded by the fast path at the event), keeps per key the last record
that the kernel's rule syncs (``wanted``), and adds a bounded slice of a cursor walk over
the table that re-sends every live entry once per ``refresh_ms`` (the standby arms each
copy with its state's timeout). A full dump (the standby asked, the director became
active, or the log overflowed) is a larger slice per tick of a walk that ends with
``SYNC_DUMP_END``. A tick reads the log records it drains plus one slice (and its
connections' templates): never the whole table; no state per connection is kept.
Like the kernel it syncs TCP connections only in ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT
and TIME_WAIT, every UDP connection, and every template; a removal only of an entry whose
last state was one of those. Within a tick templates go first, then connections, then
connection removals, then template removals; a walk sends a connection's template with it.

Every entry goes out with its firewall mark, as the kernel's ``cp->fwmark``: the mark of the
service that its destination belongs to (0 for an address service), found through the dest
slot that log records and walk rows carry, by the ``fwmark_of`` callable the Streamer is
given; this package knows nothing of services.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol

VERSION: Final = 1
HEADER: Final = struct.Struct("!BBHBbH")
ENTRY: Final = struct.Struct("!BBHIHHHHIIIII")
MAX_CONNS: Final = 255

F_INACTIVE: Final = 0x0100
F_OUT_SEQ: Final = 0x0200
F_IN_SEQ: Final = 0x0400
F_SEQ_MASK: Final = F_OUT_SEQ | F_IN_SEQ
F_TEMPLATE: Final = 0x1000
F_SYNC: Final = 0x0020
F_REMOVED: Final = 0x4000_0000
# The forwarding method (MASQ 0, TUNNEL 2, DROUTE 3) and NOOUTPUT, as IPVS sync carries them.
F_FWD_MASK: Final = 0x0007
F_NOOUTPUT: Final = 0x0080
_KNOWN_FLAGS: Final = (
    F_INACTIVE | F_SEQ_MASK | F_TEMPLATE | F_SYNC | F_REMOVED | F_FWD_MASK | F_NOOUTPUT
)
# The v1 entry option IPVS_OPT_SEQ_DATA: type, length, then struct ip_vs_sync_conn_options
# (in_seq and out_seq, each init_seq, delta, previous_delta as 32-bit network-order words).
OPT_SEQ_DATA: Final = 1
SEQ_OPTION: Final = struct.Struct("!BBIIIIII")

PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
# TCP states as the fast path numbers them (ip_vs_proto_tcp.c order).
ESTABLISHED, FIN_WAIT, TIME_WAIT, CLOSE, CLOSE_WAIT, LISTEN = 1, 4, 5, 6, 7, 9
# LISTEN beyond the kernel's set: only the FTP helper's expected data connections are in
# it, and a takeover between the 227 reply and the client's data SYN needs them.
SYNCED_TCP_STATES: Final = frozenset({ESTABLISHED, FIN_WAIT, TIME_WAIT, CLOSE, CLOSE_WAIT, LISTEN})
MAX_STATE: Final = 11


class SyncError(ValueError):
    """A sync message that does not parse; the whole message is dropped."""


class ConnEntry(NamedTuple):
    """One connection or template. Addresses are host-order ints; timeout in seconds.

    A template has ``flags & F_TEMPLATE``, ``caddr`` = the client network and cport 0.
    A NamedTuple rather than a frozen dataclass: a dump tick builds thousands, and the
    dataclass's frozen ``__init__`` cost four times as much per entry.
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
    # (in_init, in_delta, in_prev, out_init, out_delta, out_prev), deltas signed: the FTP
    # helper's sequence offsets, sent as SEQ_DATA when flags has F_SEQ_MASK bits.
    seq: tuple[int, int, int, int, int, int] | None = None

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
    out = []
    parts: list[bytes] = []
    size = HEADER.size
    for e in entries:
        packed = _pack_entry(e)
        if parts and (size + len(packed) > max_size or len(parts) == MAX_CONNS):
            out.append(HEADER.pack(0, syncid, size, len(parts), VERSION, 0) + b"".join(parts))
            parts, size = [], HEADER.size
        parts.append(packed)
        size += len(packed)
    if parts:
        out.append(HEADER.pack(0, syncid, size, len(parts), VERSION, 0) + b"".join(parts))
    return out


def _pack_entry(e: ConnEntry) -> bytes:
    seq = e.seq if e.flags & F_SEQ_MASK else None
    flags = e.flags & ~F_SYNC if seq is not None else e.flags & ~(F_SYNC | F_SEQ_MASK)
    length = ENTRY.size + (SEQ_OPTION.size if seq is not None else 0)
    head = ENTRY.pack(
        0,
        e.protocol,
        length,  # entry version 0 in the top 4 bits
        flags,
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
    if seq is None:
        return head
    words = [v & 0xFFFFFFFF for v in seq]
    option = SEQ_OPTION.pack(OPT_SEQ_DATA, SEQ_OPTION.size - 2, *words)
    return head + option + bytes(-length % 4)


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
        seq = None
        if length == ENTRY.size + SEQ_OPTION.size and off + length <= len(data):
            opt = SEQ_OPTION.unpack_from(data, off + ENTRY.size)
            if opt[0] != OPT_SEQ_DATA or opt[1] != SEQ_OPTION.size - 2:
                raise SyncError(f"sync message: entry {i}: option {opt[0]} length {opt[1]}")
            seq = _seq_words(opt[2:])
        elif length != ENTRY.size:
            # SEQ_DATA is the only option lvsd knows (no persistence engine data).
            raise SyncError(f"sync message: entry {i}: options are not supported ({length})")
        if proto not in (0, PROTO_TCP, PROTO_UDP) or state > MAX_STATE:
            raise SyncError(f"sync message: entry {i}: protocol {proto} state {state}")
        if flags & ~_KNOWN_FLAGS:
            flags &= _KNOWN_FLAGS
        if seq is None:
            flags &= ~F_SEQ_MASK
        out.append(
            ConnEntry(
                proto, ca, cport, va, vport, da, dport, state, flags | F_SYNC, timeout, fwmark,
                seq,
            )
        )  # fmt: skip
        off += (length + 3) & ~3
    if off != len(data):
        raise SyncError(f"sync message: {len(data) - off} bytes after the last entry")
    return out


def _seq_words(w: tuple[int, ...]) -> tuple[int, int, int, int, int, int]:
    """SEQ_DATA's six words with the deltas as signed 32-bit values."""

    def signed(v: int) -> int:
        return v - (1 << 32) if v & 0x8000_0000 else v

    return (w[0], signed(w[1]), signed(w[2]), w[3], signed(w[4]), signed(w[5]))


def wanted(e: ConnEntry) -> bool:
    """Whether the active director syncs this entry in its current state (kernel's rule)."""
    return e.template or e.protocol != PROTO_TCP or e.state in SYNCED_TCP_STATES


class SyncSource(Protocol):
    """What ``Streamer`` reads: the fast path's ``ConnTable`` (see its docstrings).

    A ``sync_changes`` record is ``(proto, caddr, cport, vaddr, vport, daddr, dport, dest,
    state, flags, removed)``; an ``entries_from`` row is ``(handle, *conn_info(handle))``,
    with the dest slot after dport too.
    """

    def __len__(self) -> int: ...

    def sync_changes(self, limit: int) -> tuple[list[tuple[int, ...]], int]: ...

    def entries_from(self, start: int, limit: int) -> tuple[list[tuple[int, ...]], int]: ...

    def conn_info(self, handle: int) -> tuple[int, ...]: ...

    def lookup(self, proto: int, caddr: int, cport: int, vaddr: int, vport: int) -> int: ...

    def seq_state(self, handle: int) -> tuple[int, int, int, int, int, int]: ...


_ROW_CTL = 13  # in an entries_from row: (handle, *conn_info)
_KEPT_FLAGS: Final = F_INACTIVE | F_TEMPLATE | F_SEQ_MASK | F_FWD_MASK | F_NOOUTPUT


@dataclass(frozen=True, slots=True)
class Tick:
    """One tick's output: what to send, in order, and how much of the table was read.

    ``dump_end``: the last message of this tick ends a full dump (send one even when
    ``entries`` is empty). ``records`` and ``rows``: log records and walk rows read.
    ``lost``: log records lost to overflow since the previous tick (a dump restarts).
    """

    entries: list[ConnEntry]
    dump_end: bool
    records: int
    rows: int
    lost: int


FwmarkOf = Callable[[int], int]
"""A dest slot -> the firewall mark of its service, 0 for an address service."""


def no_fwmark(_slot: int) -> int:
    return 0


def _from_record(r: tuple[int, ...], fwmark_of: FwmarkOf) -> ConnEntry:
    proto, caddr, cport, vaddr, vport, daddr, dport, dest, state, flags, removed = r
    return ConnEntry(
        proto,
        caddr,
        cport,
        vaddr,
        vport,
        daddr,
        dport,
        state,
        (flags & _KEPT_FLAGS) | (F_REMOVED if removed else 0),
        0,
        fwmark_of(dest),
    )


def _from_row(r: tuple[int, ...], fwmark_of: FwmarkOf) -> ConnEntry:
    _h, proto, caddr, cport, vaddr, vport, daddr, dport, dest, state, flags = r[:11]
    return ConnEntry(
        proto, caddr, cport, vaddr, vport, daddr, dport, state, flags & _KEPT_FLAGS, 0,
        fwmark_of(dest),
    )  # fmt: skip


REFRESH_MS: Final = 30_000
"""Every live entry is re-sent at least this often: half the shortest timeout a synced
entry can sit in while its connection still carries packets (CLOSE_WAIT, 60 s), so a
half-closed stream's copy on the standby never lapses between refreshes."""


class Streamer:
    """What to send to the standby each tick; reads the active table, keeps no per-conn state.

    ``refresh_ms``: every live entry is sent again at least about this often, so the
    standby's copy (armed with the state's timeout at each receipt) never expires while
    the active one lives; it must stay well below the shortest synced timeout.
    ``dump_slice``: rows a dump walks per tick (and the cap of a refresh slice).
    ``change_limit``: log records taken per tick; the rest wait in the log.
    ``fwmark_of``: the mark each entry goes out with, from its dest slot (see the module
    docstring), asked when the tick reads the entry; a removal carries one too, though the
    standby finds what to remove by key alone. Event-loop thread only.
    """

    def __init__(
        self,
        refresh_ms: int = REFRESH_MS,
        dump_slice: int = 4096,
        change_limit: int = 16_384,
        fwmark_of: FwmarkOf = no_fwmark,
    ) -> None:
        if refresh_ms <= 0 or dump_slice <= 0 or change_limit <= 0:
            raise ValueError(
                f"Streamer: need refresh_ms, dump_slice, change_limit > 0, got "
                f"{refresh_ms}, {dump_slice}, {change_limit}"
            )
        self.refresh_ms = refresh_ms
        self.dump_slice = dump_slice
        self.change_limit = change_limit
        self.fwmark_of = fwmark_of
        self._refresh_at = 0
        self._credit = 0
        self._last_ms: int | None = None
        self._dumping = False
        self._dump_at = 0
        self._dump_from = 0
        self._wrapped = False

    @property
    def dumping(self) -> bool:
        return self._dumping

    def start_dump(self) -> None:
        """Walk the whole table from here on; the walk's last tick has ``dump_end``.

        A request during a dump changes nothing: the walk in progress, with the log of
        what changed since it began, covers every live entry. (A standby repeats its
        request every two keepalives until the dump ends; moving the end each time would
        never end a dump that takes longer than that.)
        """
        if not self._dumping:
            self._dumping = True
            self._dump_at = self._dump_from = 0
            self._wrapped = False

    def _resend_all(self) -> None:
        """The log lost changes: walk a whole pass from here, whatever the walk was doing."""
        if self._dumping:
            self._dump_from = self._dump_at
            self._wrapped = False
        else:
            self.start_dump()

    def stop(self) -> None:
        """Forget any walk in progress (the director stopped being the active one)."""
        self._dumping = False
        self._refresh_at = 0
        self._credit = 0
        self._last_ms = None

    def tick(self, table: SyncSource, now: int) -> Tick:
        """Take the log and one walk slice from ``table``; ``now`` in monotonic ms."""
        records, lost = table.sync_changes(self.change_limit)
        if lost:
            self._resend_all()
        out: dict[tuple[int, int, int, int, int, bool], ConnEntry] = {}
        fwmark_of = self.fwmark_of
        for r in records:
            e = _from_record(r, fwmark_of)
            if wanted(e):
                # Wanted records only: a connection reusing a synced tuple (NONE) must not
                # hide the removal of the old one.
                out.pop(e.key, None)
                out[e.key] = e
        dump_end = False
        if self._dumping:
            rows = self._dump_step(table)
            dump_end = not self._dumping
        else:
            rows = self._refresh_step(table, now)
        self._last_ms = now
        ctls: set[int] = set()
        for row in rows:
            e = _from_row(row, fwmark_of)
            if wanted(e):
                out[e.key] = e
            ctl = row[_ROW_CTL]
            if ctl >= 0 and ctl not in ctls:
                # The kernel syncs a connection's controller after it; here first, so the
                # standby links the connection to its template.
                ctls.add(ctl)
                t = _from_row((ctl, *table.conn_info(ctl)), fwmark_of)
                if wanted(t):
                    out.setdefault(t.key, t)
        for key, e in out.items():
            if e.flags & F_SEQ_MASK and not e.removed and not e.template:
                h = table.lookup(e.protocol, e.caddr, e.cport, e.vaddr, e.vport)
                if h >= 0:
                    out[key] = e._replace(seq=table.seq_state(h))
        return Tick(_ordered(out.values()), dump_end, len(records), len(rows) + len(ctls), lost)

    def _refresh_step(self, table: SyncSource, now: int) -> list[tuple[int, ...]]:
        elapsed = 0 if self._last_ms is None else max(0, now - self._last_ms)
        # len(table) rows per refresh_ms, carried over between ticks in integer entry-ms.
        self._credit += len(table) * min(elapsed, self.refresh_ms)
        n = min(self.dump_slice, self._credit // self.refresh_ms)
        self._credit = min(self._credit - n * self.refresh_ms, self.refresh_ms)
        if n <= 0:
            return []
        rows, nxt = table.entries_from(self._refresh_at, n)
        self._refresh_at = max(nxt, 0)
        return rows

    def _dump_step(self, table: SyncSource) -> list[tuple[int, ...]]:
        rows, nxt = table.entries_from(self._dump_at, self.dump_slice)
        if self._wrapped and (nxt < 0 or nxt >= self._dump_from):
            self._dumping = False
        elif nxt < 0:
            if self._dump_from == 0:
                self._dumping = False
            else:
                self._wrapped = True
                self._dump_at = 0
        else:
            self._dump_at = nxt
        return rows


def _ordered(entries: Iterable[ConnEntry]) -> list[ConnEntry]:
    """Templates, connections, connection removals, template removals (stable within each)."""
    return sorted(entries, key=_rank)


def _rank(e: ConnEntry) -> int:
    if e.removed:
        return 3 if e.template else 2
    return 0 if e.template else 1
