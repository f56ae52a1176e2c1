"""The settings of nanny's probes, owned by the leaf; director/config.py composes them.

A ``Target`` is one (virtual service, real server) pair to watch: its health probe
(``ProbeSpec``), the rise/fall times and weights of its tracker (``TrackerSpec``) and,
optionally, a load command (``LoadSpec``) and a HAProxy agent-check (``AgentSpec``).
Times are seconds (floats allowed, so tests may use fractions); addresses are strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ProbeKind(StrEnum):
    """How a real server's service is probed; the lvs.cf ``probe`` keyword's values."""

    TCP = "tcp"
    SEND_EXPECT = "sendexpect"
    HTTP = "http"
    HTTPS = "https"
    UDP = "udp"
    DNS = "dns"
    PROGRAM = "program"


@dataclass(frozen=True, slots=True)
class ServiceKey:
    """A virtual service as the director names it: protocol number, vaddr, vport, fwmark."""

    protocol: int
    vaddr: str
    vport: int
    fwmark: int = 0

    def __str__(self) -> str:
        proto = {6: "TCP", 17: "UDP"}.get(self.protocol, str(self.protocol))
        if self.fwmark:
            return f"FWM {self.fwmark}"
        return f"{proto} {self.vaddr}:{self.vport}"


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """One probe of ``host:port``, bounded by ``timeout`` seconds in all.

    ``send`` is written (TCP/UDP) as is; ``expect`` is matched against the first bytes of
    the answer: a prefix (nanny's strncmp), a regular expression searched in the answer
    when ``use_regex``, or ``"*"`` for any answer at all. ``program`` is a command line
    with ``%h`` and ``%p`` replaced by host and port; its first output line is compared to
    ``expect`` (exit status 0 and no ``expect``: healthy). HTTP(S) GETs ``http_path`` with
    ``Host: http_host`` (default: the host) and accepts the statuses in ``http_status``
    (inclusive ranges); ``expect``, if given, must then match the body. DNS asks
    ``dns_query`` (type A) and, with ``expect``, needs that address among the answers.
    """

    kind: ProbeKind
    host: str
    port: int
    timeout: float = 10.0
    send: str | None = None
    expect: str | None = None
    use_regex: bool = False
    program: str | None = None
    http_path: str = "/"
    http_host: str | None = None
    http_status: tuple[tuple[int, int], ...] = ((200, 399),)
    dns_query: str = "localhost"

    def describe(self) -> str:
        return f"{self.kind} {self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TrackerSpec:
    """Rise and fall of one real server (see tracker.py).

    ``timeout``: seconds without a passed probe, with a failure observed, before the
    server is out. ``reentry``: seconds of uninterrupted passed probes before it is back.
    ``weight``: its configured weight. ``scale``: nanny's cap on load-raised weights
    (weight × scale).
    """

    timeout: float = 10.0
    reentry: float = 180.0
    weight: int = 1
    scale: int = 10


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """nanny's load monitor: ``argv`` prints ``uptime``-style text with the load average."""

    argv: tuple[str, ...]
    interval: float = 20.0
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """HAProxy's agent-check: connect to ``host:port`` every ``interval`` s, read one line."""

    host: str
    port: int
    interval: float = 2.0
    timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class Target:
    """Everything watched for one (virtual service, real server): the runner's unit of work.

    ``interval`` is the seconds between the starts of two health probes.
    """

    key: ServiceKey
    addr: str
    port: int
    probe: ProbeSpec
    tracker: TrackerSpec
    interval: float = 10.0
    load: LoadSpec | None = None
    agent: AgentSpec | None = None

    def __str__(self) -> str:
        return f"{self.key} -> {self.addr}:{self.port}"
