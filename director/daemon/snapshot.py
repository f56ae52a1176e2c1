"""Snapshots of the connection table in ``state_dir``, and ``lvsd snapshot``.

While serving, the daemon copies its connections and templates out of the fast path
(``ConnTable.dump_from``: fixed 80-byte records, a slice of entries per call, the event
loop running between slices) and a worker thread writes them to
``state_dir/conns-<id>-<created ms>.snap``: a temporary file, fsync, rename, fsync of the
directory, so a snapshot is either whole or absent. ``<id>`` names the daemon (a hash of
its control socket's path, which only one daemon can hold), so two daemons sharing a
directory never read each other's files. At start-up (``restore_latest``) the newest
snapshot is read and its entries that have time left go back into the table.

The file: a 32-byte header (magic ``LVSDSNAP``, format version, record size, metadata
length, entry count, creation time in Unix ms, CRC-32 of everything else), then the
metadata (JSON: the destinations the records' dest slots stand for, by service and
address), then the records. A file with another magic or version, a wrong size or a
checksum that does not match is refused whole.

Retention: before each write the files beyond ``snapshot_keep`` (counting the new one)
or older than ``snapshot_max_age`` go; then the oldest go while the new file would not
fit ``snapshot_budget`` or the file system's free space (less a reserve). If it still
does not fit, nothing more is deleted and this snapshot is skipped and counted: the
daemon keeps serving either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import struct
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from director.config import DirectorConfig, load_config
from director.dataplane import fastpath
from director.errors import DirectorError
from director.ipvs.service import IPVS, format_addr
from director.stats import SnapshotStats

log = logging.getLogger(__name__)

MAGIC = b"LVSDSNAP"
VERSION = 1
# magic, version, record size, metadata length, entries, created (Unix ms); then CRC-32.
HEAD = struct.Struct("<8sHHIIq")
CRC = struct.Struct("<I")
HEADER_SIZE = HEAD.size + CRC.size
# ConnTable.dump_from's record (fastpath/snap_methods.h).
RECORD = struct.Struct("<qQiiiIIIIIiiIiiHHHHBB2x")
SUFFIX = ".snap"
# The event loop's time per copy (the slice grows or shrinks to it), and the largest
# slice (about 4 ms of the C table: 65,536 entries).
SLICE_S = 0.004
SLICE_ENTRIES = 65536
PAUSE_S = 0.0005
# Free space left on the file system after a write: at most 1 MiB, at most 5% of it.
RESERVE_BYTES = 1 << 20
RESERVE_FRACTION = 0.05

_TEMPLATE = fastpath.CONN_F_TEMPLATE
_APP = fastpath.CONN_F_APP
_SEQ = fastpath.CONN_F_IN_SEQ | fastpath.CONN_F_OUT_SEQ
_TCP = 6
_NONE = 0


class SnapshotError(DirectorError):
    """A snapshot file that cannot be used; the message says why."""


def ident(control_socket: Path) -> str:
    """The name part that keeps one daemon's snapshots apart from another's."""
    return f"{zlib.crc32(str(control_socket).encode()):08x}"


def file_name(who: str, created_ms: int) -> str:
    return f"conns-{who}-{created_ms}{SUFFIX}"


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    path: Path
    created_ms: int
    size: int


def list_files(state_dir: Path, who: str) -> list[SnapshotFile]:
    """This daemon's snapshots in ``state_dir``, newest first ([] if there is none)."""
    prefix = f"conns-{who}-"
    out = []
    try:
        names = os.listdir(state_dir)
    except OSError:
        return []
    for name in names:
        if not (name.startswith(prefix) and name.endswith(SUFFIX)):
            continue
        stamp = name[len(prefix) : -len(SUFFIX)]
        if not stamp.isdigit():
            continue
        with contextlib.suppress(OSError):
            st = os.stat(state_dir / name)
            # What it takes on disk (whole blocks): what deleting it gives back.
            size = max(st.st_size, st.st_blocks * 512)
            out.append(SnapshotFile(state_dir / name, int(stamp), size))
    out.sort(key=lambda f: f.created_ms, reverse=True)
    return out


# --- writing ---------------------------------------------------------------------------


