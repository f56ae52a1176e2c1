"""An external check program (``send_program``): nanny's external_check, bounded.

The command line is split like a shell would (no shell runs); ``%h`` and ``%p`` are
replaced by the real server's address and port. The program runs in its own process
group with stdin and stderr on /dev/null; when ``spec.timeout`` passes, the whole group
is killed and the program reaped, so nothing it started outlives the probe. It passes
when it exits 0 and, if ``expect`` is set, its output without the final newline equals
``expect`` (``"*"``: any output; a regular expression with ``use_regex``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import shlex
import signal
import subprocess

from healthcheck.outcome import LOCAL_ERRNOS, Outcome, printable
from healthcheck.specs import ProbeSpec

OUTPUT_LIMIT = 4096


def command_argv(command: str, host: str, port: int) -> list[str]:
    """``command`` split into argv with ``%h``/``%p`` substituted."""
    return [w.replace("%h", host).replace("%p", str(port)) for w in shlex.split(command)]


async def run_bounded(argv: list[str], limit_s: float) -> tuple[int, bytes] | None:
    """(exit status, stdout) of ``argv``, or None when it did not finish within
    ``limit_s`` seconds.

    The process group is killed on timeout and on cancellation; the child is always
    reaped. Raises OSError when ``argv[0]`` cannot be started.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    done = False
    try:
        async with asyncio.timeout(limit_s):
            assert proc.stdout is not None
            out = await proc.stdout.read(OUTPUT_LIMIT)
            # Drain the rest so a chatty program cannot block on a full pipe.
            while await proc.stdout.read(OUTPUT_LIMIT):
                pass
            status = await proc.wait()
            done = True
            return status, out
    except TimeoutError:
        return None
    finally:
        if not done:
            # The group, not just the leader: a grandchild may hold the pipe open.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())


async def probe(spec: ProbeSpec) -> Outcome:
    """Run ``spec.program`` against ``spec.host:spec.port``."""
    if not spec.program:
        return Outcome(False, "no send_program")
    argv = command_argv(spec.program, spec.host, spec.port)
    try:
        result = await run_bounded(argv, spec.timeout)
    except OSError as e:
        internal = e.errno in LOCAL_ERRNOS or e.errno == errno.EAGAIN
        return Outcome(False, f"cannot run {argv[0]}: {e.strerror or e}", internal=internal)
    if result is None:
        return Outcome(False, f"{argv[0]} timed out after {spec.timeout:g}s (killed)")
    status, out = result
    if status != 0:
        return Outcome(False, f"{argv[0]} exited with status {status}")
    if spec.expect is None:
        return Outcome(True, f"{argv[0]} exited 0")
    text = out.decode("latin-1").removesuffix("\n")
    if spec.expect == "*":
        ok = bool(text)
    elif spec.use_regex:
        ok = re.search(spec.expect, text) is not None
    else:
        ok = text == spec.expect
    if ok:
        return Outcome(True, f"{argv[0]} answered {printable(out, 20)}")
    return Outcome(False, f"{argv[0]} answered {printable(out)}, expected {spec.expect!r}")
