"""The daemon's descriptor budget: the soft RLIMIT_NOFILE raised, then shared out.

Every listener and the probes get a fixed share of the descriptor limit, so that no
number of idle clients can leave the probes without sockets (which would take healthy
real servers out) and no number of targets can starve the listeners.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

from healthcheck.runner import probe_limit

log = logging.getLogger(__name__)

# Descriptors kept for what is neither a listener's client nor a probe: TUNs, netlink,
# the listeners themselves, heartbeat sockets, log files, the reaper's pipe.
RESERVE = 64


@dataclass(frozen=True, slots=True)
class Budget:
    """How many descriptors each consumer may hold at once."""

    nofile: int
    probes: int
    metrics_clients: int
    control_clients: int


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (as systemd's LimitNOFILE=N:M asks
    a daemon to); the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as e:
            log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, target, e)
    return soft


def budget(nofile: int) -> Budget:
    """Share ``nofile`` descriptors: half of what is beyond ``RESERVE`` for probes, an
    eighth for metrics scrapers (at most 256), a sixteenth for control clients (at most
    128); each at least 4. The rest is headroom."""
    spare = max(0, nofile - RESERVE)
    return Budget(
        nofile=nofile,
        probes=probe_limit(nofile, RESERVE),
        metrics_clients=max(4, min(256, spare // 8)),
        control_clients=max(4, min(128, spare // 16)),
    )
