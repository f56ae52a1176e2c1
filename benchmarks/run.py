"""The data-plane benchmark: lvsd (C and Python fast paths) beside the kernel's NAT, plain
routing and HAProxy, on one network-namespace lab, in the same run.

``python -m benchmarks.run [--quick] [--repeat N] [--seconds S] [--only NAME,...] [--out FILE]``
builds a lab (one real running nginx, or the labserver without nginx, plus an iperf3
server), then for each round starts every peer in turn in the director node (see
:mod:`benchmarks.peers`), runs the tests against it and removes it, checking that the
director's and client's namespaces are exactly as before. Rounds interleave the peers,
so drift on a noisy machine spreads over all of them. It prints (and writes to ``--out``)
a Markdown report: the medians per peer and test, each with its ratio to ``nftables``.

Tests: ``tcp_bulk`` (iperf3 TCP, Gbit/s received), ``udp_pps`` (iperf3 UDP with 64-byte
payloads and no rate limit: packets/s real1 received, packets/s the director forwarded
out eth1, and CPU per forwarded packet), ``conn_rate`` (wrk, ``Connection: close``,
connections/s), ``latency`` (wrk, one keep-alive connection, p50 and p99 round trip),
and ``memory`` (bytes per tracked connection of the ConnTable, C and Python, measured
in a child process). ``schedulers`` and ``fastpath`` include the micro benchmarks
``benchmarks.bench_schedulers`` and ``benchmarks.bench_fastpath`` when they exist.
Every load is bounded in time (``--seconds``) and every child process by a timeout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from benchmarks.peers import (
    HTTP_PORT,
    IPERF_PORT,
    LvsdPeer,
    Peer,
    PeerError,
    all_peers,
    machine_busy_seconds,
    namespace_state,
    wait_accepting,
)
from director.dataplane import fastpath
from lab.cluster import Lab, LabSpec

TESTS = ("tcp_bulk", "tcp_download", "udp_pps", "conn_rate", "latency")
EXTRAS = ("memory", "schedulers", "fastpath")
BASELINE = "nftables"
CHILD_SLACK = 30.0
"""Seconds a load generator may run past its own duration before it is killed."""
WRK_CONNECTIONS = 32
MEMORY_CONNS = {"c": 1_000_000, "py": 100_000}
REAL_REPLY_TABLE = 100
"""real1's table for replies from its own address: via the director (nat_router)."""
DR_METRIC = "tcp_down_gbps"
CEILING = "routing"


@dataclass(frozen=True, slots=True)
class Metric:
    """One row of the results table."""

    key: str
    test: str
    label: str
    higher_is_better: bool


METRICS = (
    Metric("tcp_gbps", "tcp_bulk", "bulk TCP, Gbit/s", True),
    Metric("tcp_down_gbps", "tcp_download", "bulk TCP download real1 → client, Gbit/s", True),
    Metric("udp_rx_kpps", "udp_pps", "64-byte UDP received by real1, kpps", True),
    Metric("udp_fwd_kpps", "udp_pps", "64-byte UDP forwarded by the director, kpps", True),
    Metric("cpu_us_per_pkt", "udp_pps", "director CPU per forwarded packet, µs", False),
    Metric(
        "machine_us_per_pkt",
        "udp_pps",
        "whole machine's busy CPU per 64-byte UDP packet received, µs",
        False,
    ),
    Metric("conn_per_s", "conn_rate", "connection rate, conn/s", True),
    Metric("conn_errors", "conn_rate", "connection errors (wrk socket + non-2xx)", False),
    Metric("lat_p50_us", "latency", "request/response p50, µs", False),
    Metric("lat_p99_us", "latency", "request/response p99, µs", False),
)


class BenchError(RuntimeError):
    """A load generator failed or printed something the harness cannot read."""


@dataclass(slots=True)
class Results:
    """Samples per peer and metric, the notes of each peer, and the errors met."""

    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, peer: str, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.samples.setdefault(peer, {}).setdefault(key, []).append(value)

    def median(self, peer: str, key: str) -> float | None:
        values = self.samples.get(peer, {}).get(key)
        return statistics.median(values) if values else None


# --- the load generators, run in the client node --------------------------------------


def _run_json(lab: Lab, argv: list[str], seconds: float) -> dict[str, object]:
    proc = lab.run("client", argv, check=False, timeout=seconds + CHILD_SLACK)
    try:
        data = json.loads(proc.stdout)
    except ValueError as e:
        raise BenchError(
            f"{argv[0]}: no JSON (exit {proc.returncode}): {proc.stderr[-300:]}"
        ) from e
    if not isinstance(data, dict):
        raise BenchError(f"{argv[0]}: unexpected JSON {type(data).__name__}")
    if "error" in data:
        raise BenchError(f"{argv[0]}: {data['error']}")
    return data


