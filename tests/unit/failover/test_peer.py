"""The heartbeat's reactions that need no socket: ``Peer._heartbeat_received`` on the FSM."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address

import pytest

from failover import packet
from failover.events import FailoverEvent, PeerYielded, Role, RoleChanged
from failover.peer import FailoverSettings, HeartbeatPath, Peer, link_state

PATH = HeartbeatPath("public", IPv4Address("10.0.1.1"), IPv4Address("10.0.1.2"))
DEADTIME_MS = 1000


def primary_master() -> tuple[Peer, asyncio.Queue[FailoverEvent]]:
    """A primary that became MASTER on hearing its standby peer at t=0."""
    events: asyncio.Queue[FailoverEvent] = asyncio.Queue()
    settings = FailoverSettings(True, (PATH,), 539, 0.2, DEADTIME_MS / 1000, b"k" * 32)
    peer = Peer(settings, events, incarnation=1)
    peer.fsm.start(0)
    peer._heartbeat_received(0, 1, packet.Heartbeat(Role.BACKUP))
    assert peer.fsm.role is Role.MASTER
    return peer, events


def yielded(events: asyncio.Queue[FailoverEvent]) -> list[PeerYielded]:
    out = []
    while not events.empty():
        e = events.get_nowait()
        if isinstance(e, PeerYielded):
            out.append(e)
    return out


def test_a_peer_that_was_active_and_yields_makes_the_master_announce_again() -> None:
    peer, events = primary_master()
    yielded(events)
    peer._heartbeat_received(100, 2, packet.Heartbeat(Role.MASTER))  # split brain
    assert peer.fsm.role is Role.MASTER  # the primary wins
    assert yielded(events) == []
    peer._heartbeat_received(200, 3, packet.Heartbeat(Role.BACKUP))
    assert [e.reason for e in yielded(events)] == ["the peer was active and is now standby"]
    peer._heartbeat_received(300, 4, packet.Heartbeat(Role.BACKUP))
    assert yielded(events) == []  # once, not on every heartbeat


def test_a_peer_heard_again_after_a_deadtime_of_silence_makes_the_master_announce() -> None:
    peer, events = primary_master()
    yielded(events)
    peer._heartbeat_received(100, 2, packet.Heartbeat(Role.BACKUP))
    assert yielded(events) == []  # heard all along: nothing to repair
    peer._heartbeat_received(100 + DEADTIME_MS, 3, packet.Heartbeat(Role.BACKUP))
    assert [e.reason for e in yielded(events)] == ["the peer was silent and is now standby"]


def test_a_link_that_is_not_there_is_reported_gone() -> None:
    assert link_state("lvsd-no-such0") == "gone"
    assert link_state("lo") is None


def test_a_watched_link_without_carrier_is_fault_and_its_return_standby(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pulled cable fails no send: the carrier watch alone must report FAULT."""
    peer, events = primary_master()
    peer.links = ("eth0",)
    states: dict[str, str | None] = {"eth0": "without carrier"}
    monkeypatch.setattr("failover.peer.link_state", lambda name: states[name])
    roles = []
    for state in ("without carrier", "without carrier", None):
        states["eth0"] = state
        peer.check_links()
        roles.append(peer.fsm.role)
    assert roles == [Role.FAULT, Role.FAULT, Role.BACKUP]
    changes = []
    while not events.empty():
        e = events.get_nowait()
        if isinstance(e, RoleChanged):
            changes.append((e.old, e.new))
    assert changes[-2:] == [(Role.MASTER, Role.FAULT), (Role.FAULT, Role.BACKUP)]
