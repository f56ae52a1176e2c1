"""AF_XDP evaluated: packets/s a userspace VS-NAT forwarder moves through AF_XDP sockets,
against the TUN read/write loop lvsd uses and the kernel's nftables DNAT, on one lab.

``sudo .venv/bin/python -m benchmarks.bench_afxdp [--repeat N] [--seconds S]``

Builds the programs of ``benchmarks/afxdp/`` (gcc, clang, libbpf-dev, libxdp-dev) into a
temporary directory, brings up a lab with one real, and per round runs each forwarder in
the director while ``blast`` (64-byte UDP, one socket, as fast as it sends) runs in the
client against VIP:5201 for ``S`` seconds:

* ``nftables``: a prerouting ``dnat`` of VIP:5201 to real1 (the kernel's NAT);
* ``tun``: ``tunfwd``, one ``read()`` and one ``write()`` per packet on a TUN device that
  holds the VIP's route (lvsd's data path, without lvsd's connection table);
* ``afxdp``: ``xskfwd``, an XDP program on the director's eth0 (native mode when the
  kernel takes it) that redirects VIP:5201 UDP to an AF_XDP socket, and a second socket on
  eth1 that transmits the rewritten copy; ``afxdp-generic``: the same in generic (skb) mode.

Both userspace forwarders do the same rewrite (``afxdp/nat.h``: destination and
checksums, like VS-NAT). Received = real1's UDP InDatagrams + NoPorts (packets that passed
its checksum check; nothing listens). CPU = the whole machine's busy time (/proc/stat)
per received packet, load generator included, so compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from lab.cluster import Lab

PORT = 5201
MODES = ("nftables", "tun", "afxdp", "afxdp-generic")
TUN_NAME = "afx0"
SRC_DIR = Path(__file__).resolve().parent / "afxdp"
NEEDS = {
    "gcc": "gcc",
    "clang": "clang",
    "/usr/include/bpf/libbpf.h": "libbpf-dev",
    "/usr/include/xdp/xsk.h": "libxdp-dev",
}


class BenchError(Exception):
    """A step of the benchmark failed; the message says which."""


def missing() -> list[str]:
    """The Debian packages to install before this benchmark can build its programs."""
    return [
        pkg
        for need, pkg in NEEDS.items()
        if not (Path(need).exists() if need.startswith("/") else shutil.which(need))
    ]


def build(out: Path) -> None:
    """Build xskfwd, tunfwd, blast and redirect.bpf.o into ``out``."""
    subprocess.run(["make", "-s", "-C", str(SRC_DIR), f"OUT={out}"], check=True, timeout=120)


def busy_total() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def link_packets(lab: Lab, node: str, ifname: str, direction: str) -> int:
    """``rx`` or ``tx`` packets of ``ifname`` in ``node``."""
    out = lab.run(node, ["ip", "-s", "-j", "link", "show", "dev", ifname]).stdout
    return int(json.loads(out)[0]["stats64"][direction]["packets"])


def udp_counters(lab: Lab, node: str) -> dict[str, int]:
    """The ``Udp:`` line of /proc/net/snmp in ``node``, by name."""
    lines = [ln.split() for ln in lab.run(node, ["cat", "/proc/net/snmp"]).stdout.splitlines()]
    udp = [ln[1:] for ln in lines if ln and ln[0] == "Udp:"]
    return dict(zip(udp[0], (int(v) for v in udp[1]), strict=True))


def mac(lab: Lab, node: str, ifname: str) -> str:
    out = lab.run(node, ["ip", "-j", "link", "show", "dev", ifname]).stdout
    return str(json.loads(out)[0]["address"])


def prepare(lab: Lab) -> None:
    """One real; the director forwards; the client reaches the VIP at the director's eth0."""
    lab.up(reals=1)
    lab.run(
        "director",
        ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
         "-w", "net.ipv4.conf.all.rp_filter=0", "-w", "net.ipv4.conf.default.rp_filter=0",
         "-w", "net.ipv4.conf.eth0.rp_filter=0", "-w", "net.ipv4.conf.all.send_redirects=0"],
    )  # fmt: skip
    lab.run(
        "client",
        ["ip", "neigh", "replace", str(lab.spec.vip), "lladdr", mac(lab, "director", "eth0"),
         "dev", "eth0", "nud", "permanent"],
    )  # fmt: skip
    # A veth hands the checksum over unfinished (CHECKSUM_PARTIAL); the kernel paths finish
    # it, an AF_XDP socket sees the raw frame. A real NIC delivers finished checksums:
    # the client computes them, for every mode alike.
    lab.run("client", ["ethtool", "-K", "eth0", "tx", "off"])
    real = str(lab.spec.real_address(1))
    lab.run(
        "director",
        ["ip", "neigh", "replace", real, "lladdr", mac(lab, "real1", "eth0"),
         "dev", "eth1", "nud", "permanent"],
    )  # fmt: skip


