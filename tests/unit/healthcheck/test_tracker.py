"""The rise/fall/reentry/ramp state machine, driven with explicit times."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from healthcheck.events import HealthChanged, WeightChanged
from healthcheck.load import AgentAdmin, AgentReply, parse_agent
from healthcheck.specs import ServiceKey, TrackerSpec
from healthcheck.tracker import Health, Tracker

KEY = ServiceKey(6, "10.0.1.5", 80)


def make(timeout: float = 2, reentry: float = 4, weight: int = 1000) -> Tracker:
    return Tracker(
        TrackerSpec(timeout=timeout, reentry=reentry, weight=weight), KEY, "192.0.2.11", 80
    )


def test_first_pass_keeps_the_server_in_silently() -> None:
    t = make()
    assert t.observe(True, "ok", 0.0) == []
    assert t.health is Health.UP
    assert t.weight == 1000


def test_first_failure_takes_it_out_at_once() -> None:
    t = make()
    [ev] = t.observe(False, "connection refused", 0.0)
    assert isinstance(ev, HealthChanged)
    assert (ev.up, ev.weight) == (False, 0)
    assert "connection refused" in ev.reason


def test_falls_only_after_timeout_without_a_pass() -> None:
    t = make(timeout=2)
    t.observe(True, "ok", 0.0)
    assert t.observe(False, "refused", 1.0) == []
    assert t.observe(False, "refused", 1.5) == []
    [ev] = t.observe(False, "refused", 2.0)
    assert isinstance(ev, HealthChanged)
    assert not ev.up
    assert ev.duration == 2.0
    assert "timeout 2s" in ev.reason


def test_a_pass_restarts_the_fall_clock() -> None:
    t = make(timeout=2)
    t.observe(True, "ok", 0.0)
    t.observe(False, "x", 1.5)
    t.observe(True, "ok", 1.9)
    assert t.observe(False, "x", 3.0) == []
    assert t.observe(False, "x", 3.8) == []
    assert t.observe(False, "x", 3.9) != []


def down(t: Tracker, now: float = 0.0) -> None:
    t.observe(True, "ok", now)
    t.observe(False, "x", now + t.spec.timeout)
    assert t.health is Health.DOWN


def test_reentry_needs_uninterrupted_passes_then_ramps_from_weight_over_32() -> None:
    t = make(timeout=2, reentry=4, weight=1000)
    down(t)
    assert t.observe(True, "ok", 3.0) == []
    assert t.observe(False, "x", 4.0) == []  # interrupted: the count restarts
    assert t.observe(True, "ok", 5.0) == []
    assert t.observe(True, "ok", 8.0) == []
    [ev] = t.observe(True, "ok", 9.0)
    assert isinstance(ev, HealthChanged)
    assert (ev.up, ev.weight, ev.duration) == (True, 31, 4.0)
    weights = []
    for i in range(10):
        for e in t.observe(True, "ok", 10.0 + i):
            assert isinstance(e, WeightChanged)
            weights.append(e.weight)
    assert weights == [62, 124, 248, 496, 992, 1000]


def test_ramp_starts_at_one_for_small_weights_and_reentry_zero_is_immediate() -> None:
    t = make(reentry=0, weight=3)
    down(t)
    [ev] = t.observe(True, "ok", 10.0)
    assert isinstance(ev, HealthChanged)
    assert (ev.up, ev.weight) == (True, 1)
    [w] = t.observe(True, "ok", 11.0)
    assert isinstance(w, WeightChanged)
    assert w.weight == 2


def test_load_moves_the_weight_by_nannys_formula_after_the_ramp() -> None:
    t = make(weight=100)
    t.observe(True, "ok", 0.0)
    [ev] = t.load(0.0, 1.0)  # idle: + weight/2
    assert isinstance(ev, WeightChanged)
    assert ev.weight == 150
    assert t.load(1.0, 2.0) == []
    [ev] = t.load(9.0, 3.0)  # 150 - 50 * 2 = 50, floored at the configured weight
    assert isinstance(ev, WeightChanged)
    assert ev.weight == 100


def test_agent_percent_drain_down_and_back() -> None:
    t = make(weight=100)
    t.observe(True, "ok", 0.0)
    [ev] = t.agent(parse_agent("50%"), 1.0)
    assert isinstance(ev, WeightChanged)
    assert ev.weight == 50
    [ev] = t.agent(parse_agent("drain"), 2.0)
    assert isinstance(ev, WeightChanged)
    assert ev.weight == 0
    [ev] = t.agent(parse_agent("down"), 3.0)
    assert isinstance(ev, HealthChanged)
    assert not ev.up
    [ev] = t.agent(parse_agent("up ready"), 4.0)
    assert isinstance(ev, HealthChanged)
    assert (ev.up, ev.weight) == (True, 50)
    assert t.agent(AgentReply("maint", admin=AgentAdmin.MAINT), 5.0)[0] == HealthChanged(
        KEY, "192.0.2.11", 80, False, 0, "agent says 'maint'", "probe", 0.0
    )


def bounce_transitions(pattern: list[bool], step: float, timeout: float, reentry: float) -> int:
    t = make(timeout=timeout, reentry=reentry)
    t.observe(True, "ok", 0.0)
    n = 0
    for i, ok in enumerate(pattern, start=1):
        n += len([e for e in t.observe(ok, "r", i * step) if isinstance(e, HealthChanged)])
    return n


def test_a_server_bouncing_every_second_never_leaves_with_timeout_2() -> None:
    pattern = [i % 2 == 0 for i in range(600)]  # 10 minutes, probed each second
    assert bounce_transitions(pattern, 1.0, timeout=2, reentry=4) == 0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.booleans(), min_size=1, max_size=400),
    st.sampled_from([0.5, 1.0, 2.0]),
    st.integers(1, 10),
    st.integers(0, 30),
)
def test_churn_is_bounded_by_timeout_and_reentry(
    pattern: list[bool], step: float, timeout: int, reentry: int
) -> None:
    # Between going out and coming back at least `reentry` seconds pass, and between
    # coming back and going out again at least `timeout`: so over T seconds a server
    # changes state at most 2 * (T / (timeout + reentry) + 1) times, whatever it does.
    span = len(pattern) * step
    bound = 2 * (span / (timeout + reentry) + 1)
    assert bounce_transitions(pattern, step, timeout, reentry) <= bound


def _probe(t: Tracker, ok: bool, started: float, now: float) -> None:
    t.probe_started = started
    t.observe(ok, "probe", now)


def test_settled_needs_a_probe_started_since_and_no_server_about_to_return() -> None:
    t = make(reentry=4)
    assert not t.settled(0)  # never probed
    _probe(t, False, 1, 1)
    assert t.settled(1)
    assert not t.settled(2)  # the probe began before
    _probe(t, True, 3, 3)  # passing, out until reentry: about to come back
    assert not t.settled(2)
    _probe(t, True, 7, 7)
    assert t.health is Health.UP
    assert t.settled(2)
