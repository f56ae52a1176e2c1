"""The asyncio driver of nanny's probes: one task per (virtual service, real server).

Each ``Target`` gets its own task running its health probe every ``interval`` seconds
(a probe that overruns delays only its own next probe), plus its agent-check and load
monitor when configured. Every probe is bounded in time by itself and again here, so a
hanging program or a server that trickles bytes never holds up another target. Results
go through the target's ``Tracker``; the events it returns are put on the queue the
runner was given, in order. The runner never touches the director's table.

Every probe, agent read and load reading holds a slot of the ``limit`` semaphore the
runners share while it runs, so that however many targets there are, probes never hold
more descriptors than the daemon set aside for them. A probe that fails for the
director's own reasons (``Outcome.internal``: out of descriptors, buffers or memory) is
counted and logged, and never reaches the tracker: it says nothing about the server.
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
from healthcheck.outcome import Outcome, describe_error, printable
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
    internal_errors: int = 0


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


def probe_limit(nofile: int, reserve: int) -> int:
    """How many probes may run at once with ``nofile`` descriptors, ``reserve`` of them
    kept for everything else: half of the rest (a probe holds one socket, a program
    probe three pipes briefly), at least 4."""
    return max(4, (nofile - reserve) // 2)


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


async def read_load(spec: LoadSpec) -> float | str:
    """The one-minute load average ``spec.argv`` reports, or why there is none."""
    try:
        result = await program.run_bounded(list(spec.argv), spec.timeout)
    except OSError as e:
        return f"cannot run it: {e.strerror or e}"
    if result is None:
        return f"no answer within {spec.timeout:g} s"
    status, out = result
    if status != 0:
        return f"exit status {status}"
    load = parse_uptime(out.decode("latin-1"))
    if load is None:
        return f"no load average in its output {printable(out.strip(), 80)}"
    return load


class Runner:
    """Watches ``targets``; puts the trackers' events on ``queue``. Event-loop only.

    ``clock`` is the monotonic time in seconds given to the trackers; ``probes`` maps a
    kind to its probe (the tests' seam); ``limit`` bounds the probes running at once,
    shared by every runner of the daemon. ``run()`` runs until cancelled.
    """

    def __init__(
        self,
        targets: Sequence[Target],
        queue: asyncio.Queue[Event],
        *,
        clock: Clock = time.monotonic,
        probes: Mapping[ProbeKind, ProbeFn] = PROBES,
        limit: asyncio.Semaphore | None = None,
    ) -> None:
        self.targets = tuple(targets)
        self.limit = limit if limit is not None else asyncio.Semaphore(len(self.targets) * 3 or 1)
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
            async with self.limit:
                outcome = await run_probe(target.probe, self.probes)
            if outcome.internal:
                self._internal(target, outcome.reason)
                await asyncio.sleep(max(0.0, started + target.interval - self.clock()))
                continue
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
                async with self.limit:
                    line = await read_agent(spec)
                reply = parse_agent(line)
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
        failures = 0
        while True:
            started = self.clock()
            async with self.limit:
                load = await read_load(spec)
            if isinstance(load, str):
                # Counted per target (lvsd_backend_load_readings{result="error"}) and
                # logged, 1, 2, 4, 8... failures in a row: a weight that never moves
                # must say why.
                self._counts["load_errors"] += 1
                failures += 1
                if failures & (failures - 1) == 0:
                    log.warning(
                        "%s: no load average from %r: %s (%d in a row)",
                        target,
                        " ".join(spec.argv),
                        load,
                        failures,
                    )
            else:
                if failures:
                    log.info("%s: load average read again after %d failures", target, failures)
                failures = 0
                self._counts["load_readings"] += 1
                self._emit(tracker.load(load, self.clock()))
            await asyncio.sleep(max(0.0, started + spec.interval - self.clock()))

    def _internal(self, target: Target, reason: str) -> None:
        # Rate-limited (1, 2, 4, 8... times): under descriptor exhaustion every probe
        # of every target fails this way.
        n = self._counts["internal_errors"] = self._counts["internal_errors"] + 1
        if n & (n - 1) == 0:
            log.warning(
                "%s: %s probe not run: the director is short of resources: %s (%d times)",
                target,
                target.probe.kind,
                reason,
                n,
            )

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

    @property
    def counts(self) -> Mapping[str, int]:
        """The counts behind ``statistics()`` (a live view; ``targets`` excluded)."""
        return self._counts

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
            internal_errors=c["internal_errors"],
        )
