"""One scrape of a running director: what the metrics report, taken on the event loop.

``take_sliced`` gathers it a few milliseconds at a time, so the packets go on between
slices; the exposition text is then made from the ``Scrape`` elsewhere
(``director.ops.metrics.render``, in a forked child: ``director.ops.exporter``). No
prometheus_client here: the daemon imports this module, not the renderer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from director.config import DirectorConfig
from director.ops import control
from director.ops.admin import Admin
from director.stats import DirectorStats, GroupStats, NannyStats, PulseStats, TargetHealth

# Seconds of work per slice when a scrape's data is gathered on the event loop.
SLICE_S = 0.005


class HealthReport(Protocol):
    """What the collector reads from nanny."""

    def statistics(self) -> NannyStats: ...

    def health(self) -> tuple[TargetHealth, ...]: ...

    def iter_health(self) -> Iterator[TargetHealth]: ...


class FailoverReport(Protocol):
    """What the collector reads from pulse."""

    def statistics(self) -> PulseStats: ...


class GroupReport(Protocol):
    """What the collector reads from an active-active director's group."""

    def group_statistics(self) -> GroupStats: ...


class Observed(Protocol):
    """What the collector reads from a director (event-loop thread)."""

    cfg: DirectorConfig
    admin: Admin

    @property
    def nanny(self) -> HealthReport: ...

    @property
    def pulse(self) -> FailoverReport | None: ...

    @property
    def group(self) -> GroupReport | None: ...

    def statistics(self) -> DirectorStats: ...


@dataclass(frozen=True, slots=True)
class Scrape:
    """Everything one scrape reports, taken from the director on the event loop; the
    text is then made from it apart from the loop (``director.ops.metrics.render``)."""

    services: list[Mapping[str, Any]]
    totals: Mapping[str, int]
    stats: DirectorStats
    nanny: NannyStats
    health: tuple[TargetHealth, ...]
    pulse: PulseStats | None
    group: GroupStats | None
    state_dir: Path


def take(director: Observed) -> Scrape:
    """A scrape in one go (tests, and small configurations)."""
    return Scrape(
        list(director.admin.iter_services(raw=True)),
        director.admin.totals(),
        director.statistics(),
        director.nanny.statistics(),
        tuple(director.nanny.iter_health()),
        None if director.pulse is None else director.pulse.statistics(),
        None if director.group is None else director.group.group_statistics(),
        director.cfg.state_dir,
    )


async def take_sliced(director: Observed, slice_s: float = SLICE_S) -> Scrape:
    """``take``, a slice of at most about ``slice_s`` seconds at a time: the event loop
    (and the packets) run between slices. Event-loop thread only."""
    deadline = time.perf_counter() + slice_s

    async def pace() -> None:
        nonlocal deadline
        if time.perf_counter() >= deadline:
            await asyncio.sleep(control.PAUSE_S)
            deadline = time.perf_counter() + slice_s

    services: list[Mapping[str, Any]] = []
    for svc in director.admin.iter_services(raw=True):
        services.append(svc)
        await pace()
    health: list[TargetHealth] = []
    for h in director.nanny.iter_health():
        health.append(h)
        await pace()
    return Scrape(
        services,
        director.admin.totals(),
        director.statistics(),
        director.nanny.statistics(),
        tuple(health),
        None if director.pulse is None else director.pulse.statistics(),
        None if director.group is None else director.group.group_statistics(),
        director.cfg.state_dir,
    )
