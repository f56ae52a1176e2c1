"""The heartbeat's reactions that need no socket: ``Peer._heartbeat_received`` on the FSM."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address

from failover import packet
from failover.events import FailoverEvent, PeerYielded, Role
from failover.peer import FailoverSettings, HeartbeatPath, Peer

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
