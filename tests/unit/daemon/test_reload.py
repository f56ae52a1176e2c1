"""Reload without a network: two configurations diffed into events, applied to a live table.

Each test builds the service layer from one lvs.cf over a real connection table (C and
Python), opens connections, and applies the differences of a second file the way the
director does (``diff``, ``apply_event`` for each event, then ``Nanny.reconfigure``).
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from types import ModuleType

import pytest

from director.config import DirectorConfig, format_config, parse_config
from director.daemon import reload
from director.daemon.director import build_ipvs, plumbing_spec
from director.daemon.nanny import Nanny
from director.daemon.reload import (
    DestAdded,
    DestEdited,
    DestRemoved,
    DestSpec,
    ServiceAdded,
    ServiceEdited,
    ServiceRemoved,
)
from director.ipvs.estimator import RateEstimator
from director.ipvs.service import IPVS
from director.ops.admin import Admin, ServiceSpec
from director.tools.simulate import TCP_ACK, craft_packet
from healthcheck.events import HealthChanged
from healthcheck.specs import ServiceKey

VIP = int(IPv4Address("10.0.1.5"))
R1, R2, R3 = (int(IPv4Address(f"192.168.1.{n}")) for n in (10, 11, 12))
SORRY = int(IPv4Address("192.168.1.99"))
WEB = ServiceSpec(6, VIP, 80)
FTP = ServiceSpec(6, VIP, 21)
DNS = ServiceSpec(17, VIP, 53)


def cf(
    servers: dict[str, int],
    *,
    scheduler: str = "wlc",
    ports: str = "80,21",
    extra: str = "",
    udp: bool = False,
) -> DirectorConfig:
    # realN is 192.168.1.(9 + N)
    blocks = "".join(
        f"    server {name} {{\n        address = 192.168.1.{9 + int(name[-1])}\n"
        f"        weight = {weight}\n    }}\n"
        for name, weight in servers.items()
    )
    text = (
        "network = nat\nnat_router = 192.168.1.254 eth1:1\n"
        f"virtual web {{\n    address = 10.0.1.5\n    port = {ports}\n"
        f"    scheduler = {scheduler}\n    timeout = 6\n    reentry = 30\n{extra}{blocks}}}\n"
    )
    if udp:
        text += (
            "virtual dns {\n    address = 10.0.1.5\n    protocol = udp\n    port = 53\n"
            "    server real1 {\n        address = 192.168.1.10\n    }\n}\n"
        )
    return parse_config(text)


class Running:
    """A director's configuration-holding parts, without plumbing or packets."""

    def __init__(self, cfg: DirectorConfig, fastpath: ModuleType) -> None:
        self.cfg = cfg
        self.table = fastpath.ConnTable(1024)
        self.ipvs: IPVS = build_ipvs(cfg, self.table)
        self.now = 0  # ms, the clock of drain deadlines
        self.admin = Admin(self.ipvs, RateEstimator(), lambda: self.now)
        self.nanny = Nanny(cfg, self.ipvs)

    def reload(self, cfg: DirectorConfig) -> list[reload.ConfigEvent]:
        events = reload.diff(self.cfg, cfg)
        for event in events:
            reload.apply_event(self.admin, event)
        self.nanny.reconfigure(cfg)
        self.cfg = cfg
        return events

    def weights(self, spec: ServiceSpec = WEB) -> dict[int, int]:
        return {d.addr: d.weight for d in self.admin.get(spec).dests}

    def watched(self) -> set[tuple[int, str]]:
        return {(h.key.vport, h.addr) for h in self.nanny.health()}

    def connect(self, cport: int, vport: int = 80) -> tuple[int, int]:
        """Open a connection from the client; (handle, its real server's address)."""
        caddr = int(IPv4Address("10.0.1.100"))
        h = self.ipvs.new_connection(6, caddr, cport, VIP, vport, 0)
        assert h is not None
        return h, self.table.conn_info(h)[5]


