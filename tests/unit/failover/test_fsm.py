"""The failover state machine: Piranha's rules, and properties over random partitions and loss."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from failover.events import Role
from failover.fsm import Failover

KEEPALIVE = 200
DEADTIME = 1000


class Pair:
    """Two directors exchanging heartbeats every KEEPALIVE ms through a link we control.

    A standby that hears an active peer gets its table after one exchange (the dump),
    as the director does when a dump ends.
    """

    def __init__(self) -> None:
        self.primary = Failover(primary=True, deadtime_ms=DEADTIME)
        self.backup = Failover(primary=False, deadtime_ms=DEADTIME)
        self.now = 0
        self.changes = 0
        for fsm in (self.primary, self.backup):
            fsm.start(0)

    def deliver(self, src: Failover, dst: Failover) -> None:
        self.changes += len(dst.heard(self.now, src.role, src.wants_active))
        if dst.role is Role.BACKUP and src.role is Role.MASTER:
            dst.table_synced(self.now)

    def step(self, to_backup: bool, to_primary: bool) -> None:
        self.now += KEEPALIVE
        for fsm in (self.primary, self.backup):
            self.changes += len(fsm.tick(self.now))
        if to_backup:
            self.deliver(self.primary, self.backup)
        if to_primary:
            self.deliver(self.backup, self.primary)

    @property
    def active(self) -> int:
        return (self.primary.role is Role.MASTER) + (self.backup.role is Role.MASTER)


def test_primary_serves_when_both_start() -> None:
    pair = Pair()
    pair.step(True, True)
    pair.step(True, True)
    assert (pair.primary.role, pair.backup.role) == (Role.MASTER, Role.BACKUP)


def test_backup_takes_over_after_deadtime_of_silence() -> None:
    pair = Pair()
    for _ in range(3):
        pair.step(True, True)
    takeover = None
    for _ in range(20):
        pair.step(False, False)
        if pair.backup.role is Role.MASTER:
            takeover = pair.now
            break
    assert takeover is not None
    assert takeover - 3 * KEEPALIVE >= DEADTIME


def test_returning_primary_waits_for_the_table_then_preempts() -> None:
    backup = Failover(primary=False, deadtime_ms=DEADTIME)
    backup.start(0)
    backup.tick(DEADTIME)
    assert backup.role is Role.MASTER
    primary = Failover(primary=True, deadtime_ms=DEADTIME)
    primary.start(2000)
    assert primary.heard(2100, Role.MASTER, False) == []
    assert primary.role is Role.BACKUP
    assert not primary.wants_active
    assert primary.need_dump
    # Without the table, the backup keeps serving however long the primary listens.
    assert backup.heard(2100, primary.role, primary.wants_active) == []
    primary.table_synced(2200)
    assert primary.wants_active
    [change] = backup.heard(2300, primary.role, primary.wants_active)
    assert change.new is Role.BACKUP
    [change] = primary.heard(2400, backup.role, backup.wants_active)
    assert change.new is Role.MASTER


def test_returning_primary_that_cannot_serve_does_not_preempt() -> None:
    """A primary holding the table but without its reals (nanny has them out) waits."""
    primary = Failover(primary=True, deadtime_ms=DEADTIME)
    primary.start(0)
    primary.heard(100, Role.MASTER, False)
    primary.set_ready(150, False)
    primary.table_synced(200)
    assert not primary.wants_active
    primary.set_ready(300, True)
    assert primary.wants_active


def test_a_primary_back_from_fault_serves_only_once_ready() -> None:
    """Even a peer heard in standby (a heartbeat sent before it took over) does not make
    a primary that left FAULT active before the director says it can serve."""
    fsm = Failover(primary=True, deadtime_ms=DEADTIME)
    fsm.start(0)
    fsm.fault(100, "link down")
    fsm.recover(200, "link up")
    assert fsm.heard(250, Role.BACKUP, False) == []
    assert fsm.role is Role.BACKUP
    fsm.set_ready(300, True)
    [change] = fsm.heard(400, Role.BACKUP, False)
    assert change.new is Role.MASTER


def test_without_sync_a_returning_primary_needs_no_table() -> None:
    primary = Failover(primary=True, deadtime_ms=DEADTIME, sync=False)
    primary.start(0)
    primary.heard(100, Role.MASTER, False)
    assert primary.role is Role.BACKUP
    assert not primary.need_dump
    assert primary.wants_active


def test_fault_releases_and_recovers_to_standby() -> None:
    fsm = Failover(primary=True, deadtime_ms=DEADTIME)
    fsm.start(0)
    fsm.tick(DEADTIME)
    assert fsm.role is Role.MASTER
    [change] = fsm.fault(1100, "link down")
    assert (change.old, change.new) == (Role.MASTER, Role.FAULT)
    assert fsm.tick(5000) == []
    assert fsm.heard(5000, Role.BACKUP, False) == []
    [change] = fsm.recover(6000, "link up")
    assert change.new is Role.BACKUP
    # Recovery restarts the silence clock: no takeover before another deadtime.
    assert fsm.tick(6000 + DEADTIME - 1) == []


def test_backup_takes_over_from_a_peer_in_fault() -> None:
    fsm = Failover(primary=False, deadtime_ms=DEADTIME)
    fsm.start(0)
    [change] = fsm.heard(100, Role.FAULT, False)
    assert change.new is Role.MASTER


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.booleans(), st.booleans()), max_size=60),
    st.lists(st.tuples(st.booleans(), st.booleans()), max_size=60),
)
def test_after_any_partition_heals_at_most_one_active(
    before: list[tuple[bool, bool]], partition: list[tuple[bool, bool]]
) -> None:
    """Any delivery pattern (either direction lost), then a healed link for 3 deadtimes:
    exactly one director is active, and it stays so."""
    pair = Pair()
    for to_backup, to_primary in before + partition:
        pair.step(to_backup, to_primary)
    for _ in range(3 * DEADTIME // KEEPALIVE):
        pair.step(True, True)
    assert pair.active == 1
    settled = pair.changes
    for _ in range(3 * DEADTIME // KEEPALIVE):
        pair.step(True, True)
        assert pair.active == 1
    assert pair.changes == settled


@settings(max_examples=300)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=200))
def test_loss_below_deadtime_causes_no_role_change(losses: list[tuple[bool, bool]]) -> None:
    """In steady state, heartbeats lost in any pattern that leaves no silence of a
    deadtime (one delivery at least every DEADTIME / KEEPALIVE - 1 steps) change nothing."""
    pair = Pair()
    for _ in range(3):
        pair.step(True, True)
    assert (pair.primary.role, pair.backup.role) == (Role.MASTER, Role.BACKUP)
    settled = pair.changes
    gap = [0, 0]
    limit = DEADTIME // KEEPALIVE - 1
    for to_backup, to_primary in losses:
        wants = [to_backup, to_primary]
        for i in range(2):
            gap[i] = 0 if wants[i] or gap[i] + 1 >= limit else gap[i] + 1
            wants[i] = wants[i] or gap[i] == 0
        pair.step(wants[0], wants[1])
    assert pair.changes == settled
    assert (pair.primary.role, pair.backup.role) == (Role.MASTER, Role.BACKUP)
