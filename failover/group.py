"""Connection sync among a group of active directors (active-active behind ECMP).

Every director of the group serves at once, and each sends the connections it schedules
to every other one, so that a flow the router moves (a director joined, left or was
drained) finds its entry on its new director. The datagrams are the failover channel's
(``failover.packet``: the same authenticated envelope, HMAC key, replay window and age
check) on ``heartbeat_port``: a heartbeat every ``keepalive`` seconds to every peer, and
the sync messages of ``failover.sync``.

Differences from the two-node channel (``failover.peer``):

* no roles: nothing is claimed, the router picks the directors by the routes they
  announce; a peer is *alive* while it was heard within ``deadtime``;
* every director seals as node 0; peers are told apart by their source address, each
  with its own ``packet.Guard`` (its own replay window), and a datagram from an address
  that is not a peer is refused and counted (``unknown``);
* a director that starts needs every peer's table: its heartbeats carry
  ``HB_NEED_DUMP`` to each peer until that peer's dump has ended (``SYNC_DUMP_END``).
  ``synced()`` says when it holds the tables of every live peer: the director announces
  its routes only then, so the flows that ECMP moves to it find their entries.

Standard library only; event-loop thread only. The director side is
``director.daemon.group``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from dataclasses import dataclass
from ipaddress import IPv4Address

from failover import packet

log = logging.getLogger(__name__)

GROUP_NODE = packet.PRIMARY
"""The node id every director of a group seals with."""
_PEER_NODE = packet.BACKUP
"""The node id a Guard is given: never the senders', so none is taken for a reflection."""


@dataclass(frozen=True, slots=True)
class GroupSettings:
    """This director's address, the others', and the channel's parameters."""

    local: IPv4Address
    peers: tuple[IPv4Address, ...]
    port: int
    key: bytes
    keepalive_s: float
    deadtime_s: float
    max_age_s: float = 30.0

    def __post_init__(self) -> None:
        if self.local in self.peers:
            raise ValueError(f"GroupSettings.peers: must not hold this director ({self.local})")
        if not self.peers:
            raise ValueError("GroupSettings.peers: at least one peer is needed")


@dataclass(frozen=True, slots=True)
class GroupSync:
    """One authenticated sync message from ``peer`` (``failover.sync.decode`` input)."""

    peer: IPv4Address
    payload: bytes
    dump_end: bool
    sent_ms: int


@dataclass(frozen=True, slots=True)
class GroupDumpRequested:
    """``peer`` asks for the whole table (it started, or lost the end of a dump)."""

    peer: IPv4Address


GroupEvent = GroupSync | GroupDumpRequested