def test_diff_orders_adds_before_removes_and_services_last() -> None:
    old = cf({"real1": 100, "real2": 100}, udp=True)
    new = cf({"real1": 300, "real3": 100}, scheduler="rr", ports="80,8080")
    events = reload.diff(old, new)
    r1 = DestSpec(R1, 80, 300, 0, 0)
    r3 = DestSpec(R3, 80, 100, 0, 0)
    assert events[:4] == [
        DestAdded(WEB, r3),
        DestEdited(WEB, r1),
        DestRemoved(WEB, R2, 80),
        ServiceEdited(reload.desired(new)[WEB]),
    ]
    added = events[4]
    assert isinstance(added, ServiceAdded)
    assert added.state.spec == ServiceSpec(6, VIP, 8080)
    assert [d.addr for d in added.state.dests] == [R1, R3]
    assert events[5:] == [ServiceRemoved(FTP), ServiceRemoved(DNS)]
    assert reload.diff(new, new) == []


def test_apply_changes_the_table_and_keeps_connections(fastpath: ModuleType) -> None:
    d = Running(cf({"real1": 100, "real2": 100}), fastpath)
    conns = [d.connect(40000 + i) for i in range(8)]
    assert {addr for _, addr in conns} == {R1, R2}
    d.reload(cf({"real1": 300, "real3": 100}, scheduler="rr", ports="80,8080"))
    assert d.weights() == {R1: 300, R3: 100}
    assert d.admin.get(WEB).sched_name == "rr"
    assert FTP not in {ServiceSpec(s.protocol, s.vaddr, s.vport) for s in d.ipvs.services.values()}
    assert d.weights(ServiceSpec(6, VIP, 8080)) == {R1: 300, R3: 100}
    # Every connection, those to the removed real2 included, still has its real.
    assert len(d.table) == len(conns)
    for h, addr in conns:
        assert d.table.conn_info(h)[5] == addr
    assert any(dest.addr == R2 for dest in d.ipvs.trashed())
    assert d.watched() == {(p, f"192.168.1.{n}") for p in (80, 8080) for n in (10, 12)}


def _client_ack(fastpath: ModuleType, d: Running, h: int) -> int:
    """A client ACK of connection ``h`` through the table; returns the verdict."""
    _, caddr, cport, vaddr, vport, *_ = d.table.conn_info(h)
    return int(d.table.process(craft_packet(6, caddr, cport, vaddr, vport, TCP_ACK), d.now))


def _established_on(fastpath: ModuleType, d: Running, addr: int) -> int:
    for cport in range(40000, 40100):
        h, real = d.connect(cport)
        if real == addr:
            d.table.set_state(h, fastpath.ESTABLISHED, d.now)
            return h
    raise AssertionError("no connection scheduled to the real")


def test_a_removed_real_is_quiesced_then_deleted_once_drained(fastpath: ModuleType) -> None:
    d = Running(cf({"real1": 100, "real2": 100}, ports="80"), fastpath)
    h = _established_on(fastpath, d, R2)
    d.reload(cf({"real1": 100}, ports="80"))
    # Quiesced at once, still linked: no new connection, the old one still flows.
    assert d.weights() == {R1: 100, R2: 0}
    assert list(d.admin.draining()) == [(WEB, R2, 80)]
    assert {d.connect(41000 + i)[1] for i in range(6)} == {R1}
    d.now = 30_000
    assert d.admin.expire_drains(d.now) == 0
    assert _client_ack(fastpath, d, h) == fastpath.FORWARD
    # The client closes: no active connection left, so the next tick deletes it.
    d.table.set_state(h, fastpath.TIME_WAIT, d.now)
    assert d.admin.expire_drains(d.now) == 1
    assert d.weights() == {R1: 100}
    assert d.admin.draining() == {}
    assert any(dest.addr == R2 for dest in d.ipvs.trashed())
    assert _client_ack(fastpath, d, h) == fastpath.DROP_DEST_UNAVAILABLE


