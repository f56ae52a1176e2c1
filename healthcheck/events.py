"""What nanny reports: frozen events the director applies; probes never touch the table.

``HealthChanged`` is a real server entering or leaving its service; ``WeightChanged`` a
new weight for a server that stays in (the reentry ramp, load monitor or agent-check).
"""

from __future__ import annotations

from dataclasses import dataclass

from healthcheck.specs import ServiceKey


@dataclass(frozen=True, slots=True)
class HealthChanged:
    """``addr:port`` of service ``key`` is now in (``up``) or out of service.

    ``weight`` is the weight to give it when up (0 when down); ``reason`` says why (the
    probe's last result or the agent's word); ``duration`` is how long, in seconds, the
    condition that caused the change had lasted.
    """

    key: ServiceKey
    addr: str
    port: int
    up: bool
    weight: int
    reason: str
    probe: str
    duration: float


@dataclass(frozen=True, slots=True)
class WeightChanged:
    """``addr:port`` of service ``key``, in service, should now have ``weight``."""

    key: ServiceKey
    addr: str
    port: int
    weight: int
    reason: str


Event = HealthChanged | WeightChanged
