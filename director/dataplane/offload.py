"""The kernel offload: lvsd's established VS-NAT connections forwarded by a tc program.

lvsd decides every connection on the TUN path; once a connection is ESTABLISHED (TCP) or
created (UDP), ``Offload`` installs it in the map of the tc program ``offload.bpf.c``
attached to the ingress of the public and private interfaces, which from then on
rewrites and forwards its packets in the kernel (``bpf_redirect_neigh``). SYN, FIN and
RST segments, ICMP, fragments and anything the map does not hold still come through the
TUN, so the table's state machine sees every state change. The map is a cache of the
table, never the other way round:

* ``pump()`` follows the table's change log (the sync log; ``table_view()`` shares it with
  connection sync): an entry is installed when its connection reaches ESTABLISHED (or a
  UDP connection is created) and removed when it leaves it or the table, its last counts
  added to its dest. A lost log record clears the map (the TUN path serves everyone).
* ``fold(now)``, on the expiry tick before ``expire``, adds what the kernel forwarded to
  the table's counters (``ConnTable.credit``) and moves each connection's deadline to its
  last packet (``ConnTable.seen``), so ``--stats``, rates and timers read as on the TUN
  path; an entry whose dest became unavailable is removed.

Not offloaded: direct-routing and tunnelled connections (their packets do not come back),
connections of the FTP helper (APP: payload rewrites) or with sequence offsets, and
templates. The mode is chosen once at start: "tun+offload" where the object was built
(clang, libbpf) and the kernel accepts the program, else "tun" with the reason logged.
Event-loop thread only.
"""

from __future__ import annotations

import importlib
import logging
import socket
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from director.dataplane import fastpath
from director.stats import OffloadStats

log = logging.getLogger(__name__)

OBJECT_PATH = Path(__file__).with_name("offload.bpf.o")
TUN = "tun"
OFFLOAD = "tun+offload"
# The table's own log between two pumps (pumped after every TUN read and every tick).
LOG_CAPACITY = 1 << 18
_ALL = 1 << 30
FOLD_BATCH = 16384
"""Offloaded connections read per tick at most: more are read over several ticks, each
once every ceil(n / FOLD_BATCH) seconds (which must stay below the shortest timeout)."""
_SEQ = fastpath.CONN_F_IN_SEQ | fastpath.CONN_F_OUT_SEQ
_INFO_FLAGS = 9
_INFO_DEST = 7


def load_module() -> ModuleType | None:
    """The libbpf loader extension, or None where it was not built."""
    try:
        return importlib.import_module("director.dataplane._offload")
    except ImportError:
        return None


def available() -> bool:
    """Whether this installation has the offload built (its loader and its object)."""
    return OBJECT_PATH.exists() and load_module() is not None


def _offloadable(proto: int, state: int, flags: int) -> bool:
    """Whether a connection in ``state`` with ``flags`` belongs in the map: a VS-NAT one
    without sequence offsets, TCP in ESTABLISHED or UDP; never a template."""
    return (
        not flags & (fastpath.CONN_F_TEMPLATE | _SEQ)
        and flags & fastpath.CONN_F_FWD_MASK == fastpath.CONN_F_MASQ
        and (
            (proto == fastpath.PROTO_TCP and state == fastpath.ESTABLISHED)
            or proto == fastpath.PROTO_UDP
        )
    )


def detach_stale(ifindex: int) -> bool:
    """Remove lvsd's offload program from interface ``ifindex`` if one is attached (a
    killed director's); True if one was."""
    mod = load_module()
    return bool(mod is not None and mod.detach(ifindex))


class _Loader(Protocol):
    def install(self, *args: int) -> None: ...
    def take(self, *key: int) -> tuple[int, int, int, int, int, int]: ...
    def uninstall(self, *key: int) -> tuple[int, int, int, int, int, int]: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...
    def release(self) -> None: ...
    def __len__(self) -> int: ...


