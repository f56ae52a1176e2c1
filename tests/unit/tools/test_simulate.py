"""``lvsd simulate``: the hand-checked traces, the protocol's edges and the crafted packets.

Each tests/vectors/traces/NAME.jsonl is replayed on both fast paths and must print exactly
NAME.expected.jsonl; NAME.md beside them works each expected line out by hand from the
kernel's rules (list order, wrr's cw, lc/wlc overheads, TCP states, timers: ip_vs_ctl.c,
ip_vs_wrr.c, ip_vs_wlc.c, ip_vs_proto_tcp.c); docs/simulate.md lists them.
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP

import director.dataplane.fastpath
from director.tools import simulate
from director.tools.simulate import (
    TCP_ACK,
    TCP_SYN,
    Simulator,
    craft_packet,
    packet_dst,
)

TRACES = Path(__file__).resolve().parents[2] / "vectors" / "traces"
TRACE_NAMES = sorted(
    p.name.removesuffix(".jsonl")
    for p in TRACES.glob("*.jsonl")
    if not p.name.endswith(".expected.jsonl")
)


def replay(fastpath: ModuleType, lines: list[str]) -> list[dict[str, Any]]:
    sim = Simulator(table_factory=fastpath.ConnTable)
    return [json.loads(out) for out in sim.replay(lines)]


def test_every_trace_has_expected_output_and_notes() -> None:
    assert len(TRACE_NAMES) >= 10
    for name in TRACE_NAMES:
        assert (TRACES / f"{name}.expected.jsonl").is_file(), name
        assert (TRACES / f"{name}.md").is_file(), name


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_trace(fastpath: ModuleType, name: str) -> None:
    trace = (TRACES / f"{name}.jsonl").read_text().splitlines()
    expected = (TRACES / f"{name}.expected.jsonl").read_text().splitlines()
    sim = Simulator(table_factory=fastpath.ConnTable)
    assert list(sim.replay(trace)) == expected


def test_first_line_defaults(fastpath: ModuleType) -> None:
    sim = Simulator(table_factory=fastpath.ConnTable)
    sim.apply({"op": "service", "scheduler": "rr"})
    assert sim.svc is not None
    assert str(sim.svc) == "TCP 10.0.1.5:80"
    assert (sim.svc.timeout, sim.svc.netmask, sim.svc.sched_flags) == (0, 0xFFFFFFFF, frozenset())


def test_a_fwmark_service_takes_every_daddr_and_refuses_a_vip(fastpath: ModuleType) -> None:
    out = replay(
        fastpath,
        [
            '{"op":"service","scheduler":"dh","fwmark":7,"vip":"10.0.1.5"}',
            '{"op":"service","scheduler":"dh","fwmark":7}',
            '{"op":"add_dest","addr":"192.168.1.10","port":0}',
            '{"op":"connect","id":"c1","client":"203.0.113.7","daddr":"198.51.100.9","vport":25}',
            '{"op":"pick","client":"203.0.113.8","daddr":"192.0.2.1","vport":53}',
        ],
    )
    assert out[0] == {
        "error": "fwmark: a firewall-mark service has no 'vip' or 'vport'",
        "line": 1,
    }
    assert out[1:] == [{"id": "c1", "dest": "192.168.1.10:0"}, {"dest": "192.168.1.10:0"}]


def test_bad_lines_are_reported_and_replay_goes_on(fastpath: ModuleType) -> None:
    out = replay(
        fastpath,
        [
            '{"op":"snapshot"}',
            "not json",
            '{"op":"service","scheduler":"nope"}',
            '{"op":"service","scheduler":"sh","flags":["sh-port"],"proto":"udp","vport":53}',
            '{"op":"service","scheduler":"rr"}',
            "",
            '{"op":"add_dest","addr":"192.168.1.300","port":53}',
            '{"op":"add_dest","addr":"192.168.1.10","port":53,"weight":-1}',
            '{"op":"add_dest","addr":"192.168.1.10","port":53}',
            '{"op":"connect","client":"203.0.113.7"}',
            '{"op":"packet","id":"zz","dir":"in","flags":"A"}',
            '{"op":"advance","seconds":-1}',
            '{"op":"warp"}',
            "[1, 2]",
            '{"op":"connect","id":"c1","client":"203.0.113.7","cport":1}',
            '{"op":"packet","id":"c1","dir":"sideways"}',
            '{"op":"snapshot"}',
        ],
    )
    errors = [(o["line"], o["error"]) for o in out if "error" in o]
    assert [line for line, _ in errors] == [1, 2, 3, 5, 7, 8, 10, 11, 12, 13, 14, 16]
    messages = dict(errors)
    assert messages[1] == "no service yet: the first operation must be 'service'"
    assert messages[2].startswith("invalid JSON")
    assert messages[3].startswith("Scheduler or persistence engine not found")
    assert messages[5] == "service: only one service per trace"
    assert messages[8] == "weight: expected an integer in [0, 2147483647], got -1"
    assert messages[13] == "op: unknown operation 'warp'"
    assert out[-3] == {"id": "c1", "dest": "192.168.1.10:53"}
    assert out[-1]["snapshot"][0]["inactive"] == 1  # UDP: always inactive


def test_connect_goes_through_the_tcp_state_machine(fastpath: ModuleType) -> None:
    sim = Simulator(table_factory=fastpath.ConnTable)
    sim.apply({"op": "service", "scheduler": "rr"})
    sim.apply({"op": "add_dest", "addr": "192.168.1.10", "port": 8080})
    assert sim.apply({"op": "connect", "id": "c1", "client": "203.0.113.7", "cport": 1}) == [
        {"id": "c1", "dest": "192.168.1.10:8080"}
    ]
    assert sim.ipvs is not None
    (entry,) = sim.ipvs.table.entries(10)
    state = entry[1 + 8]
    assert state == fastpath.SYN_RECV
    assert sim.conns["c1"].dport == 8080
    sim.apply({"op": "packet", "id": "c1", "dir": "out", "flags": "SA"})
    sim.apply({"op": "packet", "id": "c1", "dir": "in", "flags": "A"})
    (entry,) = sim.ipvs.table.entries(10)
    assert entry[1 + 8] == fastpath.ESTABLISHED


def test_reused_tuple_goes_to_the_existing_connection(fastpath: ModuleType) -> None:
    out = replay(
        fastpath,
        [
            '{"op":"service","scheduler":"rr"}',
            '{"op":"add_dest","addr":"192.168.1.10","port":80}',
            '{"op":"add_dest","addr":"192.168.1.11","port":80}',
            '{"op":"connect","id":"c1","client":"203.0.113.7","cport":1}',
            '{"op":"connect","id":"c2","client":"203.0.113.7","cport":1}',
            '{"op":"packet","id":"c1","dir":"in","flags":"R"}',
            '{"op":"packet","id":"c1","dir":"in","flags":""}',
            '{"op":"connect","id":"c3","client":"203.0.113.7","cport":1}',
        ],
    )
    # a second SYN of a live connection is not scheduled; after CLOSE it is (conn_reuse_mode)
    assert out == [
        {"id": "c1", "dest": "192.168.1.11:80"},
        {"id": "c2", "dest": "192.168.1.11:80"},
        {"id": "c3", "dest": "192.168.1.10:80"},
    ]


def test_no_service_for_the_port_is_null(fastpath: ModuleType) -> None:
    out = replay(
        fastpath,
        [
            '{"op":"service","scheduler":"rr"}',
            '{"op":"add_dest","addr":"192.168.1.10","port":80}',
            '{"op":"connect","id":"c1","client":"203.0.113.7","cport":1,"vport":81}',
            '{"op":"pick","client":"203.0.113.7","cport":1}',
            '{"op":"snapshot"}',
        ],
    )
    assert out[0] == {"id": "c1", "dest": None}
    assert out[1] == {"dest": "192.168.1.10:80"}
    assert out[2]["snapshot"][0]["active"] == 0


def test_advance_fires_timers_in_order() -> None:
    sim = Simulator()
    sim.apply({"op": "service", "scheduler": "rr"})
    sim.apply({"op": "advance", "seconds": 2.5})
    assert sim.now == 2500


@pytest.mark.parametrize("flags", ["S", "SA", "A", "F", "FA", "R", ""])
def test_crafted_tcp_checksums_are_valid(flags: str) -> None:
    bits = simulate.TCP_FLAGS[flags]
    raw = bytes(craft_packet(6, 0xCB007107, 40000, 0x0A000105, 80, bits))
    pkt = IP(raw)
    tcp_sum = pkt[TCP].chksum
    ip_sum = pkt.chksum
    fresh = IP(raw)
    del fresh.chksum
    del fresh[TCP].chksum
    rebuilt = IP(bytes(fresh))
    assert (rebuilt.chksum, rebuilt[TCP].chksum) == (ip_sum, tcp_sum)
    assert pkt[TCP].flags.value == bits
    assert (pkt.src, pkt.dst, pkt[TCP].sport, pkt[TCP].dport) == (
        "203.0.113.7",
        "10.0.1.5",
        40000,
        80,
    )


def test_crafted_udp_checksum_is_valid() -> None:
    raw = bytes(craft_packet(17, 0xCB007107, 5353, 0x0A000105, 53))
    fresh = IP(raw)
    del fresh.chksum
    del fresh[UDP].chksum
    assert IP(bytes(fresh))[UDP].chksum == IP(raw)[UDP].chksum
    assert packet_dst(bytearray(raw)) == (0x0A000105, 53)


def test_syn_ack_sets_the_ack_number() -> None:
    raw = craft_packet(6, 1, 2, 3, 4, TCP_SYN | TCP_ACK)
    assert struct.unpack_from("!I", raw, 28)[0] == 1


def test_cli_reads_a_file_and_stdin(
    fastpath: ModuleType,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(director.dataplane.fastpath, "ConnTable", fastpath.ConnTable)
    parser = argparse.ArgumentParser()
    simulate.add_command(parser.add_subparsers())
    args = parser.parse_args(["simulate", str(TRACES / "wrr_fresh.jsonl")])
    assert args.func(args) == 0
    expected = (TRACES / "wrr_fresh.expected.jsonl").read_text()
    assert capsys.readouterr().out == expected
    missing = parser.parse_args(["simulate", str(tmp_path / "none.jsonl")])
    assert missing.func(missing) == 1
    assert "No such file or directory" in capsys.readouterr().err