def start_forwarder(
    lab: Lab, mode: str, bin_dir: Path, seconds: float
) -> subprocess.Popen[str] | None:
    """Set up ``mode`` in the director; its process (ready) or None for nftables."""
    spec = lab.spec
    vip, real = str(spec.vip), str(spec.real_address(1))
    life = f"{seconds + 30:g}"  # a bound of its own, should the runner die
    if mode == "nftables":
        ruleset = (
            "table ip afxnat {\n"
            "    chain pre { type nat hook prerouting priority dstnat;\n"
            f"        ip daddr {vip} udp dport {PORT} dnat to {real}\n"
            "    }\n}\n"
        )
        lab.run("director", ["nft", "-f", "-"], input=ruleset)
        return None
    if mode == "tun":
        argv = [str(bin_dir / "tunfwd"), TUN_NAME, vip, real, str(PORT), life]
    else:
        argv = [
            str(bin_dir / "xskfwd"), "eth0", "eth1", vip, real, str(PORT),
            mac(lab, "real1", "eth0"), str(bin_dir / "redirect.bpf.o"), life,
            "generic" if mode == "afxdp-generic" else "native",
        ]  # fmt: skip
    proc = lab.popen("director", argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # "ready", or EOF when it failed
    if line != "ready":
        proc.wait(timeout=10)
        err = proc.stderr.read() if proc.stderr else ""
        raise BenchError(f"{mode}: forwarder did not start: {err.strip() or line}")
    if mode == "tun":
        lab.run("director", ["ip", "link", "set", TUN_NAME, "up"])
        lab.run("director", ["sysctl", "-q", "-w", f"net.ipv4.conf.{TUN_NAME}.rp_filter=0"])
        lab.run("director", ["ip", "route", "add", f"{vip}/32", "dev", TUN_NAME])
    return proc


def stop_forwarder(lab: Lab, mode: str, proc: subprocess.Popen[str] | None) -> str:
    """Undo ``mode``; the forwarder's last line (its counters and modes)."""
    if proc is None:
        lab.run("director", ["nft", "delete", "table", "ip", "afxnat"], check=False)
        return ""
    proc.terminate()
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=15)
        raise BenchError(f"{mode}: forwarder ignored SIGTERM; killed") from None
    if proc.returncode != 0:
        raise BenchError(f"{mode}: forwarder exited {proc.returncode}: {err.strip()}")
    return out.strip().splitlines()[-1] if out.strip() else ""


