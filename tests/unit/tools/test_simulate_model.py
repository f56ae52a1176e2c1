"""``lvsd simulate`` against a kernel model on random traces, fwmark cache clusters included.

The model is written from IPVS-SEMANTICS.md alone: destinations are objects linked at the
head of the list (§1.2), a deleted one keeps being referenced by its connections and by
lblc entries and lblcr sets, and adding the same address back revives that very object
(§1.3, §11). A destination that nothing references any more may be freed or kept: no one
can tell the two apart, so the model keeps every deleted object. Each scheduler's rule is
written out again here (§2), independently of scheduling/, except mh, whose Maglev
table the model takes from lvsd's class (its rule has tests of its own); for mh the
traces check the service layer around it. twos draws from a generator seeded as the
simulator's, so both see the same draws.

A ``connect`` is a SYN: its connection counts as active on its destination until it
expires 60 s later (SYN_RECV); traces stay far below lblc's 24 h expiration and its
16384-entry table, so no GC runs.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from director.tools.simulate import Simulator
from scheduling import get_scheduler
from scheduling.base import FlowKey, SchedulerBase

SYN_RECV_MS = 60_000
ADDRS = [f"192.168.1.{10 + i}" for i in range(5)]
DADDRS = ["10.0.1.5", "198.51.100.1", "198.51.100.2", "203.0.113.200"]
VIP = "10.0.1.5"


@dataclass(eq=False)
class KDest:
    """``struct ip_vs_dest`` as far as the schedulers see it."""

    addr: int
    port: int
    weight: int
    last_weight: int
    active_conns: int = 0
    inactive_conns: int = 0
    available: bool = True
    overloaded: bool = False

    def __str__(self) -> str:
        return f"{ipaddress.IPv4Address(self.addr)}:{self.port}"


def usable(d: KDest) -> bool:
    return not d.overloaded and d.weight > 0


def hash_32(v: int, bits: int) -> int:
    return ((v * 0x61C88647) & 0xFFFFFFFF) >> (32 - bits)


def wlc_core(dests: list[KDest], cost: Callable[[KDest], int]) -> KDest | None:
    it = iter(dests)
    least = next((d for d in it if usable(d)), None)
    if least is None:
        return None
    for d in it:
        if d.overloaded:
            continue
        if cost(least) * d.weight > cost(d) * least.weight:
            least = d
    return least


def wlc_cost(d: KDest) -> int:
    return d.active_conns * 256 + d.inactive_conns


def sed_cost(d: KDest) -> int:
    return d.active_conns + 1


def lb_overloaded(d: KDest, dests: list[KDest]) -> bool:
    return d.active_conns > d.weight and any(x.active_conns * 2 < x.weight for x in dests)


class Model:
    """The kernel's service for one scheduler; ``pick`` is its ``schedule`` hook."""

    def __init__(self, sched: str) -> None:
        self.sched = sched
        self.dests: list[KDest] = []
        self.trash: dict[int, KDest] = {}
        self.rr_pos: KDest | None = None
        self.wrr_cl: KDest | None = None
        self.wrr_cw = self.wrr_mw = 0
        self.wrr_di = 1
        self.hash_tab: list[KDest | None] = [None] * 256
        self.lblc: dict[int, KDest] = {}
        self.lblcr: dict[int, tuple[list[KDest], list[int]]] = {}
        self.lvsd: SchedulerBase | None = None
        self.draws = random.Random(3)
        if sched == "mh":
            self.lvsd = get_scheduler(sched)
            self.lvsd.update([], "init")
        self.hook("init", None)

    # --- ip_vs_ctl.c ---------------------------------------------------------------

    def add(self, addr: int, port: int, weight: int) -> None:
        d = self.trash.pop(addr, None) or KDest(addr, port, weight, weight)
        d.weight = d.last_weight = weight
        d.available = True
        self.dests.insert(0, d)
        self.hook("add", d)

    def edit(self, d: KDest, weight: int) -> None:
        d.weight = weight
        if weight:
            d.last_weight = weight
        self.hook("upd", d)

    def delete(self, d: KDest) -> None:
        i = self.dests.index(d)
        d.available = False
        self.dests.remove(d)
        if self.sched == "rr" and self.rr_pos is d:
            self.rr_pos = self.dests[i - 1] if i > 0 else None
        self.hook("del", d)
        self.trash[d.addr] = d

    def hook(self, kind: str, d: KDest | None) -> None:
        if self.lvsd is not None:
            self.lvsd.update(self.dests, kind, d)
        if self.sched == "wrr":
            ws = [x.weight for x in self.dests if x.weight > 0]
            di = 1
            if ws:
                di = ws[0]
                for w in ws[1:]:
                    while w:
                        di, w = w, di % w
            self.wrr_di = di
            self.wrr_mw = (max(ws) - (di - 1)) if ws else 0
            self.wrr_cl = None
            if kind == "init" or self.wrr_cw > self.wrr_mw or self.wrr_cw == 0:
                self.wrr_cw = self.wrr_mw
            elif di > 1:
                self.wrr_cw = (self.wrr_cw // di) * di + 1
        elif self.sched == "dh" and kind != "upd":
            n = len(self.dests)
            self.hash_tab = [self.dests[i % n] if n else None for i in range(256)]
        elif self.sched == "sh":
            tab: list[KDest | None] = []
            if self.dests:
                i = count = 0
                while len(tab) < 256:
                    d = self.dests[i % len(self.dests)]
                    tab.append(d)
                    count += 1
                    if count >= d.weight:
                        i, count = i + 1, 0
            self.hash_tab = tab or [None] * 256

    # --- the schedulers (§2) -------------------------------------------------------

    def pick(self, saddr: int, daddr: int, now: int) -> KDest | None:
        dests = self.dests
        match self.sched:
            case "rr":
                if self.rr_pos is None:
                    order = dests
                else:
                    i = dests.index(self.rr_pos)
                    order = dests[i + 1 :] + dests[: i + 1]
                d = next((x for x in order if usable(x)), None)
                if d is not None:
                    self.rr_pos = d
                return d
            case "wrr":
                return self.wrr()
            case "lc":
                least = None
                for x in dests:
                    if usable(x) and (least is None or wlc_cost(x) < wlc_cost(least)):
                        least = x
                return least
            case "wlc":
                return wlc_core(dests, wlc_cost)
            case "sed":
                return wlc_core(dests, sed_cost)
            case "nq":
                idle = next((x for x in dests if usable(x) and x.active_conns == 0), None)
                return idle if idle is not None else wlc_core(dests, sed_cost)
            case "fo":
                best = None
                for x in dests:
                    if not x.overloaded and x.weight > (best.weight if best else 0):
                        best = x
                return best
            case "ovf":
                best = None
                for x in dests:
                    fits = usable(x) and x.active_conns <= x.weight
                    if fits and (best is None or x.weight > best.weight):
                        best = x
                return best
            case "dh":
                d = self.hash_tab[hash_32(daddr, 8)]
                return d if d is not None and d.available and usable(d) else None
            case "sh":
                d = self.hash_tab[hash_32(saddr, 8)]
                return d if d is not None and usable(d) else None
            case "lblc":
                en = self.lblc.get(daddr)
                keep = en is not None and en.available and en.weight > 0
                if keep and en is not None and not lb_overloaded(en, dests):
                    return en
                d = wlc_core(dests, wlc_cost)
                if d is not None:
                    self.lblc[daddr] = d
                return d
            case "lblcr":
                return self.lblcr_pick(daddr, now)
            case "twos":
                live = [x for x in dests if usable(x)]
                if not live:
                    return None
                total = sum(x.weight for x in live)
                r1, r2 = self.draws.randrange(total + 1), self.draws.randrange(total + 1)
                c1 = c2 = None
                for x in live:
                    r1, r2 = r1 - x.weight, r2 - x.weight
                    c1 = x if c1 is None and r1 <= 0 else c1
                    c2 = x if c2 is None and r2 <= 0 else c2
                assert c1 is not None
                assert c2 is not None
                if c2.weight * wlc_cost(c1) > c1.weight * wlc_cost(c2):
                    return c2
                return c1
            case _:
                assert self.lvsd is not None
                got = self.lvsd.schedule(FlowKey(6, saddr, 40000, daddr, 80, now))
                assert got is None or isinstance(got, KDest)
                return got

    def wrr(self) -> KDest | None:
        if self.wrr_mw == 0:
            return None
        dests = self.dests
        last = self.wrr_cl
        stop: KDest | None = None
        last_pass = restarted = False
        pos = self.wrr_cl
        while True:
            start = 0 if pos is None else dests.index(pos) + 1
            for d in dests[start:]:
                if not d.overloaded and d.weight >= self.wrr_cw:
                    self.wrr_cl = d
                    return d
                if d is stop:
                    self.wrr_cl = d
                    return None
            self.wrr_cw -= self.wrr_di
            if self.wrr_cw <= 0:
                self.wrr_cw = self.wrr_mw
                if last_pass or last is None:
                    self.wrr_cl = None
                    return None
                restarted = True
            last_pass = self.wrr_cw <= self.wrr_di
            if last_pass and restarted and last is not None:
                stop = last
            pos = None

    def lblcr_pick(self, daddr: int, now: int) -> KDest | None:
        en = self.lblcr.get(daddr)
        if en is None:
            d = wlc_core(self.dests, wlc_cost)
            if d is not None:
                self.lblcr[daddr] = ([d], [now])
            return d
        members = en[0]
        least = None
        for m in members:
            if m.overloaded:
                continue
            if least is None:
                if m.weight > 0 and m.available:
                    least = m
            elif wlc_cost(least) * m.weight > wlc_cost(m) * least.weight and m.available:
                least = m
        if least is not None and not lb_overloaded(least, self.dests):
            return least
        d = wlc_core(self.dests, wlc_cost)
        if d is not None and all(m is not d for m in members):
            members.insert(0, d)
        return d


class Run:
    """One trace applied to the model, the lines for the simulator and the model's output."""

    def __init__(self, sched: str, fwmark: int) -> None:
        self.model = Model(sched)
        self.fwmark = fwmark
        self.conns: list[tuple[int, KDest]] = []
        self.now = 0
        self.cport = 1000
        op: dict[str, Any] = {"op": "service", "scheduler": sched}
        if fwmark:
            op["fwmark"] = fwmark
        self.lines = [json.dumps(op)]
        self.expected: list[dict[str, Any]] = []

    def step(self, r: random.Random) -> None:
        m = self.model
        kind = r.choice(["add", "add", "del", "edit", "connect", "connect", "pick", "advance"])
        if kind == "add" or not m.dests:
            free = [a for a in ADDRS if all(str(d).split(":")[0] != a for d in m.dests)]
            if not free:
                return
            addr, weight = r.choice(free), r.randrange(0, 4)
            self.lines.append(
                json.dumps({"op": "add_dest", "addr": addr, "port": 80, "weight": weight})
            )
            m.add(int(ipaddress.IPv4Address(addr)), 80, weight)
        elif kind == "del":
            d = r.choice(m.dests)
            self.lines.append(json.dumps({"op": "del_dest", "addr": str(d)[:-3], "port": 80}))
            m.delete(d)
        elif kind == "edit":
            d, w = r.choice(m.dests), r.randrange(0, 4)
            self.lines.append(
                json.dumps({"op": "edit_dest", "addr": str(d)[:-3], "port": 80, "weight": w})
            )
            m.edit(d, w)
        elif kind == "advance":
            seconds = r.choice([1, 30, 59, 61, 130, 200])
            self.lines.append(json.dumps({"op": "advance", "seconds": seconds}))
            self.now += seconds * 1000
            for _t, gone in [c for c in self.conns if c[0] <= self.now]:
                gone.active_conns -= 1
            self.conns = [c for c in self.conns if c[0] > self.now]
        else:
            client = f"203.0.113.{r.randrange(1, 40)}"
            daddr = r.choice(DADDRS) if self.fwmark else VIP
            op: dict[str, Any] = {"op": kind, "client": client, "daddr": daddr}
            self.cport += 1
            if kind == "connect":
                op |= {"id": f"c{self.cport}", "cport": self.cport}
            self.lines.append(json.dumps(op))
            caddr, vaddr = (int(ipaddress.IPv4Address(a)) for a in (client, daddr))
            chosen = m.pick(caddr, vaddr, self.now)
            out = None if chosen is None else str(chosen)
            if kind == "connect":
                self.expected.append({"id": op["id"], "dest": out})
                if chosen is not None:
                    chosen.active_conns += 1
                    self.conns.append((self.now + SYN_RECV_MS, chosen))
            else:
                self.expected.append({"dest": out})


ALL = [
    "dh",
    "fo",
    "lblc",
    "lblcr",
    "lc",
    "mh",
    "nq",
    "ovf",
    "rr",
    "sed",
    "sh",
    "twos",
    "wlc",
    "wrr",
]
CASES = [(s, 0) for s in ALL] + [(s, 1) for s in ("dh", "lblc", "lblcr")]


def replay(fastpath: ModuleType, run: Run) -> list[dict[str, Any]]:
    sim = Simulator(table_factory=fastpath.ConnTable, seed=3)
    return [json.loads(line) for line in sim.replay(run.lines)]


@pytest.mark.parametrize(("sched", "fwmark"), CASES)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 80))
def test_random_traces_agree_with_the_kernel_model(
    fastpath: ModuleType, sched: str, fwmark: int, seed: int, length: int
) -> None:
    r = random.Random(seed)
    run = Run(sched, fwmark)
    for _ in range(length):
        run.step(r)
    got = replay(fastpath, run)
    assert got == run.expected, "\n".join(run.lines)