def dest_map(ipvs: IPVS) -> list[list[int]]:
    """[slot, proto, vaddr, vport, fwmark, daddr, dport] of every linked destination: what
    a record's dest slot means in a table built from another configuration or process."""
    return [[d.slot, *svc.key, d.addr, d.port] for svc in ipvs.services.values() for d in svc.dests]


def encode_header(meta: bytes, records: Sequence[bytes], count: int, created_ms: int) -> bytes:
    head = HEAD.pack(MAGIC, VERSION, RECORD.size, len(meta), count, created_ms)
    crc = zlib.crc32(meta, zlib.crc32(head))
    for chunk in records:
        crc = zlib.crc32(chunk, crc)
    return head + CRC.pack(crc)


@dataclass(frozen=True, slots=True)
class Capture:
    """One snapshot's content, copied on the event loop; written by a worker thread."""

    created_ms: int
    meta: bytes
    chunks: list[bytes]
    count: int
    seconds: float  # time spent copying, on the loop (pauses excluded)

    @property
    def size(self) -> int:
        return HEADER_SIZE + len(self.meta) + self.count * RECORD.size


async def capture(table: fastpath.ConnTable, ipvs: IPVS, now_ms: int) -> Capture:
    """Copy the table out in slices of ``SLICE_ENTRIES``; the loop runs between slices.
    An entry that lives throughout the walk is copied exactly once."""
    created = time.time_ns() // 1_000_000
    t0 = time.perf_counter()
    meta = json.dumps({"dests": dest_map(ipvs), "monotonic_ms": now_ms}).encode()
    busy = time.perf_counter() - t0
    chunks: list[bytes] = []
    start = 0
    # Slices of about SLICE_S: 65,536 entries of the C table, a few thousand of the twin.
    limit = 4096
    while start >= 0:
        t0 = time.perf_counter()
        data, start = table.dump_from(start, limit, now_ms)
        took = time.perf_counter() - t0
        busy += took
        chunks.append(data)
        if took < SLICE_S / 2 and limit < SLICE_ENTRIES:
            limit *= 2
        elif took > SLICE_S and limit > 256:
            limit //= 2
        if start >= 0:
            await asyncio.sleep(PAUSE_S)
    count = sum(len(c) for c in chunks) // RECORD.size
    return Capture(created, meta, chunks, count, busy)


def plan_prune(
    files: Sequence[SnapshotFile],
    *,
    keep: int,
    max_age_s: int,
    budget: int,
    incoming: int,
    free: int,
    reserve: int,
    now_ms: int,
) -> tuple[list[SnapshotFile], bool]:
    """Which of ``files`` (newest first) to delete before writing ``incoming`` bytes, and
    whether the new file then fits. Files past ``keep - 1`` or ``max_age_s`` always go;
    the oldest others go only if that makes room, within ``budget`` and ``free - reserve``."""
    doomed: list[SnapshotFile] = []
    kept: list[SnapshotFile] = []
    for i, f in enumerate(files):
        if i >= keep - 1 or now_ms - f.created_ms > max_age_s * 1000:
            doomed.append(f)
        else:
            kept.append(f)
    freed = sum(f.size for f in doomed)
    room = free + freed - reserve
    used = sum(f.size for f in kept)
    extra: list[SnapshotFile] = []
    while kept and (used + incoming > budget or incoming > room):
        f = kept.pop()
        extra.append(f)
        used -= f.size
        room += f.size
    fits = used + incoming <= budget and incoming <= room
    return doomed + (extra if fits else []), fits


@dataclass(frozen=True, slots=True)
class Written:
    path: Path | None  # None: skipped
    reason: str  # "" when written
    pruned: tuple[SnapshotFile, ...]
    seconds: float