def test_a_draining_real_is_deleted_at_the_deadline(fastpath: ModuleType) -> None:
    d = Running(cf({"real1": 100, "real2": 100}, ports="80"), fastpath)
    d.admin.drain_timeout = 20
    h = _established_on(fastpath, d, R2)
    d.now = 1_000
    d.reload(cf({"real1": 100}, ports="80"))
    assert d.admin.draining() == {(WEB, R2, 80): 21_000}
    d.now = 20_999
    assert d.admin.expire_drains(d.now) == 0
    assert d.weights() == {R1: 100, R2: 0}
    d.now = 21_000
    assert d.admin.expire_drains(d.now) == 1
    assert d.weights() == {R1: 100}
    assert _client_ack(fastpath, d, h) == fastpath.DROP_DEST_UNAVAILABLE


def test_a_real_with_no_active_connection_or_no_drain_time_goes_at_once(
    fastpath: ModuleType,
) -> None:
    d = Running(cf({"real1": 100, "real2": 100, "real3": 100}, ports="80"), fastpath)
    d.connect(40000)  # scheduled, never ESTABLISHED: inactive
    d.reload(cf({"real1": 100, "real3": 100}, ports="80"))
    assert d.weights() == {R1: 100, R3: 100}
    d.admin.drain_timeout = 0
    _established_on(fastpath, d, R3)
    d.reload(cf({"real1": 100}, ports="80"))
    assert d.weights() == {R1: 100}
    assert d.admin.draining() == {}


def test_drain_timeout_is_read_and_saved() -> None:
    assert cf({"real1": 100}).drain_timeout == 60
    cfg = parse_config("drain_timeout = 5\n")
    assert cfg.drain_timeout == 5
    assert parse_config(format_config(cfg)).drain_timeout == 5


def test_a_draining_real_configured_again_stays_with_its_weight(fastpath: ModuleType) -> None:
    d = Running(cf({"real1": 100, "real2": 100}, ports="80"), fastpath)
    _established_on(fastpath, d, R2)
    d.reload(cf({"real1": 100}, ports="80"))
    assert d.weights() == {R1: 100, R2: 0}
    d.reload(cf({"real1": 100, "real2": 40}, ports="80"))
    assert d.weights() == {R1: 100, R2: 40}
    assert d.admin.draining() == {}
    d.now = 120_000
    assert d.admin.expire_drains(d.now) == 0
    assert d.weights() == {R1: 100, R2: 40}


def test_lvsadm_d_of_a_draining_real_is_immediate(fastpath: ModuleType) -> None:
    d = Running(cf({"real1": 100, "real2": 100}, ports="80"), fastpath)
    h = _established_on(fastpath, d, R2)
    d.reload(cf({"real1": 100}, ports="80"))
    d.admin.del_dest(WEB, R2, 80)
    assert d.weights() == {R1: 100}
    assert d.admin.draining() == {}
    assert _client_ack(fastpath, d, h) == fastpath.DROP_DEST_UNAVAILABLE
    assert d.admin.expire_drains(10**9) == 0


def test_nanny_keeps_a_down_server_out_and_applies_the_new_weight_later(
    fastpath: ModuleType,
) -> None:
    d = Running(cf({"real1": 100, "real2": 100}, extra="    quiesce_server = 1\n"), fastpath)
    key = ServiceKey(6, "10.0.1.5", 80)
    d.nanny.apply(HealthChanged(key, "192.168.1.11", 80, False, 0, "refused", "http", 6.0))
    assert d.weights() == {R1: 100, R2: 0}
    d.reload(cf({"real1": 400, "real2": 400}, extra="    quiesce_server = 1\n"))
    # real1 is in with its ramp done: the new weight at once; real2 stays quiesced.
    assert d.weights() == {R1: 400, R2: 0}
    health = {(h.key.vport, h.addr): h.state for h in d.nanny.health()}
    assert health[(80, "192.168.1.10")].weight == 400
    d.nanny.apply(HealthChanged(key, "192.168.1.11", 80, True, 12, "HTTP 200", "http", 30.0))
    assert d.weights() == {R1: 400, R2: 12}


