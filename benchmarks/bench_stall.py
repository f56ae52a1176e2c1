"""How long the director's event loop stalls (and so its packets wait) while it serves the
heavy operator requests, at 4,000 destinations (400 virtuals x 10 reals) and 1M
connections.

``python -m benchmarks.bench_stall [--conns N]`` builds a Director (not run: no plumbing),
fills its table, then for each operation runs it on a uvloop loop beside a 1 ms ticker
and reports the ticker's worst lateness, which is what a packet arriving meanwhile
would wait: a /metrics scrape (gathered in slices, rendered in a child), ``lvsadm -L -n``
(``list``) and ``lvsadm -L -n -c`` (``connections``) as the control socket builds them,
and a SIGHUP reload from one real per virtual to ten. The goal is 50 ms or less.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

from director.config import parse_config
from director.daemon import reload as reload_
from director.daemon.director import Director
from director.daemon.nanny import wanted_targets
from director.ops import control, exporter
from director.ops.scrape import take_sliced

TICK_S = 0.001


def many_virtuals(n: int, servers: int) -> str:
    out = ["primary = 10.0.1.1\nnetwork = nat\nnat_router = 192.168.1.254 eth1:1\n"]
    for i in range(n):
        out.append(f"virtual v{i} {{\n address = 10.{1 + i // 250}.{i % 250}.5\n port = 80\n")
        out += [f" server r{j} {{\n  address = 192.168.1.{10 + j}\n }}\n" for j in range(servers)]
        out.append("}\n")
    return "".join(out)


def fill(director: Director, conns: int) -> None:
    table = director.table
    dests = [
        (d.addr, d.port, d.slot, s.vaddr) for s in director.ipvs.services.values() for d in s.dests
    ]
    for i in range(conns):
        addr, port, slot, vaddr = dests[i % len(dests)]
        caddr = 0xC6330000 + (i >> 16)
        table.insert(6, caddr, 1024 + (i & 0xFFFF) % 60000, vaddr, 80, addr, port, slot, 0)


async def stall(op: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(worst ticker lateness, operation seconds)."""
    worst = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst
        while not done:
            before = time.perf_counter()
            await asyncio.sleep(TICK_S)
            worst = max(worst, time.perf_counter() - before - TICK_S)

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.05)
    start = time.perf_counter()
    await op()
    took = time.perf_counter() - start
    done = True
    await task
    return worst, took


async def main(conns: int) -> None:
    director = Director(parse_config(many_virtuals(400, 10), "lvs.cf"))
    fill(director, conns)
    gc.freeze()
    commands = director.admin.commands()

    async def scrape() -> None:
        taken = await take_sliced(director)
        await exporter.render_apart(taken)

    async def listing(name: str) -> None:
        result = commands[name]({})
        assert isinstance(result, control.Sliced)
        sink: list[bytes] = []  # as the control socket's transport takes the chunks
        await result.write(sink.append)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lvs.cf"
        small = parse_config(many_virtuals(400, 1), "lvs.cf")
        director._apply_config(small)
        path.write_text(many_virtuals(400, 10))
        director.config_path = path

        async def reload() -> None:
            cfg = await asyncio.to_thread(lambda: parse_config(path.read_text(), str(path)))
            events, wanted = await asyncio.to_thread(
                lambda: (reload_.diff(director.cfg, cfg), wanted_targets(cfg))
            )
            await director._apply_config_sliced(cfg, wanted, events)

        print(f"{len(director.table):,} connections")
        for name, op in (
            ("reload 400x1 -> 400x10", reload),
            ("/metrics scrape", scrape),
            ("lvsadm -L -n (list)", lambda: listing("list")),
            ("lvsadm -L -n -c (connections)", lambda: listing("connections")),
        ):
            worst, took = await stall(op)
            dests = sum(len(s.dests) for s in director.ipvs.services.values())
            print(
                f"{name:32} stall {worst * 1000:7.1f} ms   (operation {took:6.2f} s, "
                f"{dests:,} destinations)"
            )


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_stall", description=__doc__)
    p.add_argument("--conns", type=int, default=1_000_000)
    args = p.parse_args()
    uvloop.run(main(args.conns))