def _dig(data: object, *path: str) -> float:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            raise BenchError(f"iperf3 JSON: no {'.'.join(path)}")
        data = data[key]
    if not isinstance(data, int | float):
        raise BenchError(f"iperf3 JSON: {'.'.join(path)} is not a number")
    return float(data)


def tcp_bulk(lab: Lab, target: IPv4Address, seconds: float) -> dict[str, float]:
    """iperf3 TCP from the client to ``target:5201`` for ``seconds``; Gbit/s received."""
    data = _run_json(
        lab,
        ["iperf3", "-c", str(target), "-p", str(IPERF_PORT), "-t", f"{seconds:g}", "-J",
         "--connect-timeout", "3000"],
        seconds,
    )  # fmt: skip
    return {"tcp_gbps": _dig(data, "end", "sum_received", "bits_per_second") / 1e9}


def tcp_download(lab: Lab, target: IPv4Address, seconds: float) -> dict[str, float]:
    """iperf3 -R: real1 sends to the client (the heavy side of a download), Gbit/s received."""
    data = _run_json(
        lab,
        ["iperf3", "-c", str(target), "-p", str(IPERF_PORT), "-R", "-t", f"{seconds:g}", "-J",
         "--connect-timeout", "3000"],
        seconds,
    )  # fmt: skip
    return {"tcp_down_gbps": _dig(data, "end", "sum_received", "bits_per_second") / 1e9}


def eth1_tx_packets(lab: Lab) -> int:
    """Packets the director node sent out of eth1 (towards the reals) so far."""
    out = lab.run("director", ["ip", "-j", "-s", "link", "show", "dev", "eth1"]).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])


