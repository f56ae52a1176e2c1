"""Heartbeat envelope: authentication, replay window, staleness, loss counting."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from failover import packet
from failover.packet import Guard, Kind, Sealer, Verdict

KEY = b"k" * 32
NOW = 1_700_000_000_000


def test_round_trip_and_accept() -> None:
    sealer = Sealer(KEY, packet.PRIMARY, incarnation=5)
    guard = Guard(KEY, packet.BACKUP, max_age_ms=30_000)
    hb = packet.Heartbeat(role=2, wants_active=True, echo_seq=7, echo_held_ms=3)
    _, data = sealer.seal(Kind.HEARTBEAT, packet.encode_heartbeat(hb), NOW, hb.flags)
    env = guard.check(data, NOW + 10)
    assert isinstance(env, packet.Envelope)
    assert (env.kind, env.node, env.incarnation, env.seq) == (Kind.HEARTBEAT, 0, 5, 1)
    assert packet.decode_heartbeat(env.payload, env.flags) == hb


def test_forged_replayed_stale_rejected_and_counted() -> None:
    sealer = Sealer(KEY, packet.PRIMARY, incarnation=5)
    guard = Guard(KEY, packet.BACKUP, max_age_ms=30_000)
    _, good = sealer.seal(Kind.HEARTBEAT, b"", NOW)
    forged = Sealer(b"x" * 32, packet.PRIMARY, incarnation=5).seal(Kind.HEARTBEAT, b"", NOW)[1]
    tampered = bytearray(good)
    tampered[20] ^= 1
    _, stale = sealer.seal(Kind.HEARTBEAT, b"", NOW - 31_000)
    old_life = Sealer(KEY, packet.PRIMARY, incarnation=4).seal(Kind.HEARTBEAT, b"", NOW)[1]
    reflected = Sealer(KEY, packet.BACKUP, incarnation=9).seal(Kind.HEARTBEAT, b"", NOW)[1]
    assert isinstance(guard.check(good, NOW), packet.Envelope)
    assert guard.check(good, NOW) is Verdict.REPLAYED
    assert guard.check(forged, NOW) is Verdict.FORGED
    assert guard.check(bytes(tampered), NOW) is Verdict.FORGED
    assert guard.check(stale, NOW) is Verdict.STALE
    assert guard.check(old_life, NOW) is Verdict.REPLAYED
    assert guard.check(reflected, NOW) is Verdict.MALFORMED
    assert guard.check(good[:-1], NOW) is Verdict.MALFORMED
    stats = guard.statistics()
    assert stats.accepted == 1
    assert stats.rejected == {"forged": 2, "replayed": 2, "stale": 1, "malformed": 2}


def test_restarted_peer_is_a_new_incarnation() -> None:
    guard = Guard(KEY, packet.BACKUP, max_age_ms=30_000)
    first = Sealer(KEY, packet.PRIMARY, incarnation=1)
    for _ in range(3):
        assert isinstance(
            guard.check(first.seal(Kind.HEARTBEAT, b"", NOW)[1], NOW), packet.Envelope
        )
    second = Sealer(KEY, packet.PRIMARY, incarnation=2)
    assert isinstance(guard.check(second.seal(Kind.HEARTBEAT, b"", NOW)[1], NOW), packet.Envelope)
    assert guard.check(first.seal(Kind.HEARTBEAT, b"", NOW)[1], NOW) is Verdict.REPLAYED
    assert guard.statistics().lost == 0


@given(st.lists(st.booleans(), min_size=1, max_size=300))
def test_reordered_datagrams_accepted_once_and_losses_counted(delivered: list[bool]) -> None:
    """Every datagram delivered once is accepted once, within the window, in any order
    close to sending order; every one never delivered is counted lost once it leaves the
    window, and a second copy of any of them is a replay."""
    sealer = Sealer(KEY, packet.PRIMARY, incarnation=1)
    guard = Guard(KEY, packet.BACKUP, max_age_ms=30_000)
    datagrams = [sealer.seal(Kind.HEARTBEAT, b"", NOW)[1] for _ in delivered]
    # First datagram always arrives (it opens the window); swap neighbours to reorder.
    order = [i for i, d in enumerate(delivered) if d or i == 0]
    for i in range(1, len(order) - 1, 3):
        order[i], order[i + 1] = order[i + 1], order[i]
    if order[0] != 0:
        order.remove(0)
        order.insert(0, 0)
    for i in order:
        assert isinstance(guard.check(datagrams[i], NOW), packet.Envelope)
    for i in order:
        assert guard.check(datagrams[i], NOW) is Verdict.REPLAYED
    # Push the window past every datagram: then each undelivered one is lost.
    for _ in range(packet.WINDOW):
        guard.check(sealer.seal(Kind.HEARTBEAT, b"", NOW)[1], NOW)
    assert guard.statistics().lost == len(delivered) - len(order)
