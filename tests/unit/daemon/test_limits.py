"""The descriptor budget: the soft limit raised to the hard one, then shared out."""

from __future__ import annotations

import resource
import subprocess
import sys

from director.daemon import limits

RAISE = (
    "import resource\n"
    "from director.daemon import limits\n"
    "print(limits.raise_nofile_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
)


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    cap = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, cap))

    done = subprocess.run(
        [sys.executable, "-c", RAISE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        preexec_fn=preexec,
    )
    assert done.stdout.split() == [str(cap), str(cap)]


def test_the_budget_leaves_room_for_every_consumer_at_1024() -> None:
    b = limits.budget(1024)
    assert b.probes + b.metrics_clients + b.control_clients + limits.RESERVE < 1024
    assert (b.probes, b.metrics_clients, b.control_clients) == (480, 120, 60)


def test_a_tiny_limit_still_gives_each_consumer_a_few() -> None:
    b = limits.budget(16)
    assert min(b.probes, b.metrics_clients, b.control_clients) == 4


def test_a_large_limit_caps_the_listeners_not_the_probes() -> None:
    b = limits.budget(65536)
    assert (b.metrics_clients, b.control_clients) == (256, 128)
    assert b.probes == (65536 - limits.RESERVE) // 2
