"""The rise/fall state machine of one real server: pure, with the time passed in.

Health (nanny's semantics, in seconds rather than probe counts):

- **fall**: a server in service goes out at the first failed probe that comes
  ``timeout`` seconds or more after its last passed probe. With the probe interval equal
  to ``timeout`` (nanny's: lvs.cf's timeout was its interval) one failure takes it out.
- **rise**: an out-of-service server comes back at the passed probe that ends
  ``reentry`` seconds or more of uninterrupted passed probes; any failure restarts the
  count. ``reentry = 0`` brings it back at its first pass.
- **start**: the first result decides (the director starts with every server in).
- **ramp**: on reentry the weight starts at ``weight >> 5`` (at least 1) and doubles at
  each passed probe up to the configured weight (nanny's adjustWeight).
- **load**: once the ramp is done, a load reading moves the weight by nanny's formula
  (``load.nanny_weight``).
- **agent**: ``NN%`` scales the weight, ``weight:N`` sets it, ``drain`` makes it 0 (in
  service, no new connections), ``maint`` and ``down`` take the server out, ``ready``
  and ``up`` undo them. An unreachable agent changes nothing.

So a server that bounces faster than ``timeout`` stays in, and between two changes of
its state at least ``timeout`` (going out) or ``reentry`` (coming back) seconds pass.
"""

from __future__ import annotations

from enum import StrEnum

from healthcheck.events import Event, HealthChanged, WeightChanged
from healthcheck.load import AgentAdmin, AgentReply, nanny_weight
from healthcheck.specs import ServiceKey, TrackerSpec


class Health(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class Tracker:
    """One real server's health and weight; every method takes ``now`` (monotonic s).

    Methods return the events to apply, in order (empty when nothing changed for the
    director). The director is assumed to start with the server in at ``spec.weight``.
    """

    def __init__(
        self, spec: TrackerSpec, key: ServiceKey, addr: str, port: int, probe: str = "probe"
    ) -> None:
        self.spec = spec
        self.key = key
        self.addr = addr
        self.port = port
        self.probe = probe
        self.health = Health.UNKNOWN
        self.last_ok: float | None = None
        self.first_fail: float | None = None
        self.ok_since: float | None = None
        self.base = spec.weight
        self.agent_percent: int | None = None
        self.agent_weight: int | None = None
        self.agent_up = True
        self.agent_admin = AgentAdmin.READY
        self.in_service = True
        self.weight = spec.weight
        self.changed_at: float | None = None
        self.transitions = 0
        self.probe_started: float | None = None
        """When the probe behind the latest result started (set by the runner)."""

    def settled(self, since: float) -> bool:
        """Whether a probe started at or after ``since`` has decided, and the server is not
        passing probes while it waits out ``reentry`` (about to come back)."""
        if self.probe_started is None or self.probe_started < since:
            return False
        return not (self.health is Health.DOWN and self.ok_since is not None)

    # --- inputs ----------------------------------------------------------------------

    def observe(self, ok: bool, reason: str, now: float) -> list[Event]:
        """A health probe's result at ``now``."""
        spec = self.spec
        duration = 0.0
        if ok:
            if self.ok_since is None:
                self.ok_since = now
            self.last_ok = now
            self.first_fail = None
            if self.health is Health.UNKNOWN:
                self.health = Health.UP
            elif self.health is Health.DOWN:
                if now - self.ok_since >= spec.reentry:
                    self.health = Health.UP
                    duration = now - self.ok_since
                    self.base = min(spec.weight, max(1, spec.weight >> 5))
                    reason = f"{reason}; passed for {duration:.1f}s (reentry {spec.reentry:g}s)"
            elif self.base < spec.weight:
                self.base = min(spec.weight, self.base * 2)
        else:
            self.ok_since = None
            if self.first_fail is None:
                self.first_fail = now
            if self.health is Health.UNKNOWN:
                self.health = Health.DOWN
            elif self.health is Health.UP:
                since = self.last_ok if self.last_ok is not None else self.first_fail
                if now - since >= spec.timeout:
                    self.health = Health.DOWN
                    duration = now - since
                    reason = f"{reason}; no pass for {duration:.1f}s (timeout {spec.timeout:g}s)"
        return self._reconcile(reason, now, duration)

    def load(self, load: float, now: float) -> list[Event]:
        """A load-average reading; applied only in service with the ramp finished."""
        if self.health is not Health.UP or self.base < self.spec.weight:
            return []
        self.base = nanny_weight(self.spec.weight, self.base, load, self.spec.scale)
        return self._reconcile(f"load average {load:.2f}", now, 0.0)

    def agent(self, reply: AgentReply, now: float) -> list[Event]:
        """An agent-check reply; fields it does not mention keep their last value."""
        if reply.percent is not None:
            self.agent_percent = reply.percent
            self.agent_weight = None
        if reply.weight is not None:
            self.agent_weight = reply.weight
            self.agent_percent = None
        if reply.up is not None:
            self.agent_up = reply.up
        if reply.admin is not None:
            self.agent_admin = reply.admin
        return self._reconcile(f"agent says {reply.text!r}", now, 0.0)

    # --- outputs ---------------------------------------------------------------------

    @property
    def wanted_in(self) -> bool:
        return (
            self.health is not Health.DOWN
            and self.agent_up
            and self.agent_admin is not AgentAdmin.MAINT
        )

    @property
    def wanted_weight(self) -> int:
        if self.agent_admin is AgentAdmin.DRAIN:
            return 0
        if self.agent_weight is not None:
            return self.agent_weight
        if self.agent_percent is not None:
            if self.agent_percent == 0 or self.base == 0:
                return 0
            return max(1, (self.base * self.agent_percent + 50) // 100)
        return self.base

    def _reconcile(self, reason: str, now: float, duration: float) -> list[Event]:
        wanted_in = self.wanted_in
        weight = self.wanted_weight if wanted_in else 0
        if wanted_in != self.in_service:
            self.in_service = wanted_in
            self.weight = weight
            self.changed_at = now
            self.transitions += 1
            return [
                HealthChanged(
                    self.key, self.addr, self.port, wanted_in, weight, reason, self.probe, duration
                )
            ]
        if wanted_in and weight != self.weight:
            self.weight = weight
            return [WeightChanged(self.key, self.addr, self.port, weight, reason)]
        return []
