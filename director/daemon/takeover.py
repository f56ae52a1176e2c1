"""Hot takeover: ``lvsd run --takeover`` replaces a running daemon without losing a connection.

The new daemon connects to the running one's control socket and asks for everything it
serves with (the protocol is in docs/control.md):

1. new -> old: ``{"cmd": "takeover", "version": 1, "pid": N}``.
2. The old daemon stops reading its TUNs (packets wait in the TUN queue), copies its
   connection table and templates (a snapshot, the file format of
   ``director.daemon.snapshot``), and answers one line: the plumbing it holds (every
   change its setup made, as ``Plumbing.export`` gives it), its plumbing spec, the health
   verdicts of nanny's targets, how many descriptors follow and how long the snapshot is.
   The descriptors travel with SCM_RIGHTS on the line's bytes: the TUN queues, then the
   control socket's listener and the metrics listener (if it has one). The snapshot's
   bytes follow the line.
3. The new daemon adopts the plumbing and the listeners, restores the table, takes the
   health verdicts, starts reading the TUNs and only then sends
   ``{"cmd": "takeover_done"}``.
4. The old daemon answers ``{"ok": true}`` and exits without tearing anything down: the
   new one owns it all. If the new daemon hangs up, sends anything else, or says nothing
   for ``CONFIRM_TIMEOUT_S``, the old one reads its TUNs again and serves on.

Packets that arrive while neither reads wait in the TUN's queue (500 packets by
default); beyond that the kernel drops them and TCP retransmits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from director.daemon import reaper, snapshot
from director.daemon.nanny import Nanny
from director.daemon.pulse import Pulse
from director.dataplane import fastpath
from director.dataplane.plumbing import Plumbing
from director.errors import ConfigError, DirectorError
from director.ipvs.service import IPVS
from failover.events import Role
from scheduling.base import SchedulerBase

log = logging.getLogger(__name__)

VERSION = 1
CONFIRM_TIMEOUT_S = 30.0
SEND_TIMEOUT_S = 30.0
MAX_FDS = 64
MAX_LINE = 16 << 20


class TakeoverError(DirectorError):
    """The takeover could not be done; the running daemon serves on."""


# --- the running daemon's side ---------------------------------------------------------


class Director(Protocol):
    """What the running daemon's side needs of ``director.daemon.director.Director``."""

    table: fastpath.ConnTable
    ipvs: IPVS
    plumbing: Plumbing
    nanny: Nanny

    @property
    def serving_packets(self) -> bool: ...
    def clock(self) -> int: ...
    def pause_packets(self) -> None: ...
    def resume_packets(self) -> None: ...
    def listener_fds(self) -> list[tuple[str, int]]: ...
    def failover_role(self) -> str | None: ...
    def handed_over(self, pid: int) -> None: ...


async def hand_over(
    d: Director, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: dict[str, Any]
) -> None:
    """Answer a takeover request on a control connection (the running daemon)."""
    who = req.get("pid", "?")
    if req.get("version") != VERSION:
        error = f"takeover version {req.get('version')!r}; this lvsd speaks version {VERSION}"
        writer.write(_line({"ok": False, "error": error}))
        await writer.drain()
        return
    if not d.serving_packets:
        writer.write(_line({"ok": False, "error": "not serving (starting, stopping or "
                                                   "handing over already)"}))  # fmt: skip
        await writer.drain()
        return
    log.info("takeover: handing over to pid %s", who)
    paused = time.monotonic()
    d.pause_packets()
    handed = False
    try:
        cap = await snapshot.capture(d.table, d.ipvs, d.clock())
        data = snapshot.encode(cap)
        plumbing, tun_fds = d.plumbing.export()
        listeners = d.listener_fds()
        header = {
            "ok": True,
            "result": {
                "version": VERSION,
                "pid": os.getpid(),
                "spec": reaper.spec_to_json(d.plumbing.spec),
                "plumbing": plumbing,
                "tuns": len(tun_fds),
                "listeners": [name for name, _ in listeners],
                "health": d.nanny.export_health(),
                "role": d.failover_role(),
                "schedulers": scheduler_positions(d.ipvs),
                "snapshot": len(data),
            },
        }
        fds = [*tun_fds, *(fd for _, fd in listeners)]
        sock = writer.get_extra_info("socket")
        await asyncio.to_thread(_send, sock.fileno(), _line(header), fds, data)
        async with asyncio.timeout(CONFIRM_TIMEOUT_S):
            answer = await reader.readline()
        try:
            done = json.loads(answer).get("cmd") == "takeover_done"
        except (ValueError, AttributeError):
            done = False
        if not done:
            raise TakeoverError(f"pid {who} did not confirm ({answer[:80]!r})")
        writer.write(_line({"ok": True, "result": {"pid": os.getpid()}}))
        await writer.drain()
        handed = True
        log.info(
            "takeover: pid %s serves now (%d entries handed over, %.0f ms without a reader); "
            "exiting",
            who,
            cap.count,
            (time.monotonic() - paused) * 1000,
        )
        d.handed_over(who if isinstance(who, int) else 0)
    except (OSError, TimeoutError, TakeoverError) as e:
        log.error("takeover by pid %s failed: %s; serving on", who, e)
    finally:
        if not handed:
            d.resume_packets()


