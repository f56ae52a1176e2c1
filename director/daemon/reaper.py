"""The dead-man switch: removes a dead director's VIP claims, however the director died.

A director killed with SIGKILL (or by the OOM killer, or a crash in C) cannot run its
teardown. Its TUN vanishes with its last fd, but the proxy ARP entries for the VIPs, the
nat_router address, the policy rule and the routes of its table stay in the namespace:
the dead director would go on answering ARP for the VIPs and the reals' gateway, a black
hole in front of a standby that has taken over. The firewall-mark TUNs die with it too;
their rules and tables are among what the reaper removes.

So at start-up the daemon spawns ``python -m director.daemon.reaper`` (``Reaper.start``), with the
``PlumbingSpec`` as JSON on argv and a pipe on its stdin, whose write end only the daemon
holds (non-inheritable, so no child of the daemon keeps it open). The reaper blocks
reading the pipe:

* ``SYSCTLS`` and a JSON line: once its setup is done, the daemon tells the sysctls it
  changed and their previous values (``tell_sysctls``), for the reaper to put back.
* ``VIPS`` and a JSON line: the VIPs the daemon serves now, when lvsadm added or removed
  one (``tell_vips``); after a death their proxy ARP entries are removed as the
  configuration's are.
* ``DISARM``: the daemon is stopping cleanly and tears down its plumbing itself
  (``disarm``); the reaper exits without acting.
* end of file without ``DISARM``: the daemon died. The reaper waits (bounded) for the TUN
  to vanish, which tells it no director holds the plumbing, then removes what outlived
  the daemon with ``Plumbing.cleanup_stale`` (the same code a restarting daemon uses),
  puts back the sysctls it was told with ``restore_sysctls``, and exits. If the TUN is
  still there after ``TUN_GONE_TIMEOUT_S``, someone holds it (a new director started in
  between): it leaves everything alone.

While it waits, the reaper holds only the standard library (a few MiB): the plumbing
module, with pyroute2, is imported only once the daemon has died and there is work to do.

The reaper ignores SIGINT, SIGTERM and SIGHUP: a Ctrl-C on the terminal, systemd's
SIGTERM to the whole unit or a reload must not end it before the daemon has said whether
it tore down; it never outlives its daemon by more than that. It logs on the daemon's
stderr.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface
from typing import IO, TYPE_CHECKING, Any, Final

from director import logsetup
from director.errors import TunError

if TYPE_CHECKING:
    from director.dataplane.plumbing import PlumbingSpec

log = logging.getLogger(__name__)

DISARM: Final = b"\0"
SYSCTLS: Final = b"S"
VIPS: Final = b"V"
TUN_GONE_TIMEOUT_S: Final = 5.0
"""Seconds the reaper waits, after the daemon's end, for its TUN to vanish."""
_POLL_S: Final = 0.01
STOP_TIMEOUT_S: Final = 5.0
"""Seconds ``disarm`` waits for the reaper to exit before it kills it."""


def spec_to_json(spec: PlumbingSpec) -> str:
    """``spec`` as a JSON object; addresses as text. ``spec_from_json`` reads it back."""
    # Daemon side only; imported here so that the waiting reaper never loads dataclasses'
    # dependencies (inspect, ast: 1.5 MiB of a 15 MiB budget).
    from dataclasses import fields  # noqa: PLC0415

    out: dict[str, Any] = {}
    for f in fields(spec):
        value = getattr(spec, f.name)
        if isinstance(value, tuple):
            value = [v if isinstance(v, int) else str(v) for v in value]
        elif isinstance(value, IPv4Interface):
            value = str(value)
        out[f.name] = value
    return json.dumps(out, sort_keys=True)


def spec_from_json(text: str) -> PlumbingSpec:
    """The ``PlumbingSpec`` that ``spec_to_json`` wrote; ValueError for anything else."""
    # Imported here, not at the top: the waiting reaper stays standard-library only.
    from dataclasses import fields  # noqa: PLC0415

    from director.dataplane.plumbing import PlumbingSpec  # noqa: PLC0415

    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError(f"plumbing spec: expected a JSON object, got {type(raw).__name__}")
    known = {f.name for f in fields(PlumbingSpec)}
    if unknown := sorted(set(raw) - known):
        raise ValueError(f"plumbing spec: unknown keys {', '.join(unknown)}")
    args = dict(raw)
    args["vips"] = tuple(IPv4Address(v) for v in raw.get("vips", ()))
    args["reals"] = tuple(IPv4Address(v) for v in raw.get("reals", ()))
    args["fwmarks"] = tuple(int(m) for m in raw.get("fwmarks", ()))
    if raw.get("nat_router") is not None:
        args["nat_router"] = IPv4Interface(raw["nat_router"])
    return PlumbingSpec(**args)


