"""``lvsd demo``: the thesis's cluster on one machine, serving.

Brings the lab up, starts the director in the lab's director node on the thesis's
lvs.cf (VIP 10.0.1.5, reals 192.168.1.10-12 with weights 2000/1000/1000, ports 80
and 21, wlc), sends a few hundred HTTP requests from the client, fetches a file over
FTP through the VIP in passive mode (the reals' vsftpd names its private address; the
director's FTP helper rewrites it), prints the ipvsadm-style table with its counters and
how often each real answered, and takes the lab down (``--keep`` leaves it up for
exploring).

``LabDirector`` — an ``lvsd run`` inside a lab node, ready when it says so through
sd_notify — is shared with the tests and the benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from director.config import DirectorConfig, format_config, load_config
from director.errors import DirectorError
from director.ops import client
from director.ops.listing import format_list
from lab.cluster import Lab, LabSpec
from lab.errors import LabError

THESIS_CF = Path(__file__).resolve().parents[2] / "examples" / "thesis-lvs.cf"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


class LabDirector:
    """``lvsd run`` in a lab node on ``cfg``; ``start()`` returns once it is serving.

    Readiness is the daemon's own sd_notify READY=1 on a socket of ours, so nothing
    polls or sleeps. ``stop()`` sends SIGTERM to the daemon's PID and waits for it.
    ``env`` adds variables (e.g. ``DIRECTOR_NO_EXTENSIONS=1``); ``ssh`` gives the daemon
    the lab's ssh client settings (a lab up with ``sshd=True``).
    ``env`` adds variables (e.g. ``DIRECTOR_NO_EXTENSIONS=1``); ``nofile`` sets the
    daemon's descriptor limit, soft and hard (what ``ulimit -n`` gives a shell).
    ``prefix`` goes before the command (a wrapper that mounts the state directory).
    Snapshots go to ``dir/state`` unless ``cfg`` names a ``state_dir``. ``dir`` (the
    control socket, the log, the lvs.cf written) is in the lab's run directory, and goes
    with the lab.
    """

    def __init__(
        self,
        lab: Lab,
        cfg: DirectorConfig,
        *,
        node: str = "director",
        env: dict[str, str] | None = None,
        ssh: bool = False,
        nofile: int | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.lab = lab
        self.nofile = nofile
        self.node = node
        self.prefix = tuple(prefix)
        # In the lab's run directory, which ``lab.down()`` removes with everything in it.
        lab.run_dir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f"lvsd-{node}-", dir=lab.run_dir))
        self.socket_path = self.dir / "lvsd.sock"
        # Snapshots go to the lab daemon's own directory unless the file names one.
        state = cfg.state_dir
        if state == DirectorConfig().state_dir:
            state = self.dir / "state"
        self.cfg = replace(cfg, control_socket=self.socket_path, state_dir=state)
        self.config_path = self.dir / "lvs.cf"
        self.config_path.write_text(format_config(self.cfg))
        self.log_path = self.dir / "lvsd.log"
        self._env = env or {}
        self._ssh = ssh
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, extra: Sequence[str] = ()) -> LabDirector:
        """Start ``lvsd run`` (with ``extra`` arguments); return once it is serving."""
        notify_path = str(self.dir / "notify")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(notify_path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(notify_path)
            notify.settimeout(READY_TIMEOUT_S)
            env = {**os.environ, **self._env, "NOTIFY_SOCKET": notify_path}
            argv = [sys.executable, "-m", "director", "run", "-c", str(self.config_path)]
            argv = [*self.prefix, *argv, *extra]
            if self._ssh:  # nanny's ``ssh REAL uptime`` with the lab's keys
                argv = self.lab.ssh_argv(argv)
            # A second start (a restart, a takeover) appends: the first process may
            # still be writing.
            with self.log_path.open("ab") as log:
                self.proc = self.lab.popen(
                    self.node,
                    argv,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=None if self.nofile is None else self._limit_nofile,
                )
            deadline = time.monotonic() + READY_TIMEOUT_S
            while True:
                try:
                    msg = notify.recv(4096)
                except TimeoutError:
                    self.stop()
                    raise LabError(f"lvsd run did not get ready: {self.log()}") from None
                if b"READY=1" in msg.split(b"\n"):
                    return self
                if time.monotonic() > deadline:
                    self.stop()
                    raise LabError(f"lvsd run did not get ready: {self.log()}")

    def _limit_nofile(self) -> None:
        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def status(self) -> dict[str, Any]:
        result = client.request(self.socket_path, "status")
        assert isinstance(result, dict)
        return result

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        """SIGTERM, wait; returns the exit status (None if it was never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> LabDirector:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_load(lab: Lab, url: str, count: int) -> dict[str, Any]:
    """``lab.loadgen`` from the lab's client; its JSON result."""
    done = lab.run(
        "client",
        [sys.executable, "-m", "lab.loadgen", url, "--count", str(count)],
        check=False,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


FTP_FETCH = """
import ftplib, json, sys
ftp = ftplib.FTP(sys.argv[1], timeout=10)
ftp.trust_server_pasv_ipv4_address = True
ftp.login()
got = []
done = ftp.retrbinary("RETR name.txt", got.append)
ftp.quit()
print(json.dumps({"done": done, "real": b"".join(got).decode().strip()}))
"""


def fetch_ftp(lab: Lab, vip: str) -> dict[str, Any]:
    """A passive FTP download of ``name.txt`` from the lab's client through ``vip``:
    ``{"done": <226 reply>, "real": <real that served>}``, or ``{"error": ...}``."""
    done = lab.run("client", [sys.executable, "-c", FTP_FETCH, vip], check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["no output"]}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def add_command(sub: Any) -> None:
    p = sub.add_parser("demo", help="the thesis's cluster in a lab, serving a few hundred requests")
    p.add_argument("-c", "--config", default=str(THESIS_CF), help="the lvs.cf to serve")
    p.add_argument("--name", default="demo", help="lab name (default demo)")
    p.add_argument("--requests", type=int, default=300, help="HTTP requests to send")
    p.add_argument("--keep", action="store_true", help="leave the lab and the director running")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except DirectorError as e:
        print(f"lvsd: {e}", file=sys.stderr)
        return 1
    lab = Lab(LabSpec(), name=args.name)
    print(f"lvsd demo: building lab {lab.name!r} (client, director, 3 real servers)")
    lab.up(reals=3, ftp=True)
    director = LabDirector(lab, cfg)
    try:
        director.start()
        vip = cfg.virtuals[0].address
        print(f"lvsd demo: director serving; {args.requests} HTTP requests to {vip}:80")
        result = run_load(lab, f"http://{vip}/", args.requests)
        ftp = fetch_ftp(lab, str(vip)) if 21 in cfg.virtuals[0].ports else None
        status = director.status()
        print()
        print(format_list(status))
        print(format_list(status, stats=True))
        print(f"fast path: {status['fastpath']}; connections in table: {status['connections']}")
        print(f"requests: {result['ok']} answered, {result['failed']} failed")
        for real, n in result["by_real"].items():
            print(f"  {real}: {n}")
        if ftp is not None:
            if "error" in ftp:
                print(f"FTP: passive download of name.txt from {vip} failed: {ftp['error']}")
            else:
                print(
                    f"FTP: fetched name.txt from {vip}:21 in passive mode, served by "
                    f"{ftp['real']} ({ftp['done']})"
                )
        ok = result["failed"] == 0 and (ftp is None or "error" not in ftp)
    except BaseException:
        director.stop()
        lab.down()
        raise
    if args.keep:
        print(
            f"lvsd demo: lab {lab.name!r} left up with the director running "
            f"(pid {director.proc.pid if director.proc else '?'}); "
            f"stop it with: lvsd lab down --name {lab.name}"
        )
    else:
        director.stop()
        lab.down()
        print(f"lvsd demo: lab {lab.name!r} removed")
    return 0 if ok else 1