def _send(fd: int, line: bytes, fds: list[int], data: bytes) -> None:
    """Send ``line`` with ``fds`` attached, then ``data``, on (a duplicate of) socket ``fd``."""
    raw = socket.socket(fileno=os.dup(fd))
    try:
        raw.settimeout(SEND_TIMEOUT_S)
        socket.send_fds(raw, [line], fds)
        raw.sendall(data)
    finally:
        raw.setblocking(False)  # the description is shared with the event loop's socket
        raw.close()


def _line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


# --- the new daemon's side -------------------------------------------------------------


@dataclass
class Received:
    """What a running daemon handed over."""

    pid: int
    spec: str
    plumbing: dict[str, Any]
    tuns: list[int]
    listeners: dict[str, socket.socket]
    health: list[list[Any]]
    role: str | None
    schedulers: list[list[Any]]
    snapshot: snapshot.Snapshot
    sock: socket.socket

    def close(self) -> None:
        """Give back what was not used (after a failure)."""
        for fd in self.tuns:
            os.close(fd)
        for s in self.listeners.values():
            s.close()
        self.sock.close()


def request(path: Path) -> Received:
    """Ask the daemon serving ``path`` to hand over (blocking: a worker thread)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fds: list[int] = []
    try:
        sock.settimeout(SEND_TIMEOUT_S)
        try:
            sock.connect(str(path))
        except OSError as e:
            raise TakeoverError(
                f"control_socket {path}: no running lvsd to take over from "
                f"({os.strerror(e.errno) if e.errno else e})"
            ) from None
        sock.sendall(_line({"cmd": "takeover", "version": VERSION, "pid": os.getpid()}))
        buf = bytearray()
        while b"\n" not in buf:
            data, got, _flags, _addr = socket.recv_fds(sock, 1 << 16, MAX_FDS)
            fds.extend(got)
            if not data:
                raise TakeoverError("the running lvsd hung up")
            buf += data
            if len(buf) > MAX_LINE:
                raise TakeoverError("the running lvsd's answer is too long")
        line, _, rest = bytes(buf).partition(b"\n")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise TakeoverError(f"the running lvsd refused: {answer.get('error')}")
        res = answer["result"]
        if res.get("version") != VERSION:
            raise TakeoverError(
                f"the running lvsd speaks takeover version {res.get('version')!r}, "
                f"this one {VERSION}"
            )
        want = res["tuns"] + len(res["listeners"])
        if len(fds) != want:
            raise TakeoverError(f"{len(fds)} descriptors received, {want} announced")
        body = bytearray(rest)
        while len(body) < res["snapshot"]:
            chunk = sock.recv(min(1 << 20, res["snapshot"] - len(body)))
            if not chunk:
                raise TakeoverError("the running lvsd hung up in the middle of the table")
            body += chunk
        snap = snapshot.parse(bytes(body), Path(f"<from pid {res['pid']}>"))
        tuns = fds[: res["tuns"]]
        listeners = {
            name: socket.socket(fileno=fd)
            for name, fd in zip(res["listeners"], fds[res["tuns"] :], strict=True)
        }
        for s in listeners.values():
            s.setblocking(False)
        return Received(
            res["pid"], res["spec"], res["plumbing"], tuns, listeners, res["health"],
            res.get("role"), res.get("schedulers", []), snap, sock,
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, snapshot.SnapshotError) as e:
        for fd in fds:
            os.close(fd)
        sock.close()
        if isinstance(e, TakeoverError):
            raise
        raise TakeoverError(f"takeover: {e}") from None
    except BaseException:
        for fd in fds:
            os.close(fd)
        sock.close()
        raise


def confirm(got: Received) -> None:
    """Tell the old daemon this one serves; it exits (blocking: a worker thread)."""
    try:
        got.sock.sendall(_line({"cmd": "takeover_done"}))
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = got.sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        log.info("takeover: took over from pid %d (%s)", got.pid, answer.decode().strip())
    except OSError as e:
        log.warning("takeover: pid %d: %s (it may still be exiting)", got.pid, e)
    finally:
        got.sock.close()


def adopt_plumbing(plumbing: Plumbing, got: Received) -> None:
    """Hold the running daemon's plumbing (the new daemon); ConfigError if its spec (VIPs,
    interfaces, marks) is not this configuration's."""
    if got.spec != reaper.spec_to_json(plumbing.spec):
        raise ConfigError(
            "takeover: the running lvsd's plumbing (VIPs, interfaces, marks) differs "
            "from this configuration's; stop it and start this one instead"
        )
    plumbing.adopt(got.plumbing, got.tuns)
    got.tuns = []  # the plumbing holds them now


