"""Rate estimation as the kernel's ip_vs_est.c does it: ``ipvsadm --rate``'s numbers.

Every 2 seconds each counter set (connections, packets and bytes in and out) is
sampled; the rate since the last sample feeds an exponentially weighted moving
average with weight 1/4, kept in fixed point (rates of connections and packets
scaled by 2^10, of bytes by 2^5) and rounded the kernel's way when read. Integer
arithmetic only, so the figures match a kernel director fed the same counters.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

INTERVAL_S = 2


@dataclass(frozen=True, slots=True)
class Rates:
    """Per-second rates: connections, packets in/out, bytes in/out."""

    cps: int
    inpps: int
    outpps: int
    inbps: int
    outbps: int


@dataclass(slots=True)
class _Estimate:
    last: tuple[int, int, int, int, int]
    avg: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])


# Connections and packets: ((delta << 9) is the rate per second scaled by 2^10;
# bytes: (delta << 4) scaled by 2^5, the interval being 2 seconds.
_SHIFT = (9, 9, 9, 4, 4)


class RateEstimator:
    """EWMA rates for any number of counter sets, keyed by the caller.

    ``sample(items)`` is called every INTERVAL_S seconds with the current cumulative
    counters ``(conns, inpkts, outpkts, inbytes, outbytes)`` of each key; a key seen
    for the first time starts at rate 0 (as a new kernel estimator does). Keys absent
    from a sample are forgotten. Event-loop thread only.
    """

    def __init__(self) -> None:
        self._est: dict[Hashable, _Estimate] = {}

    def sample(self, items: Iterable[tuple[Hashable, tuple[int, int, int, int, int]]]) -> None:
        seen: dict[Hashable, _Estimate] = {}
        for key, counters in items:
            est = self._est.get(key)
            if est is None:
                est = _Estimate(counters)
            else:
                for i, shift in enumerate(_SHIFT):
                    rate = (counters[i] - est.last[i]) << shift
                    # >> on a negative Python int floors, like the kernel's s64 shift.
                    est.avg[i] += (rate - est.avg[i]) >> 2
                est.last = counters
            seen[key] = est
        self._est = seen

    def rates(self, key: Hashable) -> Rates:
        est = self._est.get(key)
        if est is None:
            return Rates(0, 0, 0, 0, 0)
        a = est.avg
        return Rates(
            cps=(a[0] + 0x1FF) >> 10,
            inpps=(a[1] + 0x1FF) >> 10,
            outpps=(a[2] + 0x1FF) >> 10,
            inbps=(a[3] + 0xF) >> 5,
            outbps=(a[4] + 0xF) >> 5,
        )