class Offload:
    """The map of the tc program as a cache of ``table`` (see the module docstring)."""

    def __init__(self, table: fastpath.ConnTable) -> None:
        self.table = table
        self.mode = TUN
        self.reason = "not started"
        self._loader: _Loader | None = None
        self._in_if = self._out_if = 0
        self._installed: set[int] = set()
        self._fold_queue: list[int] = []
        # A walk installing what the table holds when this director starts serving (a
        # takeover: the synced connections); its next handle, -1 when none is under way.
        self._walk = -1
        self._was_serving = False
        self._n_installed = self._n_removed = self._n_cleared = 0
        # The sync consumer's share of the log while the offload owns it.
        self._sync_cap = 0
        self._sync: deque[tuple[int, ...]] = deque()
        self._sync_lost = 0
        self._serving: Callable[[], bool] = lambda: True

    def start(
        self,
        enabled: bool,
        public: str,
        private: str,
        max_conns: int,
        serving: Callable[[], bool] = lambda: True,
    ) -> None:
        """Choose the mode: load and attach the program on ``public`` and ``private``
        (interface names) unless ``enabled`` is false or this host cannot; logs the mode.
        While ``serving()`` is false (a standby: its table is a copy) nothing is installed
        and the map is emptied."""
        self._serving = serving
        if not enabled:
            self._choose(TUN, "offload = no in the configuration")
            return
        mod = load_module()
        if mod is None or not OBJECT_PATH.exists():
            self._choose(TUN, "not built (clang and libbpf were missing at install)")
            return
        try:
            pub, priv = socket.if_nametoindex(public), socket.if_nametoindex(private)
            loader: _Loader = mod.Offload(str(OBJECT_PATH), max_conns, (pub, priv))
        except OSError as e:
            self._choose(TUN, f"the kernel refused the program: {e}")
            return
        self._loader = loader
        self._in_if, self._out_if = priv, pub
        # Pulse's log settings apply to its share (see table_view); the table's log is ours.
        self.table.enable_sync_log(LOG_CAPACITY)
        self._choose(OFFLOAD, f"tc program on {public} and {private}")

    def _choose(self, mode: str, reason: str) -> None:
        self.mode, self.reason = mode, reason
        log.info("offload: %s (%s)", mode, reason)

    def stop(self, detach: bool = True) -> None:
        """Detach the program: every packet goes through the TUN again. Without ``detach``
        (handed over) leave the hook alone: the successor's program replaced this one's."""
        if self._loader is not None:
            if detach:
                self._loader.close()
            else:
                self._loader.release()
            self._loader = None
            self._installed.clear()

    # --- following the table -----------------------------------------------------------

    def pump(self) -> None:
        """Apply the table's changes since the last call to the map (see the module doc)."""
        loader = self._loader
        if loader is None:
            return
        records, lost = self.table.sync_changes(_ALL)
        if not records and not lost:
            return
        if self._sync_cap:
            room = self._sync_cap - len(self._sync)
            self._sync.extend(records[: max(room, 0)])
            self._sync_lost += lost + max(len(records) - room, 0)
        if lost:
            log.warning("offload: the table's log lost %d changes; map cleared", lost)
            self.clear()
            return
        serving = self._serving()
        if not serving and self._installed:
            self.clear()
        for r in records:
            self._apply(loader, r, serving)

    def _apply(self, loader: _Loader, r: tuple[int, ...], serving: bool) -> None:
        proto, caddr, cport, vaddr, vport, daddr, dport, dest, state, flags, removed = r
        if flags & fastpath.CONN_F_TEMPLATE:
            return
        key = (proto, caddr, cport, vaddr, vport, daddr, dport)
        wanted = serving and not removed and _offloadable(proto, state, flags)
        if not wanted:
            if not self._installed:
                return
            if removed:
                # The state it left the table in: one not installed then was removed before.
                if proto == fastpath.PROTO_TCP and state != fastpath.ESTABLISHED:
                    return
            elif self.table.lookup(proto, caddr, cport, vaddr, vport) not in self._installed:
                return
            self._remove(loader, key, dest)
            return
        h = self.table.lookup(proto, caddr, cport, vaddr, vport)
        if h < 0 or h in self._installed:
            return
        if self.table.conn_info(h)[_INFO_FLAGS] & fastpath.CONN_F_APP:
            return
        try:
            loader.install(*key, h, self._in_if, self._out_if)
        except OSError as e:
            log.warning("offload: %s", e)
            return
        self._installed.add(h)
        self._n_installed += 1

    def _remove(self, loader: _Loader, key: tuple[int, ...], dest: int) -> None:
        ip, ib, op, ob, _, slot = loader.uninstall(*key)
        if slot < 0:
            return
        self._installed.discard(slot)
        self._n_removed += 1
        if ip or op:
            self.table.credit(dest, ip, ib, op, ob)

    def fold(self, now_ms: int) -> None:
        """Add the kernel's counts to the table and re-arm deadlines; call before expire.

        Reads at most FOLD_BATCH connections, taking up where the previous call stopped."""
        loader = self._loader
        if loader is None:
            return
        self.pump()
        if not self._serving():
            self.clear()
            self._was_serving = False
            self._walk = -1
            return
        if not self._was_serving:
            self._was_serving = True
            self._walk = 0
        if self._walk >= 0:
            self._install_slice(loader)
        dests = self.table.dest_buffer()
        if not self._fold_queue:
            self._fold_queue = list(self._installed)
        batch = self._fold_queue[-FOLD_BATCH:]
        del self._fold_queue[-FOLD_BATCH:]
        for h in batch:
            if h not in self._installed:  # removed since the queue was filled
                continue
            info = self.table.conn_info(h)
            key, dest = info[:7], info[_INFO_DEST]
            if not dests[dest * fastpath.DEST_FIELDS + fastpath.DEST_AVAILABLE]:
                self._remove(loader, key, dest)
                continue
            ip, ib, op, ob, last_ns, _ = loader.take(*key)
            if ip or op:
                self.table.credit(dest, ip, ib, op, ob)
                self.table.seen(h, min(last_ns // 1_000_000, now_ms))

    def _install_slice(self, loader: _Loader) -> None:
        """The next FOLD_BATCH handles of the walk: install the established VS-NAT ones."""
        rows, self._walk = self.table.entries_from(self._walk, FOLD_BATCH)
        dests = self.table.dest_buffer()
        for h, proto, caddr, cport, vaddr, vport, daddr, dport, dest, state, flags, *_ in rows:
            if (
                h in self._installed
                or not _offloadable(proto, state, flags)
                or flags & fastpath.CONN_F_APP
                or not dests[dest * fastpath.DEST_FIELDS + fastpath.DEST_AVAILABLE]
            ):
                continue
            try:
                loader.install(proto, caddr, cport, vaddr, vport, daddr, dport, h, self._in_if,
                               self._out_if)  # fmt: skip
            except OSError as e:
                log.warning("offload: %s", e)
                return
            self._installed.add(h)
            self._n_installed += 1

    def drop_dest(self, dest: int) -> None:
        """A dest became unavailable: its connections' packets go to the TUN path, which
        drops them (DROP_DEST_UNAVAILABLE) until it is added back."""
        loader = self._loader
        if loader is None:
            return
        self.pump()
        for h in list(self._installed):
            info = self.table.conn_info(h)
            if info[_INFO_DEST] == dest:
                self._remove(loader, info[:7], dest)

    def clear(self) -> None:
        """Remove every entry (their uncounted packets are lost to the counters)."""
        if self._loader is not None:
            self._loader.clear()
            self._n_cleared += len(self._installed)
            self._installed.clear()

    def statistics(self) -> OffloadStats:
        return OffloadStats(
            self.mode,
            self.reason,
            len(self._installed),
            self._n_installed,
            self._n_removed,
            self._n_cleared,
        )

    # --- the log shared with connection sync ----------------------------------------------

    def enable_sync_log(self, capacity: int) -> None:
        """The table's ``enable_sync_log`` for its other reader, connection sync."""
        if self._loader is None:
            self.table.enable_sync_log(capacity)
            return
        self._sync_cap = capacity
        self._sync.clear()
        self._sync_lost = 0

    def sync_changes(self, limit: int) -> tuple[list[tuple[int, ...]], int]:
        """The table's ``sync_changes`` for connection sync: the same records, in order."""
        if self._loader is None:
            return self.table.sync_changes(limit)
        self.pump()
        q = self._sync
        out = [q.popleft() for _ in range(min(limit, len(q)))]
        lost, self._sync_lost = self._sync_lost, 0
        return out, lost

    def table_view(self) -> fastpath.ConnTable:
        """``table`` for the service layer and connection sync (see ``_TableView``)."""
        return _TableView(self.table, self)  # type: ignore[return-value]


class _TableView:
    """The connection table as the service layer and connection sync see it: its log read
    through ``Offload`` (one log, two readers), and the edits that must reach the map at
    once (a dest made unavailable, connections removed) followed by the map; all else is
    the table's own."""

    def __init__(self, table: fastpath.ConnTable, offload: Offload) -> None:
        self._table = table
        self._offload = offload
        self.enable_sync_log = offload.enable_sync_log
        self.sync_changes = offload.sync_changes

    def __len__(self) -> int:
        return len(self._table)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def set_dest_available(self, dest: int, available: bool) -> None:
        self._table.set_dest_available(dest, available)
        if not available:
            self._offload.drop_dest(dest)

    def remove(self, handle: int) -> None:
        self._table.remove(handle)
        self._offload.pump()

    def flush(self) -> None:
        self._table.flush()
        self._offload.pump()

    def expire(self, now: int) -> int:
        n = int(self._table.expire(now))
        self._offload.pump()
        return n
