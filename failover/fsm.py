"""The failover state machine of one director, sans I/O: time and heartbeats in, role changes out.

Piranha's pulse semantics, with keepalived's role numbering (``events.Role``):

* Both directors start in INIT and move to BACKUP at once, announcing "standby".
* A director that hears nothing from its peer for ``deadtime`` becomes MASTER (takes the
  VIPs). A peer that announces FAULT counts as gone too.
* The primary becomes MASTER as soon as it hears its peer in standby (BACKUP or INIT),
  if it can serve (``set_ready``; a director is ready when it starts, not after FAULT).
* Both MASTER (a healed partition): the primary wins, the backup yields at once.
* **Preemption.** A primary that comes back while the backup is MASTER stays BACKUP until
  it holds the backup's whole connection table (``table_synced``; at once without
  connection sync) and can serve (``set_ready``: the director says whether its services
  have the real servers its configuration names); it then announces
  ``wants_active``, the backup yields (releases the VIPs and says so), and the primary,
  hearing it in standby, becomes MASTER. Established connections therefore go on across
  the hand-back. The primary never takes the VIPs from a live MASTER peer: if the peer
  never yields, the primary waits (no split brain), and takes over only on its silence.
* FAULT: the driver reports that this director cannot reach its networks (a send fails, or
  a watched link lost its carrier); a FAULT director releases the VIPs, and leaves FAULT
  for BACKUP on ``recover``.

Times are integer milliseconds of a monotonic clock supplied by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from failover.events import Role, RoleChanged


@dataclass(frozen=True, slots=True)
class PeerState:
    """What the FSM knows of the peer: its last announced role and when it was heard."""

    role: Role
    heard_ms: int | None
    alive: bool


class Failover:
    """One director's role. Call ``start`` once, then ``tick``/``heard`` as time passes."""

    def __init__(self, *, primary: bool, deadtime_ms: int, sync: bool = True) -> None:
        if deadtime_ms <= 0:
            raise ValueError(f"Failover.deadtime_ms: must be > 0, got {deadtime_ms}")
        self.primary = primary
        self.deadtime_ms = deadtime_ms
        self.sync = sync
        self.role = Role.INIT
        self.peer_role = Role.INIT
        self.synced = False
        self.ready = True
        self._since_ms = 0
        self._heard_ms: int | None = None
        self._faulty = False

    # -- inputs ----------------------------------------------------------------------------

    def start(self, now: int, resume: Role | None = None) -> list[RoleChanged]:
        """Begin: in BACKUP; or, ``resume`` MASTER, active at once (this director's process
        took over from one that was active, and the peer still sees an active director)."""
        self._since_ms = now
        if resume is Role.MASTER:
            return self._become(Role.MASTER, "took over from the active lvsd process")
        return self._become(Role.BACKUP, "started; standby until the peer is heard or silent")

    def tick(self, now: int) -> list[RoleChanged]:
        """Time passed: take over if the peer has been silent for ``deadtime``."""
        if self.role is not Role.BACKUP:
            return []
        last = self._since_ms if self._heard_ms is None else max(self._heard_ms, self._since_ms)
        if now - last >= self.deadtime_ms:
            self.peer_role = Role.INIT
            what = "nothing heard from" if self._heard_ms is None else "no heartbeat from"
            return self._become(
                Role.MASTER, f"{what} the peer for {self.deadtime_ms / 1000:g} s (deadtime)"
            )
        return []

    def heard(self, now: int, role: Role, wants_active: bool) -> list[RoleChanged]:
        """An authenticated heartbeat from the peer announcing ``role``."""
        self._heard_ms = now
        self.peer_role = role
        match self.role, role:
            case (Role.FAULT | Role.INIT, _):
                return []
            case (Role.MASTER, Role.MASTER) if not self.primary:
                return self._become(Role.BACKUP, "both directors active: the primary wins")
            case (Role.MASTER, _) if wants_active and not self.primary:
                return self._become(Role.BACKUP, "the primary holds the table and takes over")
            case (Role.BACKUP, Role.FAULT):
                return self._become(Role.MASTER, "the peer is in FAULT")
            case (Role.BACKUP, Role.BACKUP | Role.INIT) if self.primary and self.ready:
                return self._become(Role.MASTER, "the peer is standby: the primary serves")
        return []

    def table_synced(self, now: int) -> list[RoleChanged]:
        """The standby holds the active peer's whole table (a dump ended)."""
        self.synced = True
        return []

    def set_ready(self, now: int, ready: bool) -> list[RoleChanged]:
        """Whether this director could serve now (its services have their real servers)."""
        self.ready = ready
        return []

    def fault(self, now: int, reason: str) -> list[RoleChanged]:
        self._faulty = True
        return self._become(Role.FAULT, reason)

    def recover(self, now: int, reason: str) -> list[RoleChanged]:
        if not self._faulty:
            return []
        self._faulty = False
        self._since_ms = now
        self._heard_ms = None
        # Cut off meanwhile, its services may have lost their reals: not ready until the
        # director says so again.
        self.ready = False
        return self._become(Role.BACKUP, reason)

    # -- outputs ---------------------------------------------------------------------------

    @property
    def wants_active(self) -> bool:
        """A primary standby that holds the table, can serve, and waits for the peer to yield."""
        held = self.synced or not self.sync
        return self.primary and self.role is Role.BACKUP and held and self.ready

    @property
    def need_dump(self) -> bool:
        return self.sync and self.role is Role.BACKUP and not self.synced

    def peer(self, now: int) -> PeerState:
        alive = self._heard_ms is not None and now - self._heard_ms < self.deadtime_ms
        return PeerState(self.peer_role, self._heard_ms, alive)

    def _become(self, new: Role, reason: str) -> list[RoleChanged]:
        old = self.role
        if old is new:
            return []
        self.role = new
        if new is not Role.BACKUP:
            # A table held as standby is stale once we serve, or once we stop listening.
            self.synced = False
        return [RoleChanged(old, new, reason)]