class GroupLink:
    """The group channel of one director: heartbeats, sync datagrams, dump requests.

    ``run()`` binds ``local:port`` and heartbeats until cancelled; what peers send is put
    on ``events``. ``broadcast`` sends one message to every peer.
    """

    def __init__(
        self,
        settings: GroupSettings,
        events: asyncio.Queue[GroupEvent],
        *,
        incarnation: int | None = None,
    ) -> None:
        self.settings = settings
        self.events = events
        inc = time.time_ns() if incarnation is None else incarnation
        self.sealer = packet.Sealer(settings.key, GROUP_NODE, inc)
        age_ms = int(settings.max_age_s * 1000)
        self.guards = {p: packet.Guard(settings.key, _PEER_NODE, age_ms) for p in settings.peers}
        self.heard_ms: dict[IPv4Address, int] = {}
        self.need_dump = set(settings.peers)
        """Peers whose whole table this director has not received yet."""
        self._dump_asked_ms: dict[IPv4Address, int] = {}
        self.started_ms = _now_ms()
        self._synced = False
        self.counts: Counter[str] = Counter()
        self._sock: socket.socket | None = None

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((str(self.settings.local), self.settings.port))
            self._sock = sock
            loop.add_reader(sock.fileno(), self._readable)
            log.info(
                "group: %s with %s, port %d, keepalive %g s, deadtime %g s%s",
                self.settings.local,
                " ".join(map(str, self.settings.peers)),
                self.settings.port,
                self.settings.keepalive_s,
                self.settings.deadtime_s,
                "" if self.settings.key else " (UNAUTHENTICATED)",
            )
            while True:
                self.send_heartbeats()
                await asyncio.sleep(self.settings.keepalive_s)
        finally:
            if self._sock is not None:
                loop.remove_reader(sock.fileno())
            self._sock = None
            sock.close()

    def send_heartbeats(self) -> None:
        """One heartbeat to every peer; asks for its table while this director lacks it."""
        for peer in self.settings.peers:
            flags = packet.HB_NEED_DUMP if peer in self.need_dump else 0
            self._send(peer, packet.Kind.HEARTBEAT, b"", flags)

    def broadcast(self, kind: packet.Kind, payload: bytes, flags: int = 0) -> int:
        """Send one message to every peer; returns how many sends succeeded."""
        return sum(self._send(p, kind, payload, flags) for p in self.settings.peers)

    def _send(self, peer: IPv4Address, kind: packet.Kind, payload: bytes, flags: int) -> bool:
        if self._sock is None:
            return False
        _, data = self.sealer.seal(kind, payload, _wall_ms(), flags)
        try:
            self._sock.sendto(data, (str(peer), self.settings.port))
        except OSError as e:
            # A peer that is down (no ARP answer, ICMP unreachable) is not our fault.
            self.counts["send_errors"] += 1
            log.debug("group: send to %s: %s", peer, e)
            return False
        self.counts["sent"] += 1
        return True

    def _readable(self) -> None:
        assert self._sock is not None
        for _ in range(64):  # bounded per wake-up; the loop calls again if more wait
            try:
                data, addr = self._sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP errors of earlier sends surface here
                continue
            self.received(data, addr[0])

    # -- receiving -------------------------------------------------------------------------

    def received(self, data: bytes, src: str) -> None:
        try:
            peer = IPv4Address(src)
        except ValueError:
            peer = None
        guard = self.guards.get(peer) if peer is not None else None
        if guard is None or peer is None:
            self.counts["unknown"] += 1
            return
        env = guard.check(data, _wall_ms())
        if isinstance(env, packet.Verdict):
            self.counts[f"rejected_{env.value}"] += 1
            return
        now = _now_ms()
        if peer not in self.heard_ms or not self.alive(peer, now):
            log.info("group: peer %s is alive", peer)
        self.heard_ms[peer] = now
        if env.kind is packet.Kind.HEARTBEAT:
            if env.flags & packet.HB_NEED_DUMP:
                last = self._dump_asked_ms.get(peer, -(10**12))
                # The request repeats every keepalive; one dump answers it.
                if now - last >= self.settings.deadtime_s * 1000:
                    self._dump_asked_ms[peer] = now
                    self.events.put_nowait(GroupDumpRequested(peer))
        elif env.kind is packet.Kind.SYNC:
            dump_end = bool(env.flags & packet.SYNC_DUMP_END)
            if dump_end and peer in self.need_dump:
                self.need_dump.discard(peer)
                log.info("group: holding the table of %s", peer)
            self.events.put_nowait(GroupSync(peer, env.payload, dump_end, env.sent_ms))

    # -- state -----------------------------------------------------------------------------

    def alive(self, peer: IPv4Address, now_ms: int | None = None) -> bool:
        heard = self.heard_ms.get(peer)
        now = _now_ms() if now_ms is None else now_ms
        return heard is not None and now - heard <= self.settings.deadtime_s * 1000

    def alive_peers(self) -> list[IPv4Address]:
        now = _now_ms()
        return [p for p in self.settings.peers if self.alive(p, now)]

    def synced(self, now_ms: int | None = None) -> bool:
        """Whether this director has joined: it holds the table of every live peer.

        Not before two keepalives since it started, so that every live peer was heard.
        Once true it stays true: a peer that starts later has no table to give, and it
        is the one that waits (for ours).
        """
        if self._synced:
            return True
        now = _now_ms() if now_ms is None else now_ms
        if now - self.started_ms < 2 * self.settings.keepalive_s * 1000:
            return False
        if any(self.alive(p, now) for p in self.need_dump):
            return False
        self._synced = True
        self.need_dump.clear()
        return True


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000