def tun_exists(name: str) -> bool:
    """Whether a link named ``name`` exists in this process's network namespace."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


class Reaper:
    """The daemon's handle on its reaper process. ``start`` spawns it; ``disarm`` ends it.

    Blocking calls (fork/exec, waiting): from a thread or start-up code. Once ``disarm``
    has run, the daemon's own teardown is responsible for the plumbing.
    """

    __slots__ = ("pipe", "proc")

    def __init__(self, proc: subprocess.Popen[bytes], pipe: IO[bytes]) -> None:
        self.proc = proc
        self.pipe = pipe

    @classmethod
    def start(cls, spec: PlumbingSpec) -> Reaper:
        """Spawn the reaper for ``spec`` in this namespace; it acts if we die from now on."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "director.daemon.reaper", spec_to_json(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            close_fds=True,
        )
        assert proc.stdin is not None
        log.debug("reaper: pid %d watches tun %s", proc.pid, spec.tun)
        return cls(proc, proc.stdin)

    def tell_sysctls(self, changes: Sequence[tuple[tuple[str, ...], str]]) -> None:
        """Give the reaper ``Plumbing.sysctl_changes``, to restore if the daemon dies."""
        line = json.dumps([["/".join(key), previous] for key, previous in changes])
        try:
            self.pipe.write(SYSCTLS + line.encode() + b"\n")
            self.pipe.flush()
        except BrokenPipeError:
            log.warning("reaper: pid %d has exited; sysctls will not be restored", self.proc.pid)

    def tell_vips(self, vips: Sequence[IPv4Address]) -> None:
        """Give the reaper every VIP served now, to unclaim if the daemon dies."""
        try:
            self.pipe.write(VIPS + json.dumps([str(v) for v in vips]).encode() + b"\n")
            self.pipe.flush()
        except BrokenPipeError:
            log.warning("reaper: pid %d has exited; VIPs will not be unclaimed", self.proc.pid)

    def disarm(self) -> int:
        """Tell the reaper the daemon tears down itself; wait for it. Returns its status."""
        if not self.pipe.closed:
            try:
                self.pipe.write(DISARM)
                self.pipe.flush()
            except BrokenPipeError:
                log.warning("reaper: pid %d had already exited", self.proc.pid)
            finally:
                with contextlib.suppress(BrokenPipeError):
                    self.pipe.close()
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("reaper: pid %d did not exit; killing it", self.proc.pid)
            self.proc.kill()
            return self.proc.wait()


def wait_tun_gone(name: str, timeout_s: float = TUN_GONE_TIMEOUT_S) -> bool:
    """Poll (bounded) until link ``name`` is gone; False if it is still there at the end.

    Polled: the TUN goes when the kernel closes the dead daemon's last fd, which may
    come after the pipe's end of file, and no event tells a third process that.
    """
    deadline = time.monotonic() + timeout_s
    while tun_exists(name):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)
    return True


_told_vips: list[IPv4Address] | None = None


def listen(pipe: IO[bytes]) -> tuple[bool, list[tuple[tuple[str, ...], str]]]:
    """Read the daemon's messages until ``DISARM`` or end of file: (disarmed, the sysctls
    it told, as ``Plumbing.sysctl_changes``). The VIPs it told are kept in ``_told_vips``."""
    global _told_vips
    sysctls: list[tuple[tuple[str, ...], str]] = []
    while (first := pipe.read(1)) != b"":
        if first == DISARM:
            return True, sysctls
        if first == VIPS:
            line = pipe.readline()
            try:
                _told_vips = [IPv4Address(str(v)) for v in json.loads(line)]
            except (ValueError, TypeError) as e:
                log.error("reaper: unreadable VIPs from the director: %s", e)
            continue
        if first == SYSCTLS:
            line = pipe.readline()
            try:
                sysctls = [(tuple(str(k).split("/")), str(v)) for k, v in json.loads(line)]
            except (ValueError, TypeError) as e:
                log.error("reaper: unreadable sysctls from the director: %s", e)
            continue
        log.error("reaper: unexpected byte %r from the director", first)
    return False, sysctls


def watch(spec: PlumbingSpec | str, pipe: IO[bytes]) -> tuple[str, ...] | None:
    """Block until the daemon disarms us or dies; after a death, clean up after it.

    ``spec`` is the ``PlumbingSpec`` or its JSON (``spec_to_json``); JSON is read only
    after a death, so a waiting reaper never loads the plumbing. Returns what was removed
    and restored, or None when nothing was done (disarmed, the TUN held by a director, or
    an unreadable spec).
    """
    disarmed, sysctls = listen(pipe)
    if disarmed:
        log.debug("reaper: the director stops cleanly")
        return None
    # The plumbing (and pyroute2, dataclasses) only now: there is work to do.
    import dataclasses  # noqa: PLC0415

    from director.dataplane.plumbing import Plumbing, restore_sysctls  # noqa: PLC0415

    if isinstance(spec, str):
        try:
            spec = spec_from_json(spec)
        except (ValueError, TypeError) as e:
            log.error("reaper: %s", e)
            return None
    if _told_vips is not None:
        spec = dataclasses.replace(spec, vips=tuple(dict.fromkeys((*spec.vips, *_told_vips))))
    log.warning("reaper: the director died; removing its claims on tun %s's behalf", spec.tun)
    if not wait_tun_gone(spec.tun):
        log.error(
            "reaper: tun %s still exists %.0f s after the director died; someone holds it, "
            "leaving its plumbing alone",
            spec.tun,
            TUN_GONE_TIMEOUT_S,
        )
        return None
    try:
        removed = Plumbing.cleanup_stale(spec)
    except TunError as e:
        log.error("reaper: %s", e)
        removed = ()
    else:
        log.warning("reaper: removed %s", ", ".join(removed) or "nothing (all gone already)")
    restored = restore_sysctls(sysctls)
    if restored:
        log.warning("reaper: restored %s", ", ".join(restored))
    return removed + restored


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    logsetup.setup()
    if len(argv) != 1:
        log.error("reaper: usage: python -m director.daemon.reaper SPEC_JSON")
        return 2
    try:
        raw = json.loads(argv[0])
    except ValueError as e:
        log.error("reaper: plumbing spec: %s", e)
        return 2
    if not isinstance(raw, dict) or not isinstance(raw.get("tun"), str):
        log.error("reaper: plumbing spec: expected a JSON object with a tun name")
        return 2
    watch(argv[0], os.fdopen(sys.stdin.fileno(), "rb", buffering=0, closefd=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