def write(state_dir: Path, who: str, cap: Capture, cfg: DirectorConfig) -> Written:
    """Prune, then write ``cap`` atomically (worker thread). OSError propagates, the
    temporary file removed."""
    t0 = time.perf_counter()
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in os.listdir(state_dir):  # what a crash mid-write left
        if name.startswith(f".conns-{who}-") and name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                os.unlink(state_dir / name)
    st = os.statvfs(state_dir)
    free = st.f_bavail * st.f_frsize
    reserve = min(RESERVE_BYTES, int(st.f_blocks * st.f_frsize * RESERVE_FRACTION))
    # A file takes whole blocks.
    block = max(st.f_frsize, 1)
    incoming = -(-cap.size // block) * block
    doomed, fits = plan_prune(
        list_files(state_dir, who),
        keep=cfg.snapshot_keep,
        max_age_s=cfg.snapshot_max_age,
        budget=cfg.snapshot_budget,
        incoming=incoming,
        free=free,
        reserve=reserve,
        now_ms=cap.created_ms,
    )
    pruned = []
    for f in doomed:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f.path)
            pruned.append(f)
    if not fits:
        reason = "over_budget" if incoming > cfg.snapshot_budget else "no_space"
        return Written(None, reason, tuple(pruned), time.perf_counter() - t0)
    final = state_dir / file_name(who, cap.created_ms)
    tmp = state_dir / f".conns-{who}-{cap.created_ms}.tmp"
    try:
        # Client addresses: for root's eyes only, whatever the umask.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(encode_header(cap.meta, cap.chunks, cap.count, cap.created_ms))
            out.write(cap.meta)
            for chunk in cap.chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.rename(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return Written(final, "", tuple(pruned), time.perf_counter() - t0)


class SnapshotWriter:
    """Writes a snapshot every ``snapshot_interval`` seconds while the daemon serves.

    Event-loop side: ``run()`` copies the table (``capture``) and hands the file work to
    a worker thread; a write still running when the next is due delays it. A failure is
    logged (the first of each kind, then every 2**k-th) and counted, never raised.
    """

    def __init__(
        self,
        table: fastpath.ConnTable,
        ipvs: Callable[[], IPVS],
        cfg: Callable[[], DirectorConfig],
        clock: Callable[[], int],
    ) -> None:
        self._table = table
        self._ipvs = ipvs
        self._cfg = cfg
        self._clock = clock
        # Read at start only, as the daemon reads them (a reload's new value waits for a
        # restart): the retention settings follow reloads, where the files go does not.
        self.state_dir = cfg().state_dir
        self.who = ident(cfg().control_socket)
        self.failures: Counter[str] = Counter()
        self.written = 0
        self.pruned_files = 0
        self.pruned_bytes = 0
        self.last_created_ms = 0
        self.last_bytes = 0
        self.last_entries = 0
        self.last_write_s = 0.0
        self.last_capture_s = 0.0

    async def run(self) -> None:
        while True:
            interval = self._cfg().snapshot_interval
            await asyncio.sleep(interval or 1.0)
            if interval:
                await self.write_once()

    async def write_once(self) -> bool:
        """One snapshot now; True if it was written."""
        cfg = self._cfg()
        cap = await capture(self._table, self._ipvs(), self._clock())
        self.last_capture_s = cap.seconds
        try:
            done = await asyncio.to_thread(write, self.state_dir, self.who, cap, cfg)
        except OSError as e:
            self._failed("error", f"{self.state_dir}: {e.strerror or e}")
            return False
        self.pruned_files += len(done.pruned)
        self.pruned_bytes += sum(f.size for f in done.pruned)
        if done.path is None:
            self._failed(
                done.reason,
                f"{self.state_dir}: no room for {cap.size} bytes "
                f"({'snapshot_budget' if done.reason == 'over_budget' else 'free space'})",
            )
            return False
        self.written += 1
        self.last_created_ms = cap.created_ms
        self.last_bytes = cap.size
        self.last_entries = cap.count
        self.last_write_s = done.seconds
        return True

    def _failed(self, reason: str, detail: str) -> None:
        self.failures[reason] += 1
        n = sum(self.failures.values())
        if n & (n - 1) == 0:
            log.warning("snapshot not written: %s (%d failures so far)", detail, n)

    def statistics(self) -> SnapshotStats:
        return SnapshotStats(
            written=self.written,
            failures=dict(self.failures),
            pruned_files=self.pruned_files,
            pruned_bytes=self.pruned_bytes,
            last_created_ms=self.last_created_ms,
            last_bytes=self.last_bytes,
            last_entries=self.last_entries,
            last_write_s=self.last_write_s,
            last_capture_s=self.last_capture_s,
        )


# --- reading and restoring -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    path: Path
    created_ms: int
    count: int
    meta: dict[str, Any]
    records: memoryview


def read(path: Path) -> Snapshot:
    """The snapshot in ``path``, checked whole; SnapshotError says what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SnapshotError(f"snapshot {path}: {e.strerror or e}") from None
    return parse(data, path)


def encode(cap: Capture) -> bytes:
    """``cap`` as the bytes of a snapshot file (what a takeover sends)."""
    head = encode_header(cap.meta, cap.chunks, cap.count, cap.created_ms)
    return b"".join([head, cap.meta, *cap.chunks])


def parse(data: bytes, path: Path) -> Snapshot:
    """The snapshot in ``data`` (named ``path`` in errors), checked whole."""
    if len(data) < HEADER_SIZE or not data.startswith(MAGIC):
        raise SnapshotError(f"snapshot {path}: not an lvsd snapshot (no {MAGIC.decode()} header)")
    _, version, rsize, meta_len, count, created = HEAD.unpack_from(data)
    if version != VERSION:
        raise SnapshotError(
            f"snapshot {path}: format version {version}, this lvsd reads version {VERSION}"
        )
    if rsize != RECORD.size:
        raise SnapshotError(f"snapshot {path}: record size {rsize}, expected {RECORD.size}")
    want = HEADER_SIZE + meta_len + count * rsize
    if len(data) != want:
        raise SnapshotError(f"snapshot {path}: {len(data)} bytes, the header says {want}")
    (crc,) = CRC.unpack_from(data, HEAD.size)
    view = memoryview(data)
    if zlib.crc32(view[HEADER_SIZE:], zlib.crc32(view[: HEAD.size])) != crc:
        raise SnapshotError(f"snapshot {path}: checksum mismatch (the file is damaged)")
    try:
        meta = json.loads(view[HEADER_SIZE : HEADER_SIZE + meta_len].tobytes())
        if not isinstance(meta, dict) or not isinstance(meta.get("dests"), list):
            raise ValueError("no dests")
    except ValueError as e:
        raise SnapshotError(f"snapshot {path}: bad metadata: {e}") from None
    return Snapshot(path, created, count, meta, view[HEADER_SIZE + meta_len :])


@dataclass(frozen=True, slots=True)
class Restored:
    restored: int
    expired: int
    unmatched: int
    age_ms: int


def restore(
    table: fastpath.ConnTable, ipvs: IPVS, snap: Snapshot, now: int, wall_ms: int
) -> Restored:
    """Put ``snap``'s entries back into ``table``, each with the time it had left less the
    snapshot's age. Entries without time left, or whose destination this configuration
    does not have, are skipped and counted. Creation order is kept, so a template (or an
    FTP control connection) is back before the entries it controls."""
    age = max(0, wall_ms - snap.created_ms)
    slots: dict[int, int] = {}
    for slot, proto, vaddr, vport, fwmark, daddr, dport in snap.meta["dests"]:
        svc = ipvs.services.get((proto, vaddr, vport, fwmark))
        dest = None if svc is None else svc.find_dest(daddr, dport)
        if dest is not None:
            slots[slot] = dest.slot
    recs = sorted(RECORD.iter_unpack(snap.records), key=lambda r: r[1])
    handles: dict[int, int] = {}
    restored = expired = unmatched = 0
    for r in recs:
        (left, _seq, old, ctl, dest, caddr, vaddr, daddr, timeout, in_init, in_delta, in_prev,
         out_init, out_delta, out_prev, cport, vport, dport, flags, proto, state) = r  # fmt: skip
        left -= age
        if left <= 0:
            expired += 1
            continue
        slot = slots.get(dest)
        if slot is None:
            unmatched += 1
            continue
        # Inserted as if made (timeout - left) ms ago: its deadline is now + left.
        then = now - max(0, timeout - left)
        if flags & _TEMPLATE:
            if vport == 0xFFFF and dport == 0xFFFF:  # invalidated: never found again
                continue
            h = table.insert_template(proto, caddr, vaddr, vport, slot, timeout // 1000, then)
        else:
            h = table.insert(
                proto, caddr, cport, vaddr, vport, daddr, dport, slot, then,
                handles.get(ctl, -1) if ctl >= 0 else -1,
            )  # fmt: skip
            if h >= 0 and proto == _TCP and state != _NONE:
                table.set_state(h, state, then)
            if h >= 0 and flags & _APP:
                table.bind_app(h)
            if h >= 0 and flags & _SEQ:
                table.set_seq_state(h, in_init, in_delta, in_prev, out_init, out_delta, out_prev)
        if h < 0:
            unmatched += 1
            continue
        handles[old] = h
        restored += 1
    return Restored(restored, expired, unmatched, age)


def restore_latest(
    table: fastpath.ConnTable, ipvs: IPVS, cfg: DirectorConfig, now: int
) -> Restored | None:
    """Restore the newest snapshot of this daemon in ``state_dir``, logging the outcome;
    None if there is none or it was refused (the table stays empty)."""
    files = list_files(cfg.state_dir, ident(cfg.control_socket))
    if not files:
        return None
    try:
        snap = read(files[0].path)
    except SnapshotError as e:
        log.error("%s; starting with an empty connection table", e)
        return None
    done = restore(table, ipvs, snap, now, time.time_ns() // 1_000_000)
    log.info(
        "restored %d connections and templates from %s (%.1f s old; %d expired, "
        "%d without their destination)",
        done.restored,
        snap.path,
        done.age_ms / 1000,
        done.expired,
        done.unmatched,
    )
    return done


# --- lvsd snapshot ---------------------------------------------------------------------


def add_command(sub: Any) -> None:
    p = sub.add_parser("snapshot", help="list, show or prune the connection table snapshots")
    p.add_argument("-c", "--config", default="/etc/lvs.cf", help="the lvs.cf of the daemon")
    p.add_argument("action", choices=("list", "show", "prune"))
    p.add_argument("file", nargs="?", help="show: the snapshot file (default: the newest)")
    p.add_argument("--limit", type=int, default=20, help="show: entries to print (default 20)")
    p.set_defaults(func=snapshot_command)


def snapshot_command(args: argparse.Namespace) -> int:

    try:
        cfg = load_config(args.config)
        who = ident(cfg.control_socket)
        files = list_files(cfg.state_dir, who)
        now = time.time_ns() // 1_000_000
        if args.action == "list":
            print(f"{len(files)} snapshots in {cfg.state_dir}, {sum(f.size for f in files)} bytes")
            for f in files:
                print(
                    f"{f.path.name}  {f.size:>12} bytes  {(now - f.created_ms) / 1000:9.1f} s old"
                )
        elif args.action == "show":
            path = Path(args.file) if args.file else (files[0].path if files else None)
            if path is None:
                raise SnapshotError(f"no snapshot in {cfg.state_dir}")
            _show(read(path), now, args.limit)
        else:
            doomed, _ = plan_prune(
                files,
                keep=cfg.snapshot_keep + 1,  # nothing incoming: keep snapshot_keep
                max_age_s=cfg.snapshot_max_age,
                budget=cfg.snapshot_budget,
                incoming=0,
                free=1 << 62,
                reserve=0,
                now_ms=now,
            )
            for f in doomed:
                f.path.unlink(missing_ok=True)
            print(f"pruned {len(doomed)} snapshots, {sum(f.size for f in doomed)} bytes")
    except (DirectorError, OSError) as e:
        print(f"lvsd: {e}", file=sys.stderr)
        return 1
    return 0


def _show(snap: Snapshot, now_ms: int, limit: int) -> None:
    age = (now_ms - snap.created_ms) / 1000
    print(f"{snap.path}: format {VERSION}, {snap.count} entries, {age:.1f} s old")
    print(f"{len(snap.meta['dests'])} destinations")
    for i, r in enumerate(RECORD.iter_unpack(snap.records)):
        if i >= limit:
            print(f"... {snap.count - limit} more")
            break
        left, _, _, _, _, caddr, vaddr, daddr, _, *_, cport, vport, dport, flags, proto, state = r
        kind = "template" if flags & _TEMPLATE else f"state {state}"
        print(
            f"{'TCP' if proto == _TCP else 'UDP' if proto == 17 else proto:>3} "
            f"{format_addr(caddr, cport):>21} -> {format_addr(vaddr, vport):>21} -> "
            f"{format_addr(daddr, dport):>21}  {kind}, {left / 1000:.0f} s left at writing"
        )