def udp_pps(lab: Lab, target: IPv4Address, seconds: float, peer: Peer) -> dict[str, float]:
    """iperf3 UDP, 64-byte payloads, no rate limit: received and forwarded rates, CPU cost."""
    tx0, cpu0, t0 = eth1_tx_packets(lab), peer.cpu_seconds(), time.monotonic()
    busy0 = machine_busy_seconds()
    data = _run_json(
        lab,
        ["iperf3", "-c", str(target), "-p", str(IPERF_PORT), "-u", "-l", "64", "-b", "0",
         "-t", f"{seconds:g}", "-J", "--connect-timeout", "3000"],
        seconds,
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    busy = machine_busy_seconds() - busy0
    cpu = peer.cpu_seconds() - cpu0
    forwarded = eth1_tx_packets(lab) - tx0
    sent = _dig(data, "end", "sum", "packets")
    lost = _dig(data, "end", "sum", "lost_packets")
    duration = _dig(data, "end", "sum", "seconds")
    received = sent - lost
    if received <= 0 or forwarded <= 0:
        raise BenchError(f"udp_pps: nothing went through (received {received}, fwd {forwarded})")
    return {
        "udp_rx_kpps": received / duration / 1e3,
        "udp_fwd_kpps": forwarded / elapsed / 1e3,
        "cpu_us_per_pkt": cpu / forwarded * 1e6,
        "machine_us_per_pkt": busy / received * 1e6,
    }


_DURATION = re.compile(r"([\d.]+)(us|ms|s|m)\b")
_UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def _wrk_us(text: str) -> float:
    m = _DURATION.fullmatch(text)
    if m is None:
        raise BenchError(f"wrk: cannot read duration {text!r}")
    return float(m.group(1)) * _UNIT_US[m.group(2)]


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, error count and (with ``--latency``) p50/p99 in µs from wrk's report."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if rate is None:
        raise BenchError(f"wrk: no Requests/sec in {output[-300:]!r}")
    done = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    if done is None or int(done.group(1)) == 0:
        raise BenchError("wrk: no request completed")
    result = {"requests_per_s": float(rate.group(1)), "errors": 0.0}
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock is not None:
        result["errors"] += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx is not None:
        result["errors"] += int(non2xx.group(1))
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", output, re.MULTILINE)
        if m is not None:
            result[f"p{pct}_us"] = _wrk_us(m.group(1))
    return result


def _wrk(lab: Lab, args: list[str], seconds: float) -> dict[str, float]:
    proc = lab.run("client", ["wrk", *args], check=False, timeout=seconds + CHILD_SLACK)
    if proc.returncode != 0:
        raise BenchError(f"wrk: exit {proc.returncode}: {proc.stderr[-300:]}")
    return parse_wrk(proc.stdout)


def conn_rate(lab: Lab, target: IPv4Address, seconds: float) -> dict[str, float]:
    """wrk with ``Connection: close``: every request a new connection through the peer."""
    url = f"http://{target}:{HTTP_PORT}/"
    got = _wrk(
        lab,
        ["-t1", f"-c{WRK_CONNECTIONS}", f"-d{seconds:g}s", "--timeout", "2s",
         "-H", "Connection: close", url],
        seconds,
    )  # fmt: skip
    return {"conn_per_s": got["requests_per_s"], "conn_errors": got["errors"]}


def latency(lab: Lab, target: IPv4Address, seconds: float) -> dict[str, float]:
    """wrk over one keep-alive connection: round-trip latency distribution."""
    url = f"http://{target}:{HTTP_PORT}/"
    got = _wrk(lab, ["-t1", "-c1", f"-d{seconds:g}s", "--latency", url], seconds)
    if "p50_us" not in got or "p99_us" not in got:
        raise BenchError("wrk: no latency distribution")
    return {"lat_p50_us": got["p50_us"], "lat_p99_us": got["p99_us"]}


# --- one round -------------------------------------------------------------------------


def _state(lab: Lab) -> str:
    return namespace_state(lab, "director") + namespace_state(lab, "client")


def _diagnose(peer: Peer) -> str:
    """lvsd's connection count and drop counters, to tell a stalled director from a slow one."""
    if not isinstance(peer, LvsdPeer):
        return ""
    try:
        status = peer.status()
    except (OSError, RuntimeError, ValueError) as e:
        return f" (control socket: {e})"
    drops = status.get("drops")
    nonzero = {k: v for k, v in drops.items() if v} if isinstance(drops, dict) else drops
    return f" (lvsd: {status.get('connections')} connections, drops {nonzero})"


def run_peer(
    lab: Lab,
    peer: Peer,
    tests: Sequence[str],
    seconds: float,
    results: Results,
    log: Callable[[str], None],
) -> None:
    """Start ``peer``, run ``tests`` against it once, stop it; check nothing is left over."""
    before = _state(lab)
    with tempfile.TemporaryDirectory(prefix=f"lvsbench-{peer.name}-") as tmp:
        try:
            peer.start(lab, Path(tmp))
            results.details[peer.name] = peer.detail()
            target = peer.target(lab)
            for test in tests:
                if test == "udp_pps" and not peer.udp:
                    continue
                try:
                    match test:
                        case "tcp_bulk":
                            got = tcp_bulk(lab, target, seconds)
                        case "tcp_download":
                            got = tcp_download(lab, target, seconds)
                        case "udp_pps":
                            got = udp_pps(lab, target, seconds, peer)
                        case "conn_rate":
                            got = conn_rate(lab, target, seconds)
                        case _:
                            got = latency(lab, target, seconds)
                except (BenchError, subprocess.SubprocessError, OSError) as e:
                    note = _diagnose(peer)
                    results.errors.append(f"{peer.name} {test}: {e}{note}")
                    log(f"  {peer.name} {test}: FAILED {e}{note}")
                    continue
                results.add(peer.name, got)
                log(f"  {peer.name} {test}: " + ", ".join(f"{k}={v:.3g}" for k, v in got.items()))
        except (PeerError, subprocess.SubprocessError, OSError) as e:
            results.errors.append(f"{peer.name}: {e}")
            log(f"  {peer.name}: FAILED {e}")
        finally:
            peer.stop(lab)
    after = _state(lab)
    if after != before:
        raise PeerError(
            f"{peer.name}: left the lab changed:\n--- before\n{before}\n--- after\n{after}"
        )


def prepare_lab(lab: Lab) -> None:
    """Bring up one real (nginx when installed) with an iperf3 server; tune the client.

    The lab is ``--mode direct``, so that real1 serves the direct-routing peer too: it
    holds the VIP on ``lo`` and answers from it straight to the client on the public
    segment. Its replies from its own address (every other peer: NAT, routing, the proxy)
    go back through the director, by a rule for its address, which is also the source it
    picks for the client when a socket does not say.
    """
    lab.up(reals=1, nginx=shutil.which("nginx") is not None)
    lab.start_decap("real1")  # for lvsd-tun: the VIP on tunl0 too, IPIP decapsulated
    real = str(lab.spec.real_address(1))
    lab.run("real1", ["ip", "rule", "add", "from", real, "lookup", str(REAL_REPLY_TABLE)])
    table = str(REAL_REPLY_TABLE)
    private = str(lab.spec.private_net)
    lab.run("real1", ["ip", "route", "add", private, "dev", "eth0", "table", table])
    lab.run(
        "real1",
        ["ip", "route", "add", "default", "via", str(lab.spec.nat_router), "table", table],
    )
    # A socket that did not choose its source (iperf3's UDP server, which connects to the
    # client) picks the route's: real1's own address, so the rule above applies to it too.
    public = str(lab.spec.public_net)
    lab.run("real1", ["ip", "route", "replace", public, "dev", "eth1", "src", real])
    # Connection-rate runs open tens of thousands of connections: the full port range.
    lab.run(
        "client",
        ["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65535",
         "-w", "net.ipv4.tcp_tw_reuse=1"],
    )  # fmt: skip
    lab.popen(
        "real1",
        ["iperf3", "-s", "-p", str(IPERF_PORT)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_accepting(lab, "real1", lab.spec.real_address(1), IPERF_PORT, 10.0)


# --- memory per tracked connection ------------------------------------------------------


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError("no VmRSS in /proc/self/status")


def memory_child(count: int) -> dict[str, object]:
    """In this process: RSS growth from creating a ConnTable and inserting ``count`` conns."""
    baseline = _rss_bytes()
    table = fastpath.ConnTable(count + 16)
    table.set_dest(0, 0, 0xC0A8010A, 80, 0, 0)
    vaddr = 0x0A000105
    for i in range(count):
        table.insert(6, 0x0A000000 + (i >> 16), i & 0xFFFF, vaddr, 80, 0xC0A8010A, 80, 0, 0)
    held = len(table)
    grown = _rss_bytes() - baseline
    return {
        "implementation": fastpath.IMPLEMENTATION,
        "inserted": count,
        "held": held,
        "rss_growth": grown,
        "bytes_per_conn": grown / count,
    }


def measure_memory(implementation: str, count: int) -> dict[str, object]:
    """Run :func:`memory_child` in a fresh interpreter with the chosen fast path."""
    env = dict(os.environ)
    env.pop("DIRECTOR_NO_EXTENSIONS", None)
    if implementation == "py":
        env["DIRECTOR_NO_EXTENSIONS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--memory-child", str(count)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    result: dict[str, object] = json.loads(proc.stdout)
    return result


# --- micro benchmarks of other modules --------------------------------------------------


def micro_benchmark(module: str, quick: bool) -> str | None:
    """The output of ``python -m benchmarks.<module>``, or None when it does not exist."""
    if not (Path(__file__).parent / f"{module}.py").exists():
        return None
    argv = [sys.executable, "-m", f"benchmarks.{module}"]
    if quick:
        quick_args = {
            "bench_schedulers": ["--number", "200", "--repeat", "3"],
            "bench_fastpath": [
                "--packets",
                "20000",
                "--conns",
                "100000",
                "--new-conns",
                "5000",
                "--rounds",
                "3",
            ],
        }
        argv += quick_args.get(module, [])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        return f"(exit {proc.returncode})\n{proc.stdout}{proc.stderr[-2000:]}"
    return proc.stdout


# --- the report --------------------------------------------------------------------------


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(results: Results, peers: Sequence[str]) -> str:
    """Markdown: one row per metric, one column per peer, ``median (ratio to nftables)``."""
    lines = [
        "| test | " + " | ".join(peers) + " |",
        "|---|" + "---:|" * len(peers),
    ]
    for metric in METRICS:
        if not any(results.median(p, metric.key) is not None for p in peers):
            continue
        base = results.median(BASELINE, metric.key)
        cells = []
        for p in peers:
            value = results.median(p, metric.key)
            if value is None:
                cells.append("n/a")
            elif base and p != BASELINE:
                cells.append(f"{_fmt(value)} ({value / base:.2f}×)")
            else:
                cells.append(_fmt(value))
        lines.append(f"| {metric.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_download_ratios(results: Results, peers: Sequence[str]) -> str:
    """The bulk download real1 → client of every peer as a ratio to plain routing: the
    side direct routing takes off the director."""
    ceiling = results.median(CEILING, DR_METRIC)
    if not ceiling:
        return ""
    cells = []
    for p in peers:
        value = results.median(p, DR_METRIC)
        if value is not None and p != CEILING:
            cells.append(f"{p} {value / ceiling:.2f}")
    if not cells:
        return ""
    return f"\nBulk download real1 → client as a ratio to {CEILING}: " + ", ".join(cells) + "\n"


def format_samples(results: Results) -> str:
    lines = []
    for peer, metrics in results.samples.items():
        for key, values in metrics.items():
            lines.append(f"- {peer} {key}: " + ", ".join(_fmt(v) for v in values))
    return "\n".join(lines) + "\n"


def format_memory(rows: Sequence[dict[str, object]]) -> str:
    lines = [
        "| fast path | connections inserted | held | RSS growth, MB | bytes per connection |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        growth = r["rss_growth"]
        per = r["bytes_per_conn"]
        assert isinstance(growth, int)
        assert isinstance(per, int | float)
        lines.append(
            f"| {r['implementation']} | {r['inserted']:,} | {r['held']:,} | "
            f"{growth / 1e6:.1f} | {per:.0f} |"
        )
    return "\n".join(lines) + "\n"


def machine_info() -> str:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (
        f"- CPUs: {os.cpu_count()} ({model})\n"
        f"- kernel: {platform.release()}\n"
        f"- Python: {platform.python_version()}\n"
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}\n"
    )


# --- the command -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="1 round of 2-second tests")
    p.add_argument("--repeat", type=int, default=None, help="rounds (default 5; --quick 1)")
    p.add_argument("--seconds", type=float, default=None, help="seconds per test (default 5)")
    names = [peer.name for peer in all_peers()] + list(TESTS) + list(EXTRAS)
    p.add_argument("--only", default="", help="comma list of peers/tests: " + ", ".join(names))
    p.add_argument("--out", type=Path, default=None, help="also write the report here")
    p.add_argument("--lab", default=f"bench{os.getpid() % 100_000}", help="lab name")
    p.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child is not None:
        json.dump(memory_child(args.memory_child), sys.stdout)
        return 0

    only = {n for n in args.only.split(",") if n}
    if unknown := only - set(names):
        p.error(
            f"--only: unknown {', '.join(sorted(unknown))}; expected some of: {', '.join(names)}"
        )
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 5)
    seconds = args.seconds if args.seconds is not None else (2.0 if args.quick else 5.0)
    peers = [
        pe for pe in all_peers() if not only & {pe.name for pe in all_peers()} or pe.name in only
    ]
    tests = [t for t in TESTS if not only & set(TESTS) or t in only]
    extras = [x for x in EXTRAS if not only or x in only]
    if only and not only & set(TESTS) and not only & {pe.name for pe in all_peers()}:
        tests, peers = [], []  # only extras asked for

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = Results()
    if peers and tests:
        lab = Lab(LabSpec(mode="direct"), args.lab)
        try:
            prepare_lab(lab)
            for rnd in range(repeat):
                log(f"round {rnd + 1}/{repeat}")
                for peer in peers:
                    run_peer(lab, peer, tests, seconds, results, log)
        finally:
            lab.down()

    command = "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv)
    report = [
        "## Machine\n",
        machine_info(),
        f"\nCommand: `{command.strip()}` ({repeat} rounds, {seconds:g} s per test)\n",
    ]
    if peers and tests:
        report += [
            f"\n## Data plane (median of {repeat}; in brackets: ratio to {BASELINE})\n\n",
            format_table(results, [pe.name for pe in peers]),
            format_download_ratios(results, [pe.name for pe in peers]),
            "\nPeers: " + "; ".join(f"{k}: {v}" for k, v in results.details.items()) + "\n",
            "\n<details><summary>every sample</summary>\n\n",
            format_samples(results),
            "\n</details>\n",
        ]
        if results.errors:
            report += ["\nErrors:\n\n", *(f"- {e}\n" for e in results.errors)]
    if "memory" in extras:
        rows = []
        for impl in ("c", "py"):
            log(f"memory: {impl}")
            count = MEMORY_CONNS[impl] // (10 if args.quick else 1)
            row = measure_memory(impl, count)
            if row["implementation"] != impl:
                log(f"memory: {impl} asked for, {row['implementation']} in use; skipped")
                continue
            rows.append(row)
        report += ["\n## Memory per tracked connection\n\n", format_memory(rows)]
    for name, module in (("schedulers", "bench_schedulers"), ("fastpath", "bench_fastpath")):
        if name in extras:
            log(f"micro benchmark: {module}")
            out = micro_benchmark(module, args.quick)
            if out is not None:
                report += [f"\n## `python -m benchmarks.{module}`\n\n```\n", out, "```\n"]
    text = "".join(report)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
