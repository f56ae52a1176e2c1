"""What the failover leaf reports to the director: role changes and what the peer sent.

Frozen records put on the queue the peer driver was given; ``director.daemon.pulse`` is the
only consumer, and the only code that acts on them (claims VIPs, fills the table).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Role(IntEnum):
    """keepalived's numbering of a director's VRRP state, used in metrics too."""

    INIT = 0
    BACKUP = 1
    MASTER = 2
    FAULT = 3


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """This director moved from ``old`` to ``new``; ``reason`` is for the log."""

    old: Role
    new: Role
    reason: str


@dataclass(frozen=True, slots=True)
class SyncReceived:
    """One authenticated connection sync message from the active peer (sync.decode input).

    ``dump_end`` marks the last message of a full table dump; ``sent_ms`` is the
    sender's wall clock when sent (for the sync lag).
    """

    payload: bytes
    dump_end: bool
    sent_ms: int = 0


@dataclass(frozen=True, slots=True)
class DumpRequested:
    """The standby peer asks for the whole table (it started, or lost the end of a dump)."""


@dataclass(frozen=True, slots=True)
class ConfigRequested:
    """The standby peer's configuration digest differs from ours."""


@dataclass(frozen=True, slots=True)
class ConfigReceived:
    """The active peer's normalized lvs.cf text, authenticated; not yet validated."""

    text: str


@dataclass(frozen=True, slots=True)
class PeerYielded:
    """This director is active and hears the peer as not active, after it was active or
    silent for a deadtime: it may have claimed the VIPs meanwhile (a split brain), so
    clients and reals may still point at it. Re-announce the VIPs."""

    reason: str


FailoverEvent = (
    RoleChanged | SyncReceived | DumpRequested | ConfigRequested | ConfigReceived | PeerYielded
)
