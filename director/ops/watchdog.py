"""systemd's watchdog for lvsd: ``WATCHDOG=1`` at half of ``WatchdogSec`` while the loop runs.

The keep-alive comes from a task of the director's TaskGroup, so a blocked or
crashed event loop stops it and systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import os

from director.ops.notify import Notifier


def interval_from_environment(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between keep-alives, from ``WATCHDOG_USEC`` (and ``WATCHDOG_PID`` if set).

    None when the watchdog is off or meant for another process.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000


async def keep_alive(notifier: Notifier, interval: float) -> None:
    """Send ``WATCHDOG=1`` every ``interval`` seconds until cancelled."""
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)
