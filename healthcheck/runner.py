"""The asyncio driver of nanny's probes: one task per (virtual service, real server).

Each ``Target`` gets its own task running its health probe every ``interval`` seconds
(a probe that overruns delays only its own next probe), plus its agent-check and load
monitor when configured. Every probe is bounded in time by itself and again here, so a
hanging program or a server that trickles bytes never holds up another target. Results
go through the target's ``Tracker``; the events it returns are put on the queue the
runner was given, in order. The runner never touches the director's table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from healthcheck import dns, http, program, sendexpect, tcp, udp
from healthcheck.events import Event
from healthcheck.load import AgentParseError, parse_agent, parse_uptime
from healthcheck.outcome import Outcome, describe_error
from healthcheck.specs import AgentSpec, LoadSpec, ProbeKind, ProbeSpec, Target
from healthcheck.tracker import Tracker

log = logging.getLogger(__name__)

ProbeFn = Callable[[ProbeSpec], Awaitable[Outcome]]
Clock = Callable[[], float]

PROBES: Mapping[ProbeKind, ProbeFn] = {
    ProbeKind.TCP: tcp.probe,
    ProbeKind.SEND_EXPECT: sendexpect.probe,
    ProbeKind.HTTP: http.probe,
    ProbeKind.HTTPS: http.probe,
    ProbeKind.UDP: udp.probe,
    ProbeKind.DNS: dns.probe,
    ProbeKind.PROGRAM: program.probe,
}
# The runner's own bound on a probe, beyond the probe's: a safety net, never the rule.
OVERRUN_GRACE_S = 1.0
AGENT_LINE_LIMIT = 512


@dataclass(frozen=True, slots=True)
class RunnerStats:
    """Counts since start: probes run, passed and failed; agent and load readings."""

    targets: int
    probes: int
    passed: int
    failed: int
    agent_replies: int
    agent_errors: int
    load_readings: int
    load_errors: int
    events: int


@dataclass(frozen=True, slots=True)
class TargetState:
    """One target as the admin listing shows it."""

    target: str
    probe: str
    health: str
    in_service: bool
    weight: int
    last_result: str
    transitions: int


async def run_probe(spec: ProbeSpec, probes: Mapping[ProbeKind, ProbeFn] = PROBES) -> Outcome:
    """Run the probe of ``spec.kind``, bounded by ``spec.timeout`` plus a grace."""
    try:
        async with asyncio.timeout(spec.timeout + OVERRUN_GRACE_S):
            return await probes[spec.kind](spec)
    except TimeoutError:
        return Outcome(False, f"probe overran {spec.timeout:g}s")


async def read_agent(spec: AgentSpec) -> str:
    """One line from the agent at ``spec.host:spec.port`` (HAProxy agent-check).

    Raises OSError or TimeoutError when the agent cannot be reached or says nothing.
    """
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(spec.timeout):
            reader, writer = await asyncio.open_connection(spec.host, spec.port)
            data = await reader.read(AGENT_LINE_LIMIT)
    finally:
        if writer is not None:
            # Abort, not close: a probe has nothing more to say, and a reset leaves no
            # TIME_WAIT on the director nor a TLS close handshake to wait for.
            writer.transport.abort()
    line = data.split(b"\n", 1)[0].decode("latin-1").strip()
    if not line:
        raise ConnectionResetError("agent closed without a line")
    return line


async def read_load(spec: LoadSpec) -> float | None:
    """The one-minute load average ``spec.argv`` reports, or None on any failure."""
    try:
        result = await program.run_bounded(list(spec.argv), spec.timeout)
    except OSError:
        return None
    if result is None or result[0] != 0:
        return None
    return parse_uptime(result[1].decode("latin-1"))


class Runner:
    """Watches ``targets``; puts the trackers' events on ``queue``. Event-loop only.

    ``clock`` is the monotonic time in seconds given to the trackers; ``probes`` maps a
    kind to its probe (the tests' seam). ``run()`` runs until cancelled.
    """

    def __init__(
        self,
        targets: Sequence[Target],
        queue: asyncio.Queue[Event],
        *,
        clock: Clock = time.monotonic,
        probes: Mapping[ProbeKind, ProbeFn] = PROBES,
    ) -> None:
        self.targets = tuple(targets)
        self.queue = queue
        self.clock = clock
        self.probes = probes
        self.trackers = {
            t: Tracker(t.tracker, t.key, t.addr, t.port, str(t.probe.kind)) for t in self.targets
        }
        self._last: dict[Target, str] = {}
        self._counts: Counter[str] = Counter()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for target in self.targets:
                tg.create_task(self._health(target))
                if target.agent is not None:
                    tg.create_task(self._agent(target, target.agent))
                if target.load is not None:
                    tg.create_task(self._load(target, target.load))

    def _emit(self, events: list[Event]) -> None:
        for event in events:
            self._counts["events"] += 1
            self.queue.put_nowait(event)

    async def _health(self, target: Target) -> None:
        tracker = self.trackers[target]
        while True:
            started = self.clock()
            outcome = await run_probe(target.probe, self.probes)
            self._counts["probes"] += 1
            self._counts["passed" if outcome.ok else "failed"] += 1
            if not outcome.ok and self._last.get(target) != outcome.reason:
                log.debug("%s: %s failed: %s", target, target.probe.kind, outcome.reason)
            self._last[target] = outcome.reason
            tracker.probe_started = started
            self._emit(tracker.observe(outcome.ok, outcome.reason, self.clock()))
            await asyncio.sleep(max(0.0, started + target.interval - self.clock()))

    async def _agent(self, target: Target, spec: AgentSpec) -> None:
        tracker = self.trackers[target]
        while True:
            started = self.clock()
            try:
                reply = parse_agent(await read_agent(spec))
            except (OSError, TimeoutError, AgentParseError) as e:
                self._counts["agent_errors"] += 1
                reason = str(e) if isinstance(e, AgentParseError) else describe_error(e)
                log.debug("%s: agent %s:%d: %s", target, spec.host, spec.port, reason)
            else:
                self._counts["agent_replies"] += 1
                self._emit(tracker.agent(reply, self.clock()))
            await asyncio.sleep(max(0.0, started + spec.interval - self.clock()))

    async def _load(self, target: Target, spec: LoadSpec) -> None:
        tracker = self.trackers[target]
        while True:
            started = self.clock()
            load = await read_load(spec)
            if load is None:
                self._counts["load_errors"] += 1
                log.debug("%s: no load average from %s", target, " ".join(spec.argv))
            else:
                self._counts["load_readings"] += 1
                self._emit(tracker.load(load, self.clock()))
            await asyncio.sleep(max(0.0, started + spec.interval - self.clock()))

    def states(self) -> tuple[TargetState, ...]:
        return tuple(
            TargetState(
                target=str(t),
                probe=t.probe.describe(),
                health=str(tr.health),
                in_service=tr.in_service,
                weight=tr.weight,
                last_result=self._last.get(t, ""),
                transitions=tr.transitions,
            )
            for t, tr in self.trackers.items()
        )

    def statistics(self) -> RunnerStats:
        c = self._counts
        return RunnerStats(
            targets=len(self.targets),
            probes=c["probes"],
            passed=c["passed"],
            failed=c["failed"],
            agent_replies=c["agent_replies"],
            agent_errors=c["agent_errors"],
            load_readings=c["load_readings"],
            load_errors=c["load_errors"],
            events=c["events"],
        )
