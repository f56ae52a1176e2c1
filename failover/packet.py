"""The wire format between two directors: an authenticated envelope, and the heartbeat in it.

Every datagram (heartbeat, connection sync, configuration) is one envelope, network
byte order::

    0   4s  magic "LVSP"            4  u8 version (1)   5  u8 kind (1 heartbeat, 2 sync, 3 config)
    6   u8  node (0 primary, 1 backup)                  7  u8 flags (kind-specific)
    8   u64 incarnation             sender's wall clock in ns when it started
    16  u64 seq                     per incarnation, +1 for every datagram sent
    24  u64 sent_ms                 sender's wall clock in ms when sent
    32  u32 length                  of the payload
    36  payload
    ..  32 bytes HMAC-SHA256(key, everything before it)

Receiving (``Guard.check``) rejects, and counts: *malformed* (bad size, magic, version or
kind, our own node id: a reflected datagram), *forged* (HMAC mismatch: wrong key or
tampering), *replayed* (an older incarnation, or a sequence number already seen or older
than the 64-datagram window, as IPsec's anti-replay window) and *stale* (``sent_ms``
further than ``max_age_ms`` from our wall clock either way). Sequence numbers that leave
the window unseen count as *lost*: that is the heartbeat loss metric.

Wall-clock time appears here and only here: a receiver that restarted has no window, and
only the sender's clock tells a replay of last week's datagrams from a fresh one. The two
directors' clocks must therefore agree within ``max_age_ms`` (NTP). Timers use monotonic
time elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Final

MAGIC: Final = b"LVSP"
VERSION: Final = 1
HEADER: Final = struct.Struct("!4sBBBBQQQI")
MAC_LEN: Final = 32
MAX_PAYLOAD: Final = 65000
WINDOW: Final = 64
MIN_KEY_LEN: Final = 16

PRIMARY: Final = 0
BACKUP: Final = 1

# Heartbeat flags (envelope flags of a HEARTBEAT).
HB_WANTS_ACTIVE: Final = 0x01
HB_NEED_DUMP: Final = 0x02
HB_NEED_CONFIG: Final = 0x04
# Sync flags (envelope flags of a SYNC).
SYNC_DUMP_END: Final = 0x01


class Kind(IntEnum):
    HEARTBEAT = 1
    SYNC = 2
    CONFIG = 3


class Verdict(StrEnum):
    """Why a datagram was refused; the names of the rejection counters."""

    MALFORMED = "malformed"
    FORGED = "forged"
    REPLAYED = "replayed"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: Kind
    node: int
    flags: int
    incarnation: int
    seq: int
    sent_ms: int
    payload: bytes


def seal(key: bytes, env: Envelope) -> bytes:
    """The datagram for ``env``, authenticated with ``key`` (empty: unauthenticated mode)."""
    if len(env.payload) > MAX_PAYLOAD:
        raise ValueError(f"envelope payload: at most {MAX_PAYLOAD} bytes, got {len(env.payload)}")
    head = HEADER.pack(
        MAGIC,
        VERSION,
        env.kind,
        env.node,
        env.flags,
        env.incarnation,
        env.seq,
        env.sent_ms,
        len(env.payload),
    )
    body = head + env.payload
    return body + hmac.new(key, body, hashlib.sha256).digest()


def unseal(key: bytes, data: bytes) -> Envelope | Verdict:
    """Parse and authenticate one datagram; no replay or age checks (see ``Guard``)."""
    if len(data) < HEADER.size + MAC_LEN:
        return Verdict.MALFORMED
    magic, version, kind, node, flags, inc, seq, sent_ms, length = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION or HEADER.size + length + MAC_LEN != len(data):
        return Verdict.MALFORMED
    body, mac = data[:-MAC_LEN], data[-MAC_LEN:]
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
        return Verdict.FORGED
    if kind not in Kind._value2member_map_ or node not in (PRIMARY, BACKUP):
        return Verdict.MALFORMED
    return Envelope(Kind(kind), node, flags, inc, seq, sent_ms, data[HEADER.size : -MAC_LEN])


class Sealer:
    """Sending side of one director: its incarnation and sequence counter."""

    def __init__(self, key: bytes, node: int, incarnation: int) -> None:
        self.key = key
        self.node = node
        self.incarnation = incarnation
        self.seq = 0

    def seal(self, kind: Kind, payload: bytes, wall_ms: int, flags: int = 0) -> tuple[int, bytes]:
        """(seq, datagram) for the next message; each call uses a new sequence number."""
        self.seq += 1
        env = Envelope(kind, self.node, flags, self.incarnation, self.seq, wall_ms, payload)
        return self.seq, seal(self.key, env)


@dataclass(frozen=True, slots=True)
class GuardStats:
    accepted: int
    lost: int
    rejected: dict[str, int]


class Guard:
    """Receiving side: authenticates, and refuses replays and stale datagrams from the peer.

    ``node`` is our own id; datagrams claiming it are reflections and refused. Not
    thread-safe; event-loop thread only.
    """

    def __init__(self, key: bytes, node: int, max_age_ms: int) -> None:
        if max_age_ms <= 0:
            raise ValueError(f"Guard.max_age_ms: must be > 0, got {max_age_ms}")
        self.key = key
        self.node = node
        self.max_age_ms = max_age_ms
        self.incarnation = -1
        self.highest = 0
        self.bitmap = 0  # bit i set: seq (highest - i) was accepted
        self.accepted = 0
        self.lost = 0
        self.rejected = dict.fromkeys((v.value for v in Verdict), 0)

    def check(self, data: bytes, wall_ms: int) -> Envelope | Verdict:
        """The envelope if ``data`` is authentic, fresh and new; else the counted reason."""
        verdict = self._check(data, wall_ms)
        if isinstance(verdict, Verdict):
            self.rejected[verdict.value] += 1
        else:
            self.accepted += 1
        return verdict

    def _check(self, data: bytes, wall_ms: int) -> Envelope | Verdict:
        env = unseal(self.key, data)
        if isinstance(env, Verdict):
            return env
        if env.node == self.node:
            return Verdict.MALFORMED
        if abs(wall_ms - env.sent_ms) > self.max_age_ms:
            return Verdict.STALE
        if env.incarnation < self.incarnation:
            return Verdict.REPLAYED
        if env.incarnation > self.incarnation:
            # The peer restarted: a new sequence space. What came before the first datagram
            # we hear counts as seen, so neither lost nor acceptable later.
            self.incarnation = env.incarnation
            self.highest = env.seq
            self.bitmap = (1 << WINDOW) - 1
            return env
        if env.seq > self.highest:
            shift = env.seq - self.highest
            if shift >= WINDOW:
                self.lost += WINDOW - self.bitmap.bit_count() + (shift - WINDOW)
                self.bitmap = 0
            else:
                dropped = self.bitmap >> (WINDOW - shift)
                self.lost += shift - dropped.bit_count()
                self.bitmap = (self.bitmap << shift) & ((1 << WINDOW) - 1)
            self.bitmap |= 1
            self.highest = env.seq
            return env
        back = self.highest - env.seq
        if back >= WINDOW or self.bitmap >> back & 1:
            return Verdict.REPLAYED
        self.bitmap |= 1 << back
        return env

    def statistics(self) -> GuardStats:
        return GuardStats(self.accepted, self.lost, dict(self.rejected))


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A director's announcement: its role (``events.Role`` value) and what it needs.

    ``wants_active`` (HB_WANTS_ACTIVE): a primary holding the active peer's table, ready to
    take the VIPs back. ``need_dump``: a standby without the whole table. ``need_config``:
    a standby whose configuration digest differs from the active's. ``echo_seq`` and
    ``echo_held_ms`` return the newest peer sequence number heard and how long ago, for the
    round-trip time. ``config_digest`` is SHA-256 of the sender's normalized lvs.cf.
    """

    role: int
    wants_active: bool = False
    need_dump: bool = False
    need_config: bool = False
    echo_seq: int = 0
    echo_held_ms: int = 0
    config_digest: bytes = bytes(32)

    @property
    def flags(self) -> int:
        return (
            (HB_WANTS_ACTIVE if self.wants_active else 0)
            | (HB_NEED_DUMP if self.need_dump else 0)
            | (HB_NEED_CONFIG if self.need_config else 0)
        )


_HB: Final = struct.Struct("!BQI32s")


def encode_heartbeat(hb: Heartbeat) -> bytes:
    """The payload of a HEARTBEAT envelope; the flags travel in the envelope's flags."""
    return _HB.pack(hb.role, hb.echo_seq, min(hb.echo_held_ms, 0xFFFFFFFF), hb.config_digest)


def decode_heartbeat(payload: bytes, flags: int) -> Heartbeat | None:
    """The heartbeat in an authenticated envelope, or None if its payload is malformed."""
    if len(payload) != _HB.size:
        return None
    role, echo_seq, held, digest = _HB.unpack(payload)
    if role > 3:
        return None
    return Heartbeat(
        role=role,
        wants_active=bool(flags & HB_WANTS_ACTIVE),
        need_dump=bool(flags & HB_NEED_DUMP),
        need_config=bool(flags & HB_NEED_CONFIG),
        echo_seq=echo_seq,
        echo_held_ms=held,
        config_digest=digest,
    )
