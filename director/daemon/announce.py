"""Announcing the VIPs over BGP through BIRD, a routing daemon run as a child process.

lvsd speaks no BGP. In active-active mode (docs/scale-out.md) it writes a BIRD 2
configuration with one BGP session to ``bgp_neighbor`` and a static protocol ``vips``
holding a /32 route per VIP, starts ``bird`` in the foreground under
``setpriv --pdeathsig KILL`` (so a director that dies, even by SIGKILL, takes its routing
daemon with it: the kernel closes the BGP session's TCP connection and the router
withdraws the routes at once), and drives it through BIRD's control socket:

* ``announce()``: ``enable vips``: the routes go to the router;
* ``withdraw()``: ``disable vips``: the router is told they are gone; the session stays.

The static protocol starts disabled, so nothing is announced before the director says
so. Graceful restart is off: a router that kept a dead director's routes as stale
would send it traffic for minutes.

The control protocol is BIRD's (one command a line; replies are lines ``NNNN text``,
``NNNN-text`` continues, a reply code from 8000 up is an error). Nothing here imports
more than the standard library's asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from director.errors import DirectorError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
"""How long ``start`` waits for BIRD's control socket."""
STOP_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 5.0
_FINAL = re.compile(rb"^([0-9]{4}) ")


class AnnounceError(DirectorError):
    """BIRD could not be started, or refused a command."""


@dataclass(frozen=True, slots=True)
class BgpSpec:
    """One director's BGP session: its address and AS, the router's, the VIPs."""

    local: IPv4Address
    asn: int
    neighbor: IPv4Address
    neighbor_asn: int
    hold_time: int
    vips: tuple[IPv4Address, ...]


def bird_config(spec: BgpSpec) -> str:
    """The BIRD 2 configuration for ``spec``: static ``vips`` (disabled) exported to the
    router over one BGP session, next hop this director's address."""
    keepalive = max(1, spec.hold_time // 3)
    routes = "".join(f"    route {vip}/32 blackhole;\n" for vip in spec.vips)
    return (
        f"router id {spec.local};\n"
        "log stderr { info, remote, warning, error, auth, fatal, bug };\n"
        "protocol device { }\n"
        "protocol static vips {\n"
        "    disabled;\n"
        "    ipv4;\n"
        f"{routes}"
        "}\n"
        "protocol bgp uplink {\n"
        f"    local {spec.local} as {spec.asn};\n"
        f"    neighbor {spec.neighbor} as {spec.neighbor_asn};\n"
        f"    hold time {spec.hold_time};\n"
        f"    keepalive time {keepalive};\n"
        "    connect delay time 1;\n"
        "    connect retry time 1;\n"
        "    error wait time 1, 3;\n"
        "    graceful restart off;\n"
        "    ipv4 {\n"
        "        import none;\n"
        '        export where proto = "vips";\n'
        "        next hop self;\n"
        "    };\n"
        "}\n"
    )


def bird_binary() -> str:
    """BIRD's path; AnnounceError (at start-up, before anything is touched) if BIRD or
    setpriv (util-linux: the parent-death signal) is missing."""
    found = shutil.which("bird") or ("/usr/sbin/bird" if Path("/usr/sbin/bird").exists() else None)
    if found is None:
        raise AnnounceError(
            "active_active: BIRD is not installed (bird, Debian package bird2); "
            "./bootstrap install installs it"
        )
    if shutil.which("setpriv") is None:
        raise AnnounceError("active_active: setpriv (util-linux) is not installed")
    return found


async def bird_command(sock: Path, command: str, limit_s: float = COMMAND_TIMEOUT_S) -> str:
    """Send ``command`` on BIRD's control socket ``sock``; its reply text.

    Raises AnnounceError for an error reply (code 8000 and up) or no answer in time.
    """
    try:
        async with asyncio.timeout(limit_s):
            reader, writer = await asyncio.open_unix_connection(str(sock))
            try:
                await _reply(reader)  # the greeting, 0001
                writer.write(command.encode() + b"\n")
                await writer.drain()
                code, text = await _reply(reader)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError) as e:
        raise AnnounceError(f"bird {command!r}: {e or 'no answer'}") from None
    if code >= 8000:
        raise AnnounceError(f"bird {command!r}: {text}")
    return text


async def _reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    lines: list[str] = []
    while True:
        raw = await reader.readline()
        if not raw:
            raise OSError("bird closed the control connection")
        lines.append(raw[5:].decode(errors="replace").rstrip())
        m = _FINAL.match(raw)
        if m is not None:
            return int(m.group(1)), "\n".join(lines)


class Announcer:
    """One BIRD child announcing ``spec.vips``; ``start``, then ``announce``/``withdraw``,
    then ``close``. Its configuration, control socket and log are in ``run_dir`` (made
    afresh at start, removed at close; a temporary directory when None). Event-loop thread
    only (the child is spawned from it, so its parent-death signal follows this process)."""

    def __init__(self, spec: BgpSpec, run_dir: Path | None = None, bird: str | None = None) -> None:
        self.spec = spec
        self.announced = False
        self._bird = bird or bird_binary()
        self._run_dir = run_dir
        self._dir: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def socket_path(self) -> Path:
        assert self._dir is not None
        return self._dir / "bird.ctl"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def start(self) -> None:
        bird = self._bird
        if self._run_dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=f"lvsd-bird-{self.spec.local}-"))
        else:
            # What a director killed by SIGKILL left here is stale: its BIRD died with it.
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir.mkdir(mode=0o700, parents=True)
            self._dir = self._run_dir
        conf = self._dir / "bird.conf"
        conf.write_text(bird_config(self.spec))
        log_file = (self._dir / "bird.log").open("wb")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *("setpriv", "--pdeathsig", "KILL", bird, "-f"),
                *("-c", str(conf), "-s", str(self.socket_path)),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            log_file.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while True:
            if self._proc.returncode is not None:
                text = (self._dir / "bird.log").read_text(errors="replace").strip()
                self._remove_dir()
                raise AnnounceError(f"bird exited with {self._proc.returncode}: {text}")
            try:
                await bird_command(self.socket_path, "show status", limit_s=1.0)
                break
            except AnnounceError:
                if loop.time() > deadline:
                    await self.close()
                    raise AnnounceError(
                        f"bird did not open its control socket in {START_TIMEOUT_S:g} s"
                    ) from None
                await asyncio.sleep(0.05)
        log.info(
            "announce: bird (pid %d) peering with %s (AS %d) as AS %d; %d VIPs, withdrawn",
            self._proc.pid,
            self.spec.neighbor,
            self.spec.neighbor_asn,
            self.spec.asn,
            len(self.spec.vips),
        )

    async def announce(self) -> None:
        await bird_command(self.socket_path, "enable vips")
        self.announced = True
        log.info("announce: announcing %s", " ".join(map(str, self.spec.vips)))

    async def withdraw(self) -> None:
        await bird_command(self.socket_path, "disable vips")
        self.announced = False
        log.info("announce: withdrew %s", " ".join(map(str, self.spec.vips)))

    async def close(self) -> None:
        """Withdraw (if announced), then end BIRD and remove its files."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            if self.announced:
                with contextlib.suppress(AnnounceError):
                    await self.withdraw()
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self._proc = None
        self._remove_dir()

    def _remove_dir(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def vips_of(addrs: Sequence[IPv4Address]) -> tuple[IPv4Address, ...]:
    """The VIPs in a stable order, each once."""
    return tuple(sorted(set(addrs)))