def restore_handed(
    table: fastpath.ConnTable, ipvs: IPVS, nanny: Nanny, pulse: Pulse | None, got: Received
) -> None:
    """Take over the table, health verdicts, rotations and failover role (the new daemon,
    before it reads a packet). A standby's table comes by sync from the active director."""
    standby = pulse is not None and got.role != Role.MASTER.name
    snap = got.snapshot
    done = (
        snapshot.Restored(0, 0, 0, 0)
        if standby
        else snapshot.restore(table, ipvs, snap, time.monotonic_ns() // 1_000_000, snap.created_ms)
    )
    if pulse is not None and got.role == Role.MASTER.name:
        pulse.peer.resume = Role.MASTER
    out = nanny.adopt_health(got.health)
    rotations = adopt_positions(ipvs, got.schedulers)
    log.info(
        "takeover: %d connections and templates from pid %d (%d without their "
        "destination)%s; %d reals out of service as there; %d rotations continued; "
        "failover role %s",
        done.restored,
        got.pid,
        done.unmatched,
        " left for the active director's sync" if standby else "",
        out,
        rotations,
        got.role or "none",
    )


def scheduler_positions(ipvs: IPVS) -> list[list[Any]]:
    """[protocol, vaddr, vport, fwmark, scheduler, [[daddr, dport]...], position] of every
    service whose scheduler keeps a rotation (rr, wrr)."""
    out: list[list[Any]] = []
    for svc in ipvs.services.values():
        sched = svc.scheduler
        if isinstance(sched, SchedulerBase) and (pos := sched.position()):
            dests = [[d.addr, d.port] for d in svc.dests]
            out.append([*svc.key, svc.sched_name, dests, pos])
    return out


def adopt_positions(ipvs: IPVS, rows: list[list[Any]]) -> int:
    """Continue the rotations handed over where the service, its scheduler and its list of
    destinations are the same here; returns how many."""
    n = 0
    for proto, vaddr, vport, fwmark, name, dests, pos in rows:
        svc = ipvs.services.get((proto, vaddr, vport, fwmark))
        if svc is None or svc.sched_name != name or not isinstance(svc.scheduler, SchedulerBase):
            continue
        if [[d.addr, d.port] for d in svc.dests] == dests and svc.scheduler.set_position(pos):
            n += 1
    return n
