"""The group channel: three directors on loopback addresses, real UDP, real HMAC."""

from __future__ import annotations

import asyncio
import socket
import time
from ipaddress import IPv4Address

from failover import packet
from failover.group import GroupDumpRequested, GroupEvent, GroupLink, GroupSettings, GroupSync

KEY = b"group-unit-test-key-0123456789"
ADDRS = [IPv4Address(f"127.0.7.{i}") for i in (1, 2, 3)]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.7.1", 0))
        return int(s.getsockname()[1])


def _links(port: int) -> list[tuple[GroupLink, asyncio.Queue[GroupEvent]]]:
    out = []
    for a in ADDRS:
        q: asyncio.Queue[GroupEvent] = asyncio.Queue()
        peers = tuple(p for p in ADDRS if p != a)
        out.append((GroupLink(GroupSettings(a, peers, port, KEY, 0.05, 0.5), q), q))
    return out


async def _until(cond: object, limit_s: float = 5.0) -> None:
    """Poll ``cond`` every 10 ms, at most ``limit_s``: what the links receive has no
    event of its own to await."""
    assert callable(cond)
    async with asyncio.timeout(limit_s):
        for _ in range(int(limit_s * 100) + 1):
            if cond():
                return
            await asyncio.sleep(0.01)


def test_peers_ask_for_tables_sync_reaches_all_and_strangers_are_refused() -> None:
    async def main() -> None:
        links = _links(_free_port())
        tasks = [asyncio.create_task(link.run()) for link, _ in links]
        try:
            (a, qa), (b, _), (c, _) = links
            await _until(lambda: all(len(link.alive_peers()) == 2 for link, _ in links))
            # A starting director asks every peer for its table ...
            asked = await asyncio.wait_for(qa.get(), 5)
            assert isinstance(asked, GroupDumpRequested)
            assert not a.synced()
            # ... and has joined once each live peer's dump has ended.
            for link in (b, c):
                link.broadcast(packet.Kind.SYNC, b"dump", packet.SYNC_DUMP_END)
            await _until(lambda: a.synced())
            got = [
                e for e in [qa.get_nowait() for _ in range(qa.qsize())] if isinstance(e, GroupSync)
            ]
            assert {(e.peer, e.payload, e.dump_end) for e in got} == {
                (ADDRS[1], b"dump", True),
                (ADDRS[2], b"dump", True),
            }
            # One message reaches every peer.
            assert a.broadcast(packet.Kind.SYNC, b"x") == 2
            # Not a peer: refused and counted, whatever its key.
            sealer = packet.Sealer(KEY, packet.PRIMARY, time.time_ns())
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.7.9", 0))
                s.sendto(
                    sealer.seal(packet.Kind.SYNC, b"evil", time.time_ns() // 10**6)[1],
                    (str(ADDRS[0]), a.settings.port),
                )
            await _until(lambda: a.counts["unknown"] == 1)
            # A peer's datagram with the wrong key: forged.
            forged = packet.Sealer(b"another-key-0123456789", packet.PRIMARY, time.time_ns())
            b._sock.sendto(  # type: ignore[union-attr]
                forged.seal(packet.Kind.SYNC, b"evil", time.time_ns() // 10**6)[1],
                (str(ADDRS[0]), a.settings.port),
            )
            await _until(lambda: a.counts["rejected_forged"] == 1)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def test_a_director_alone_joins_after_two_keepalives() -> None:
    async def main() -> None:
        q: asyncio.Queue[GroupEvent] = asyncio.Queue()
        link = GroupLink(GroupSettings(ADDRS[0], (ADDRS[1],), _free_port(), KEY, 0.05, 0.5), q)
        task = asyncio.create_task(link.run())
        try:
            assert not link.synced()
            await _until(link.synced)
            assert time.monotonic_ns() // 10**6 - link.started_ms >= 100
            assert link.need_dump == set()  # latched: a peer that comes later is not waited for
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