def one_run(lab: Lab, mode: str, bin_dir: Path, seconds: float) -> tuple[dict[str, float], str]:
    """One load of ``seconds`` through ``mode``: rates, CPU, and the forwarder's report."""
    proc = start_forwarder(lab, mode, bin_dir, seconds)
    try:
        sent0 = link_packets(lab, "client", "eth0", "tx")
        fwd0 = link_packets(lab, "director", "eth1", "tx")
        udp0 = udp_counters(lab, "real1")
        busy0, total0 = busy_total()
        t0 = time.monotonic()
        lab.run(
            "client",
            [str(bin_dir / "blast"), str(lab.spec.vip), str(PORT), f"{seconds:g}"],
            timeout=seconds + 20,
        )
        elapsed = time.monotonic() - t0
        time.sleep(0.2)  # let the last queued packets land
        busy1, total1 = busy_total()
        sent = link_packets(lab, "client", "eth0", "tx") - sent0
        fwd = link_packets(lab, "director", "eth1", "tx") - fwd0
        udp1 = udp_counters(lab, "real1")
    finally:
        report = stop_forwarder(lab, mode, proc)
    received = sum(udp1[k] - udp0[k] for k in ("InDatagrams", "NoPorts"))
    if received <= 0:
        raise BenchError(f"{mode}: real1 received nothing (sent {sent}, forwarded {fwd})")
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    return {
        "sent_kpps": sent / elapsed / 1e3,
        "rx_kpps": received / elapsed / 1e3,
        "fwd_kpps": fwd / elapsed / 1e3,
        "busy_us_per_pkt": (busy1 - busy0) * tick_us / received,
        "busy_pct": 100.0 * (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1),
        "csum_errors": float(udp1["InCsumErrors"] - udp0["InCsumErrors"]),
    }, report


COLUMNS = (
    ("sent_kpps", "sent by the client, kpps"),
    ("fwd_kpps", "out of the director's eth1, kpps"),
    ("rx_kpps", "received by real1 (UDP), kpps"),
    ("busy_us_per_pkt", "machine busy CPU per received packet, µs"),
    ("busy_pct", "machine busy, % of one CPU"),
    ("csum_errors", "checksum errors at real1"),
)


def fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(samples: dict[str, list[dict[str, float]]]) -> str:
    """Markdown: one row per measure, one column per mode, median (ratio to nftables)."""
    med = {
        m: {k: statistics.median(s[k] for s in rows) for k, _ in COLUMNS}
        for m, rows in samples.items()
    }
    lines = ["| measure | " + " | ".join(samples) + " |", "|---" + "|---:" * len(samples) + "|"]
    for key, title in COLUMNS:
        cells = []
        for mode in samples:
            v, base = med[mode][key], med.get("nftables", {}).get(key)
            ratio = (
                f" ({v / base:.2f}×)"
                if base and mode != "nftables" and key != "csum_errors"
                else ""
            )
            cells.append(fmt(v) + ratio)
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_afxdp", description=__doc__)
    p.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--seconds", type=float, default=4.0, help="load per run (default 4)")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated of {MODES}")
    args = p.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if any(m not in MODES for m in modes) or not 1 <= args.repeat <= 20:
        p.error(f"--modes: of {', '.join(MODES)}; --repeat: 1 to 20")
    if not 0.5 <= args.seconds <= 60:
        p.error("--seconds: 0.5 to 60")
    if os.geteuid() != 0:
        print("bench_afxdp: needs root (namespaces, XDP)", file=sys.stderr)
        return 2
    if need := missing():
        print(f"bench_afxdp: missing; run: apt-get install {' '.join(need)}", file=sys.stderr)
        return 2
    samples: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    reports: dict[str, str] = {}
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="bench-afxdp-") as tmp,
        Lab(name=f"afx{os.getpid()}") as lab,
    ):
        bin_dir = Path(tmp)
        build(bin_dir)
        prepare(lab)
        for rnd in range(1, args.repeat + 1):
            for mode in modes:
                values, report = one_run(lab, mode, bin_dir, args.seconds)
                samples[mode].append(values)
                reports[mode] = report or reports.get(mode, "")
                print(
                    f"round {rnd} {mode}: "
                    + ", ".join(f"{k}={fmt(v)}" for k, v in values.items())
                    + (f"  [{report}]" if report else ""),
                    file=sys.stderr,
                )
    load_after = os.getloadavg()
    print(
        f"{os.cpu_count()} CPUs, kernel {os.uname().release}; load average before "
        f"{load_before[0]:.2f}, after {load_after[0]:.2f}; {args.repeat} rounds of "
        f"{args.seconds:g} s; median (ratio to nftables)\n"
    )
    print(table(samples))
    for mode, report in reports.items():
        if report:
            print(f"\n{mode}, last run: `{report}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
