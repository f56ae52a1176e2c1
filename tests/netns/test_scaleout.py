"""Active-active directors behind an ECMP router (lab.router), end to end.

    client ── router (BIRD, ECMP, L4 hash) ── director1..3 (lvsd + BIRD) ── real1..3 (DR)

Three directors run the same lvs.cf (``active_active = 1``, ``rr``: each director picks
reals in its own order, so a flow that reaches a director without its synced entry would
be sent to another real, which resets it; only the sync keeps such a flow alive). The
router's view is read through ``birdc`` (its RIB, its BGP sessions) and ``ip route``
(the multipath route in its FIB).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from director.config import parse_config
from director.tools.demo import LabDirector
from lab import router
from lab.cluster import Lab, LabSpec
from tests.conftest import require_root
from tests.netns.conftest import unique_lab_name

pytestmark = pytest.mark.netns

SPEC = router.RouterSpec(directors=3, reals=3)
VIP = str(SPEC.vip)
WAIT_S = 30.0
CONNECTIONS = 40
KEY = b"scale-out-lab-key-0123456789abcdef"

# Keep-alive HTTP connections from many source ports, a request on each every 50 ms until
# the stop file appears; per connection: requests answered, the reals that answered, the
# first error. "ready" once every connection has had an answer.
CLIENTS = """
import asyncio, json, os, sys
vip, n, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
async def one(i, results, ready):
    r = results[i] = {"ok": 0, "reals": [], "error": None}
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(vip, 80), 10)
        while not os.path.exists(stop):
            writer.write(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
            head = await asyncio.wait_for(reader.readuntil(b"\\r\\n\\r\\n"), 10)
            fields = dict(l.split(b": ", 1) for l in head.split(b"\\r\\n")[1:] if b": " in l)
            await asyncio.wait_for(reader.readexactly(int(fields[b"Content-Length"])), 10)
            real = fields[b"X-Real"].decode()
            if real not in r["reals"]:
                r["reals"].append(real)
            r["ok"] += 1
            ready.add(i)
            await asyncio.sleep(0.05)
        writer.close()
    except Exception as e:
        r["error"] = repr(e)
        ready.add(i)
async def main():
    results, ready = {}, set()
    tasks = [asyncio.create_task(one(i, results, ready)) for i in range(n)]
    while len(ready) < n:
        await asyncio.sleep(0.02)
    print("ready", flush=True)
    await asyncio.gather(*tasks)
    print(json.dumps(results), flush=True)
asyncio.run(main())
"""


class ScaleOut:
    """The lab, its directors by node, the client load."""

    def __init__(self, lab: Lab, tmp: Path, implementation: str) -> None:
        self.lab = lab
        self.tmp = tmp
        self.env = {"DIRECTOR_NO_EXTENSIONS": "1"} if implementation == "py" else {}
        key = tmp / "group.key"
        key.write_bytes(KEY)
        self.cfg = parse_config(router.director_config(SPEC, key_file=key), "scale-out lvs.cf")
        self.directors: dict[str, LabDirector] = {}

    def start(self, node: str) -> LabDirector:
        d = LabDirector(self.lab, self.cfg, node=node, env=self.env).start()
        self.directors[node] = d
        return d

    def hops(self) -> set[str]:
        return router.ecmp_next_hops(self.lab, SPEC)

    def rib(self) -> set[str]:
        return router.router_rib(self.lab, SPEC)

    def wait(self, what: str, cond: Callable[[], bool], within: float = WAIT_S) -> float:
        start = time.monotonic()
        while not cond():
            if time.monotonic() - start > within:
                logs = "\n".join(f"{n}:\n{d.log()[-2000:]}" for n, d in self.directors.items())
                raise AssertionError(f"timed out waiting for {what}\n{logs}")
            time.sleep(0.05)
        return time.monotonic() - start

    def counters(self, node: str) -> tuple[int, int]:
        """(connections this director scheduled, packets it forwarded), its own counters."""
        dests = [d for s in self.directors[node].status()["services"] for d in s["dests"]]
        return sum(int(d["conns"]) for d in dests), sum(int(d["inpkts"]) for d in dests)

    def group(self, node: str) -> dict[str, Any]:
        snap: dict[str, Any] = self.directors[node].status()["group"]
        return snap

    def clients(self, stop: Path, n: int = CONNECTIONS) -> subprocess.Popen[str]:
        proc: subprocess.Popen[str] = self.lab.popen(
            "client",
            [sys.executable, "-c", CLIENTS, VIP, str(n), str(stop)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", line
        return proc

    def results(self, proc: subprocess.Popen[str], stop: Path) -> dict[str, dict[str, Any]]:
        stop.touch()
        out, _ = proc.communicate(timeout=WAIT_S)
        results: dict[str, dict[str, Any]] = json.loads(out)
        return results


def addr(node: str) -> str:
    return str(SPEC.director_address(int(node.removeprefix("director"))))


@pytest.fixture(scope="module", params=["c", "py"])
def scale(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScaleOut]:
    """The lab with three directors serving, on the C fast path and on its Python twin."""
    require_root()
    implementation: str = request.param
    lab = Lab(LabSpec(mode="direct"), unique_lab_name())
    try:
        router.up(lab, SPEC)
        s = ScaleOut(lab, tmp_path_factory.mktemp("scaleout"), implementation)
        try:
            for node in SPEC.director_names():
                assert s.start(node).status()["fastpath"] == implementation
            yield s
        finally:
            for d in s.directors.values():
                d.stop()
    finally:
        lab.down()


def test_spread_kill_and_rejoin_break_no_connection(scale: ScaleOut) -> None:
    every = {addr(n) for n in SPEC.director_names()}
    scale.wait("three next hops in the router's FIB", lambda: scale.hops() == every)
    # The router's own view: three BGP sessions up, the VIP learned from each.
    assert router.established(scale.lab) == set(SPEC.director_names())
    assert scale.rib() == every
    before = {n: scale.counters(n) for n in SPEC.director_names()}

    stop = scale.tmp / "stop-1"
    proc = scale.clients(stop)
    try:
        # Spread: the L4 hash sent connections to every director, which scheduled them.
        spread = {n: scale.counters(n)[0] - before[n][0] for n in SPEC.director_names()}
        assert sum(spread.values()) == CONNECTIONS, spread
        assert all(c > 0 for c in spread.values()), spread
        # Every director holds the others' connections before one of them dies.
        scale.wait(
            "every director to hold every connection",
            lambda: all(
                scale.group(n)["shadow_conns"] >= CONNECTIONS - spread[n]
                for n in SPEC.director_names()
            ),
        )
        # Kill director1 (its BIRD dies with it): the router withdraws its next hop at once.
        victim = scale.directors["director1"]
        assert victim.proc is not None
        victim.proc.kill()
        victim.proc.wait()
        took = scale.wait(
            "the router to drop director1", lambda: scale.hops() == every - {addr("director1")}
        )
        assert scale.rib() == every - {addr("director1")}
        # director1's flows go on through the others, whose copies came by sync.
        moved = {n: scale.counters(n)[1] for n in ("director2", "director3")}
        scale.wait(
            "director1's flows to go on through the others",
            lambda: sum(scale.counters(n)[1] - moved[n] for n in moved) >= 20 * CONNECTIONS,
        )
        # It comes back: it takes the peers' tables, then announces; ECMP moves flows back.
        scale.start("director1")
        back = scale.wait("director1 back in the router's FIB", lambda: scale.hops() == every)
        assert scale.group("director1")["synced"]
        scale.wait(
            "flows to reach the new director1",
            lambda: scale.counters("director1")[1] >= 10 * spread["director1"],
        )
        rejoined = scale.counters("director1")
    finally:
        results = scale.results(proc, stop)
    print(
        f"\nspread {spread}; router dropped a killed director in {took:.2f} s; "
        f"rejoin announced after {back:.2f} s; the new director1 forwarded "
        f"{rejoined[1]} packets of {rejoined[0]} connections of its own"
    )
    broken = {i: r for i, r in results.items() if r["error"] or len(r["reals"]) != 1}
    assert not broken, broken
    assert all(r["ok"] >= 10 for r in results.values()), results
    # The rejoined director scheduled nothing: every packet it forwarded was of a flow
    # another director scheduled, found in the table the peers gave it.
    assert rejoined[0] == 0, rejoined


def test_lost_data_plane_and_drain_withdraw_and_break_nothing(scale: ScaleOut) -> None:
    every = {addr(n) for n in SPEC.director_names()}
    scale.wait("three next hops in the router's FIB", lambda: scale.hops() == every)
    stop = scale.tmp / "stop-2"
    proc = scale.clients(stop)
    try:
        # director3 loses the reals' side (monitor_links = 1): it withdraws, its session
        # stays, and announces again once the link is back.
        scale.lab.run("director3", ["ip", "link", "set", "eth1", "down"])
        scale.wait(
            "the router to drop director3", lambda: scale.hops() == every - {addr("director3")}
        )
        assert "director3" in router.established(scale.lab)
        assert scale.group("director3")["not_serving"] == "private interface eth1 down"
        scale.lab.run("director3", ["ip", "link", "set", "eth1", "up"])
        scale.wait("director3 back in the router's FIB", lambda: scale.hops() == every)
        drained = scale.directors["director2"]
        assert drained.proc is not None
        scale.wait(
            "director2's connections to be synced",
            lambda: all(scale.group(n)["shadow_conns"] >= 1 for n in ("director1", "director3")),
        )
        drained.proc.send_signal(signal.SIGTERM)
        # The routes go first, while lvsd still runs (and forwards what still comes) ...
        scale.wait(
            "the router to drop director2", lambda: scale.hops() == every - {addr("director2")}
        )
        assert drained.proc.poll() is None, "director2 stopped before the router dropped it"
        assert scale.rib() == every - {addr("director2")}
        # ... and the router keeps the session: only the routes went.
        assert "director2" in router.established(scale.lab)
        assert drained.proc.wait(WAIT_S) == 0, drained.log()[-3000:]
        log = drained.log()
        assert "withdrew 10.0.2.5" in log, log[-3000:]
        assert "group: drained in" in log, log[-3000:]
        assert log.index("withdrew 10.0.2.5") < log.index("group: drained in")
        # The flows it had carried go on through the others.
        moved = {n: scale.counters(n)[1] for n in ("director1", "director3")}
        scale.wait(
            "the flows to go on without director2",
            lambda: sum(scale.counters(n)[1] - moved[n] for n in moved) >= 10 * CONNECTIONS,
        )
    finally:
        results = scale.results(proc, stop)
    broken = {i: r for i, r in results.items() if r["error"] or len(r["reals"]) != 1}
    assert not broken, broken