def test_a_reload_while_all_reals_are_down_swaps_out_the_sorry_server(
    fastpath: ModuleType,
) -> None:
    extra = "    sorry_server = 192.168.1.99\n"
    d = Running(cf({"real1": 100}, ports="80", extra=extra), fastpath)
    key = ServiceKey(6, "10.0.1.5", 80)
    d.nanny.apply(HealthChanged(key, "192.168.1.10", 80, False, 0, "refused", "http", 6.0))
    assert d.weights() == {SORRY: 1}
    d.reload(cf({"real1": 100, "real3": 50}, ports="80", extra=extra))
    assert d.weights() == {R3: 50}
    assert d.watched() == {(80, "192.168.1.10"), (80, "192.168.1.12")}
    # real1 was out before the reload and is still: its return adds it back.
    d.nanny.apply(HealthChanged(key, "192.168.1.10", 80, True, 3, "HTTP 200", "http", 30.0))
    assert d.weights() == {R3: 50, R1: 3}


def test_changes_the_table_refuses_are_skipped(fastpath: ModuleType) -> None:
    d = Running(cf({"real1": 100, "real2": 100}), fastpath)
    d.admin.del_dest(WEB, R2, 80)  # an operator's lvsadm -d, or nanny
    d.admin.add_dest(WEB, R3, 80, 7)  # an operator's lvsadm -a
    d.reload(cf({"real1": 100, "real3": 100}))
    assert d.weights() == {R1: 100, R3: 7}
    assert d.weights(FTP) == {R1: 100, R3: 100}


def test_statistics_keep_counting_across_a_reload(fastpath: ModuleType) -> None:
    d = Running(cf({"real1": 100, "real2": 100}), fastpath)
    assert d.nanny.statistics().runner.targets == 4
    d.reload(cf({"real1": 100}))
    assert d.nanny.statistics().runner.targets == 2


def test_reload_file_applies_a_good_file_once_and_refuses_a_broken_one(
    tmp_path: Path,
) -> None:
    running = cf({"real1": 100})
    path = tmp_path / "lvs.cf"
    applied: list[DirectorConfig] = []

    def apply_config(cfg: DirectorConfig) -> int:
        applied.append(cfg)
        return len(reload.diff(running, cfg))

    spec = plumbing_spec(running)
    path.write_text("virtual broken {\n  address = nonsense\n")
    assert reload.reload_file(path, running, spec, plumbing_spec, apply_config) is running
    assert applied == []
    good = cf({"real1": 100, "real2": 5})
    path.write_text(format_config(good))
    now = reload.reload_file(path, running, spec, plumbing_spec, apply_config)
    assert applied == [now]
    assert reload.diff(now, good) == []


def test_reload_file_refuses_a_new_firewall_mark(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A mark needs its TUN, table and rule: plumbing, made only at start-up.
    running = cf({"real1": 100})
    path = tmp_path / "lvs.cf"
    marked = (
        format_config(running)
        + "virtual marked {\n    address = 10.0.1.5\n    fwmark = 1\n    persistent = 60\n"
        + "    server real1 {\n        address = 192.168.1.10\n    }\n}\n"
    )
    path.write_text(marked)
    applied: list[DirectorConfig] = []

    def apply_config(cfg: DirectorConfig) -> int:
        applied.append(cfg)
        return 0

    spec = plumbing_spec(running)
    assert spec.fwmarks == ()
    assert reload.reload_file(path, running, spec, plumbing_spec, apply_config) is running
    assert applied == []
    assert "firewall marks changed; that needs a restart" in caplog.text
    assert plumbing_spec(parse_config(marked, "lvs.cf")).fwmarks == (1,)
