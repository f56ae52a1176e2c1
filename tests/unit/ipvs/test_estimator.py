"""The rate estimator against hand-computed values of the kernel's fixed-point EWMA."""

from __future__ import annotations

from director.ipvs.estimator import RateEstimator, Rates


def test_first_sample_starts_at_zero() -> None:
    est = RateEstimator()
    est.sample([("svc", (100, 1000, 900, 64000, 90000))])
    assert est.rates("svc") == Rates(0, 0, 0, 0, 0)


def test_steady_rate_converges_to_the_true_rate() -> None:
    est = RateEstimator()
    counters = [0, 0, 0, 0, 0]
    per_interval = (200, 2000, 1800, 128_000, 256_000)  # per 2 s: 100 cps, 1000 pps, ...
    for _ in range(60):
        est.sample([("svc", (counters[0], counters[1], counters[2], counters[3], counters[4]))])
        counters = [c + d for c, d in zip(counters, per_interval, strict=True)]
    assert est.rates("svc") == Rates(cps=100, inpps=1000, outpps=900, inbps=64000, outbps=128000)


def test_one_step_matches_the_kernel_arithmetic() -> None:
    est = RateEstimator()
    est.sample([("d", (0, 0, 0, 0, 0))])
    est.sample([("d", (10, 40, 40, 1000, 3000))])
    # cps: rate = 10 << 9 = 5120; avg = 5120 >> 2 = 1280; (1280 + 511) >> 10 = 1
    # inpps: 40 << 9 = 20480 -> 5120 -> (5120 + 511) >> 10 = 5
    # inbps: 1000 << 4 = 16000 -> 4000 -> (4000 + 15) >> 5 = 125
    # outbps: 3000 << 4 = 48000 -> 12000 -> (12000 + 15) >> 5 = 375
    assert est.rates("d") == Rates(cps=1, inpps=5, outpps=5, inbps=125, outbps=375)


def test_rate_decays_when_traffic_stops_and_absent_keys_are_forgotten() -> None:
    est = RateEstimator()
    est.sample([("a", (0, 0, 0, 0, 0)), ("b", (0, 0, 0, 0, 0))])
    est.sample([("a", (1000, 0, 0, 0, 0)), ("b", (0, 0, 0, 0, 0))])
    peak = est.rates("a").cps
    for _ in range(40):
        est.sample([("a", (1000, 0, 0, 0, 0))])
    assert peak > 0
    assert est.rates("a").cps == 0
    assert est.rates("b") == Rates(0, 0, 0, 0, 0)
