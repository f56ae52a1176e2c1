"""lvs.cf: the thesis's file, each validation error by line and keyword, lvsd check, round trips."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from director import config
from director.config import (
    MAX_CONNECTIONS,
    SCHED_FLAGS,
    SCHEDULER_NAMES,
    DirectorConfig,
    FailoverConfig,
    HostPort,
    LoadMonitor,
    Network,
    Protocol,
    RshCommand,
    ServerConfig,
    Service,
    VirtualConfig,
    format_config,
    load_config,
    parse_config,
)
from director.errors import ConfigError
from scheduling import SCHEDULER_FLAGS, SCHEDULERS

REPO = Path(__file__).resolve().parents[2]
THESIS = REPO / "examples" / "thesis-lvs.cf"

# A small valid file the error cases below break one line at a time.
GOOD = """\
primary = 10.0.1.1
network = nat
nat_router = 192.168.1.254 eth1:1

virtual web {
    address = 10.0.1.5 eth0:1
    port = 80
    scheduler = wlc
    server real1 {
        address = 192.168.1.10
        weight = 2
    }
}
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "lvs.cf")
    return str(info.value)


def assert_error(text: str, line: int, keyword: str, *fragments: str) -> str:
    """The error names lvs.cf:LINE and KEYWORD, and says each fragment."""
    message = error_of(text)
    assert message.startswith(f"lvs.cf:{line}: {keyword}: "), message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --------------------------------------------------------------------------- good files


def test_thesis_file_loads_with_its_values() -> None:
    cfg = load_config(THESIS)
    assert cfg.primary == IPv4Address("10.0.1.1")
    assert cfg.backup == IPv4Address("10.0.1.2")
    assert (cfg.keepalive, cfg.deadtime, cfg.heartbeat_port) == (2, 10, 1050)
    assert cfg.rsh_command is RshCommand.SSH
    assert cfg.network is Network.NAT
    assert cfg.nat_router == IPv4Address("192.168.1.254")
    assert cfg.nat_router_device == "eth1:1"
    (v,) = cfg.virtuals
    assert v.name == "servidorvirtual"
    assert v.address == IPv4Address("10.0.1.5")
    assert v.ports == (80, 21)
    assert v.scheduler == "wlc"
    assert v.load_monitor is LoadMonitor.UPTIME
    assert (v.timeout, v.reentry, v.active) == (10, 180, True)
    assert [s.name for s in v.servers] == ["real1", "real2", "real3"]
    assert [s.weight for s in v.servers] == [2000, 1000, 1000]
    assert [str(s.address) for s in v.servers] == ["192.168.1.10", "192.168.1.11", "192.168.1.12"]
    assert all(s.port is None and s.dport(21) == 21 for s in v.servers)


def test_thesis_file_named_backup_is_active_by_default() -> None:
    assert load_config(THESIS).backup_active is True


def test_defaults_are_piranhas_and_lvsds() -> None:
    cfg = parse_config("")
    assert cfg == DirectorConfig()
    assert (cfg.heartbeat_port, cfg.keepalive, cfg.deadtime) == (539, 6, 18)
    assert cfg.service is Service.LVS
    assert cfg.network is Network.NAT
    assert cfg.rsh_command is RshCommand.RSH
    assert cfg.nat_nmask == IPv4Address("255.255.255.0")
    assert cfg.hard_shutdown is True
    assert cfg.backup_active is False
    assert cfg.metrics_address == HostPort(IPv4Address("127.0.0.1"), 9561)
    assert cfg.control_socket == Path("/run/lvsd.sock")
    assert cfg.state_dir == Path("/var/lib/lvsd")
    assert cfg.max_connections == 1048576
    assert cfg.public_iface is None
    assert cfg.private_iface is None
    v = parse_config(GOOD).virtuals[0]
    assert (v.protocol, v.ports, v.scheduler, v.persistent) == (Protocol.TCP, (80,), "wlc", 0)
    assert v.pmask == IPv4Address("255.255.255.255")
    assert (v.timeout, v.reentry, v.load_monitor) == (10, 180, LoadMonitor.NONE)
    assert v.client_monitor == "/usr/sbin/nanny"
    s = v.servers[0]
    assert (s.active, s.port, s.u_threshold, s.l_threshold) == (True, None, 0, 0)


def test_virtual_port_defaults_to_80_and_server_port_follows_it() -> None:
    text = GOOD.replace("    port = 80\n", "")
    v = parse_config(text).virtuals[0]
    assert v.ports == (80,)
    assert v.servers[0].dport(80) == 80


def test_quoted_strings_escapes_and_trailing_comments() -> None:
    text = GOOD.replace(
        "    port = 80\n",
        "    port = 80   # the web\n"
        '    send = "GET / HTTP/1.0\\r\\n\\r\\n"  # a probe\n'
        "    expect = 'say \\'ok\\' # not a comment'\n"
        '    send_program = "/bin/testlink %h"\n'
        '    client_monitor = "C:\\\\nanny \\"x\\"\\t"\n',
    )
    v = parse_config(text).virtuals[0]
    assert v.ports == (80,)
    assert v.send == "GET / HTTP/1.0\r\n\r\n"
    assert v.expect == "say 'ok' # not a comment"
    assert v.send_program == "/bin/testlink %h"
    assert v.client_monitor == 'C:\\nanny "x"\t'


def test_unknown_escape_is_kept_for_regular_expressions() -> None:
    text = GOOD.replace("    port = 80\n", '    port = 80\n    expect = "HTTP/1\\.[01] \\d+"\n')
    assert parse_config(text).virtuals[0].expect == "HTTP/1\\.[01] \\d+"


def test_value_may_contain_equals_signs() -> None:
    text = GOOD.replace("    port = 80\n", "    port = 80\n    send_program = /bin/check --a=b\n")
    message = error_of(text)
    assert "expected one value" in message  # two words: quote them
    text = GOOD.replace("    port = 80\n", "    port = 80\n    send_program = /bin/check?a=b\n")
    assert parse_config(text).virtuals[0].send_program == "/bin/check?a=b"


def test_crlf_line_endings_and_one_line_blocks() -> None:
    text = (
        "network = direct\r\n"
        "virtual v { address = 192.0.2.1\r\n"
        "  server a { address = 198.51.100.1 }\r\n"
        "}\r\n"
    )
    cfg = parse_config(text)
    assert cfg.virtuals[0].servers[0].address == IPv4Address("198.51.100.1")


def test_ports_may_be_service_names() -> None:
    text = GOOD.replace("port = 80", "port = http, ftp")
    assert parse_config(text).virtuals[0].ports == (80, 21)


def test_lvsd_keywords_parse() -> None:
    text = (
        "public_iface = eth0\nprivate_iface = eth1\nmetrics_address = 0.0.0.0:9100\n"
        'control_socket = "/run/my lvsd.sock"\nheartbeat_key_file = /etc/lvsd/key\n'
        "max_connections = 1000\nstate_dir = /tmp/lvsd\n" + GOOD
    )
    text = text.replace(
        "        weight = 2\n",
        "        weight = 2\n        u_threshold = 100\n        l_threshold = 50\n",
    )
    text = text.replace("scheduler = wlc", "scheduler = sh\n    sched_flags = sh-port, sh-fallback")
    cfg = parse_config(text)
    assert (cfg.public_iface, cfg.private_iface) == ("eth0", "eth1")
    assert cfg.metrics_address == HostPort(IPv4Address("0.0.0.0"), 9100)
    assert cfg.control_socket == Path("/run/my lvsd.sock")
    assert cfg.heartbeat_key_file == Path("/etc/lvsd/key")
    assert (cfg.max_connections, cfg.state_dir) == (1000, Path("/tmp/lvsd"))
    v = cfg.virtuals[0]
    assert v.sched_flags == ("sh-fallback", "sh-port")
    assert (v.servers[0].u_threshold, v.servers[0].l_threshold) == (100, 50)


def test_metrics_can_be_turned_off() -> None:
    assert parse_config("metrics_address = none\n").metrics_address is None


def test_every_ipvsadm_scheduler_is_accepted() -> None:
    assert len(SCHEDULER_NAMES) == 14
    for name in SCHEDULER_NAMES:
        assert parse_config(GOOD.replace("wlc", name)).virtuals[0].scheduler == name


def test_port_zero_with_persistence() -> None:
    text = GOOD.replace("port = 80", "port = 0\n    persistent = 300\n    pmask = 255.255.255.0")
    v = parse_config(text).virtuals[0]
    assert (v.ports, v.persistent, v.pmask) == ((0,), 300, IPv4Address("255.255.255.0"))


def test_failover_blocks_are_modelled() -> None:
    text = (
        "service = fos\n"
        "failover ftp {\n"
        "    address = 10.0.1.7 eth0:2\n"
        "    port = 21\n"
        '    send = "QUIT\\r\\n"\n'
        '    expect = "221"\n'
        "    timeout = 5\n"
        '    start_cmd = "/etc/init.d/vsftpd start"\n'
        '    stop_cmd = "/etc/init.d/vsftpd stop"\n'
        "}\n"
    )
    cfg = parse_config(text)
    assert cfg.service is Service.FOS
    assert cfg.failovers == (
        FailoverConfig(
            name="ftp",
            address=IPv4Address("10.0.1.7"),
            device="eth0:2",
            port=21,
            send="QUIT\r\n",
            expect="221",
            timeout=5,
            start_cmd="/etc/init.d/vsftpd start",
            stop_cmd="/etc/init.d/vsftpd stop",
        ),
    )
    assert parse_config(format_config(cfg)) == cfg


def test_same_address_other_protocol_or_port_is_another_service() -> None:
    second = "virtual dns {\n    address = 10.0.1.5\n    protocol = udp\n    port = 80\n}\n"
    third = "virtual web2 {\n    address = 10.0.1.5\n    port = 8080\n}\n"
    assert len(parse_config(GOOD + second + third).virtuals) == 3


def test_nat_subnets_rule() -> None:
    cfg = parse_config(
        "network = nat\nnat_router = 192.168.1.254\nnat_nmask = 255.255.0.0\n"
        "primary = 10.0.1.1\nprimary_private = 172.16.0.1\n"
        "virtual v {\n    address = 10.0.1.5\n    vip_nmask = 255.255.255.0\n"
        "    server pub { address = 10.0.1.20 }\n"
        "    server priv { address = 172.16.9.9 }\n"
        "    server nat { address = 192.168.7.7 }\n}\n"
    )
    assert cfg.nat_subnets(cfg.virtuals[0]) == (
        IPv4Network("192.168.0.0/16"),
        IPv4Network("172.16.0.0/16"),
        IPv4Network("10.0.1.0/24"),
    )


def test_direct_routing_does_not_check_subnets() -> None:
    text = GOOD.replace("network = nat", "network = direct").replace("192.168.1.10", "203.0.113.9")
    assert parse_config(text).network is Network.DIRECT


# --------------------------------------------------------------------------- errors


def test_negative_weight_message() -> None:
    message = error_of(GOOD.replace("weight = 2", "weight = -3"))
    assert message == "lvs.cf:11: weight: must be an integer >= 0, got '-3'"


def test_unknown_scheduler_lists_the_valid_ones() -> None:
    message = error_of(GOOD.replace("scheduler = wlc", "scheduler = wlcx"))
    assert message == (
        "lvs.cf:8: scheduler: unknown scheduler 'wlcx'; expected one of: "
        "dh, fo, lblc, lblcr, lc, mh, nq, ovf, rr, sed, sh, twos, wlc, wrr"
    )


def test_unknown_keyword_suggests_the_nearest() -> None:
    assert_error(GOOD.replace("weight = 2", "wieght = 2"), 11, "wieght", "did you mean 'weight'")
    assert_error("keepalvie = 3\n", 1, "keepalvie", "did you mean 'keepalive'")


def test_unknown_keyword_without_a_near_one() -> None:
    message = assert_error("zzz = 1\n", 1, "zzz", "unknown keyword in the global section")
    assert "did you mean" not in message


def test_keyword_in_the_wrong_section() -> None:
    assert_error(GOOD.replace("port = 80", "weight = 3"), 7, "weight", "server block")
    assert_error("scheduler = rr\n", 1, "scheduler", "virtual block")


def test_piranha_keyword_lvsd_does_not_support_is_ignored_with_a_warning() -> None:
    cfg = parse_config("sync = 1\nipvsadm = /sbin/ipvsadm\n", "lvs.cf")
    assert cfg == parse_config("")
    assert len(cfg.warnings) == 2
    assert cfg.warnings[0].startswith("lvs.cf:1: sync: ignored, not supported by lvsd")
    assert cfg.warnings[1].startswith("lvs.cf:2: ipvsadm: ignored")


def test_bad_address() -> None:
    assert_error(
        GOOD.replace("192.168.1.10", "192.168.1.300"),
        10,
        "address",
        "IPv4 address",
        "'192.168.1.300'",
    )
    assert_error("primary = director1\n", 1, "primary", "IPv4 address", "'director1'")
    assert_error(
        GOOD.replace("10.0.1.5 eth0:1", "10.0.1.5 eth0:1 extra"), 6, "address", "'IP device'"
    )


def test_bad_netmask() -> None:
    assert_error("nat_nmask = 255.0.255.0\n", 1, "nat_nmask", "netmask", "'255.0.255.0'")
    assert_error("nat_nmask = 0.0.0.255\n", 1, "nat_nmask", "netmask", "'0.0.0.255'")
    assert_error("nat_nmask = 24\n", 1, "nat_nmask", "netmask", "'24'")


@pytest.mark.parametrize("port", ["0", "65536", "-1", "eighty"])
def test_virtual_port_out_of_range(port: str) -> None:
    assert_error(GOOD.replace("port = 80", f"port = {port}"), 7, "port", repr(port))


def test_port_out_of_range_in_a_list() -> None:
    assert_error(GOOD.replace("port = 80", "port = 80,99999"), 7, "port", "'99999'")


def test_port_listed_twice() -> None:
    assert_error(GOOD.replace("port = 80", "port = 80,21,80"), 7, "port", "listed twice")


def test_server_port_out_of_range() -> None:
    text = GOOD.replace("weight = 2", "weight = 2\n        port = 70000")
    assert_error(text, 12, "port", "'70000'")
    text = GOOD.replace("weight = 2", "weight = 2\n        port = 0")
    assert_error(text, 12, "port", "persistent")


def test_heartbeat_port_out_of_range() -> None:
    assert_error("heartbeat_port = 0\n", 1, "heartbeat_port", "'0'")


def test_weight_not_an_integer() -> None:
    assert_error(GOOD.replace("weight = 2", "weight = 2.5"), 11, "weight", ">= 0", "'2.5'")


def test_weight_above_the_kernel_int() -> None:
    text = GOOD.replace("weight = 2", "weight = 2147483648")
    assert_error(text, 11, "weight", "from 0 to 2147483647", "'2147483648'")


def test_boolean_must_be_0_or_1() -> None:
    assert_error("heartbeat = yes\n", 1, "heartbeat", "must be 0 or 1, got 'yes'")


def test_enumerations() -> None:
    assert_error("network = dr\n", 1, "network", "nat, direct, tunnel", "'dr'")
    assert_error("service = both\n", 1, "service", "lvs, fos")
    assert_error("rsh_command = scp\n", 1, "rsh_command", "rsh, ssh")
    text = GOOD.replace("port = 80", "port = 80\n    protocol = sctp")
    assert_error(text, 8, "protocol", "tcp, udp", "'sctp'")
    text = GOOD.replace("port = 80", "port = 80\n    load_monitor = snmp")
    assert_error(text, 8, "load_monitor", "none, uptime, rup, ruptime")


def test_duplicate_virtual_name() -> None:
    second = "virtual web {\n    address = 10.0.1.6\n}\n"
    assert_error(GOOD + second, 14, "virtual", "duplicate name 'web'", "line 5")


def test_duplicate_virtual_service() -> None:
    second = "virtual web2 {\n    address = 10.0.1.5\n    port = 443,80\n}\n"
    assert_error(GOOD + second, 16, "port", "TCP 10.0.1.5:80", "virtual 'web' (line 5)")


def test_fwmark_virtuals() -> None:
    # One mark, one virtual; a fwmark virtual's port is nanny's, not an address service.
    second = "virtual web2 {\n    address = 10.0.1.5\n    fwmark = 1\n    port = 80\n}\n"
    cfg = parse_config(GOOD + second, "lvs.cf")
    assert [(v.fwmark, v.ports) for v in cfg.virtuals] == [(0, (80,)), (1, (80,))]
    third = "virtual web3 {\n    address = 10.0.1.6\n    fwmark = 1\n}\n"
    assert_error(GOOD + second + third, 21, "fwmark", "mark 1 is already virtual 'web2'", "line 14")
    several = "virtual web2 {\n    address = 10.0.1.5\n    fwmark = 1\n    port = 80,443\n}\n"
    assert_error(GOOD + several, 17, "port", "one IPVS service, FWM 1", "'80,443'")


def test_duplicate_server_name() -> None:
    text = GOOD.replace(
        "    }\n}", "    }\n    server real1 {\n        address = 192.168.1.11\n    }\n}"
    )
    assert_error(text, 13, "server", "duplicate name 'real1'", "line 9")


def test_duplicate_server_address_and_port() -> None:
    text = GOOD.replace(
        "    }\n}",
        "    }\n    server real2 {\n        address = 192.168.1.10\n        port = 80\n    }\n}",
    )
    assert_error(text, 13, "server", "192.168.1.10:80", "'real1' (line 9)")


def test_same_server_address_on_another_port_is_allowed() -> None:
    text = GOOD.replace(
        "    }\n}",
        "    }\n    server real2 {\n        address = 192.168.1.10\n        port = 8080\n    }\n}",
    )
    assert len(parse_config(text).virtuals[0].servers) == 2


def test_missing_virtual_address() -> None:
    text = GOOD.replace("    address = 10.0.1.5 eth0:1\n", "")
    assert_error(text, 5, "address", "virtual 'web' has no address (required)")


def test_missing_server_address() -> None:
    text = GOOD.replace("        address = 192.168.1.10\n", "")
    assert_error(text, 9, "address", "server 'real1' has no address (required)")


def test_missing_failover_commands() -> None:
    assert_error(
        "failover f {\n    address = 10.0.0.1\n    start_cmd = /bin/true\n}\n",
        1,
        "stop_cmd",
        "required",
    )


def test_unclosed_brace_names_the_opening_line() -> None:
    text = GOOD[: GOOD.rindex("}")]  # drops the virtual's closing brace
    assert_error(text, 5, "virtual", "never closed")


def test_unclosed_server_brace() -> None:
    text = "network = direct\nvirtual v {\n    address = 10.0.0.1\n    server s {\n"
    assert_error(text, 4, "server", "never closed")


def test_stray_closing_brace() -> None:
    assert_error(GOOD + "}\n", 14, "}", "stray")


def test_block_without_brace() -> None:
    assert_error("virtual web\n    address = 10.0.1.5\n", 1, "virtual", "expected '{'")


def test_missing_equals_and_value() -> None:
    assert_error("keepalive 6\n", 1, "keepalive", "expected '='")
    assert_error("keepalive =\n", 1, "keepalive", "missing value")


def test_unterminated_string() -> None:
    assert_error('active_cmd = "/bin/true\n', 1, '"', "unterminated")


def test_keyword_given_twice_keeps_the_last_with_a_warning_naming_both_lines() -> None:
    """Piranha's parser assigns each line as it comes: the last one wins."""
    cfg = parse_config("backup_active = 1\nbackup = 10.0.0.2\nbackup_active = 0\n", "lvs.cf")
    assert cfg.backup_active is False
    assert cfg.warnings == (
        "lvs.cf:3: backup_active: given twice in the global section (lines 1 and 3); "
        "line 3's value is used",
    )
    cfg = parse_config("service = fos\nservice = lvs\n")
    assert cfg.service.value == "lvs"
    text = GOOD.replace("weight = 2", "weight = 2\n        weight = 3")
    cfg = parse_config(text, "lvs.cf")
    assert cfg.virtuals[0].servers[0].weight == 3
    assert "lvs.cf:12: weight: given twice in server" in cfg.warnings[0]


def test_l_threshold_above_u_threshold() -> None:
    text = GOOD.replace(
        "weight = 2", "weight = 2\n        u_threshold = 10\n        l_threshold = 20"
    )
    assert_error(text, 13, "l_threshold", "u_threshold (10)", "'20'")


def test_l_threshold_without_u_threshold_is_refused_like_the_kernel() -> None:
    text = GOOD.replace("weight = 2", "weight = 2\n        l_threshold = 5")
    assert_error(text, 12, "l_threshold", "u_threshold (0)", "'5'")


def test_nat_real_server_outside_connected_subnets_is_a_warning() -> None:
    text = GOOD.replace("192.168.1.10", "192.168.2.10")
    cfg = parse_config(text, "lvs.cf")
    assert cfg.virtuals[0].servers[0].address == IPv4Address("192.168.2.10")
    (warning,) = cfg.warnings
    assert warning.startswith("lvs.cf:10: address: real server '192.168.2.10'"), warning
    assert "192.168.1.0/24" in warning


def test_nat_nmask_of_one_host_with_reals_elsewhere_is_a_warning() -> None:
    text = GOOD.replace("network = nat\n", "network = nat\nnat_nmask = 255.255.255.255\n")
    cfg = parse_config(text, "lvs.cf")
    assert str(cfg.nat_nmask) == "255.255.255.255"
    assert [w.split(":")[1] for w in cfg.warnings] == ["11"]


def test_nat_without_any_private_network_is_a_warning() -> None:
    text = GOOD.replace("nat_router = 192.168.1.254 eth1:1\n", "")
    assert "none: no nat_router" in parse_config(text).warnings[0]


def test_nat_nmask_widens_the_private_network() -> None:
    text = GOOD.replace("192.168.1.10", "192.168.2.10")
    text = text.replace("network = nat\n", "network = nat\nnat_nmask = 255.255.0.0\n")
    assert parse_config(text).virtuals[0].servers[0].address == IPv4Address("192.168.2.10")


def test_port_zero_needs_persistence() -> None:
    assert_error(GOOD.replace("port = 80", "port = 0"), 7, "port", "persistent")


def test_sched_flags_must_match_the_scheduler() -> None:
    text = GOOD.replace("scheduler = wlc", "scheduler = wlc\n    sched_flags = sh-port")
    assert_error(text, 9, "sched_flags", "'sh'", "'wlc'")
    text = GOOD.replace("scheduler = wlc", "scheduler = mh\n    sched_flags = mh-hash")
    assert_error(text, 9, "sched_flags", "unknown flag 'mh-hash'")


def test_deadtime_must_exceed_keepalive_when_heartbeats_run() -> None:
    backup = "primary = 10.0.0.1\nbackup = 10.0.0.2\n"
    assert_error(backup + "keepalive = 5\ndeadtime = 5\n", 4, "deadtime", "greater than keepalive")
    assert_error(backup + "keepalive = 30\n", 3, "keepalive", "deadtime (18)")


def test_deadtime_not_above_keepalive_without_an_active_backup_is_accepted() -> None:
    """No heartbeat runs with backup_active = 0 (or heartbeat = 0): Piranha took any pair."""
    cfg = parse_config(
        "backup = 10.0.0.2\nbackup_active = 0\nkeepalive = 6\ndeadtime = 6\n", "lvs.cf"
    )
    assert (cfg.keepalive, cfg.deadtime) == (6, 6)
    assert cfg.warnings == (
        "lvs.cf:4: deadtime: deadtime (6.0) must be greater than keepalive (6.0), or every "
        "late heartbeat declares the peer dead; no heartbeat runs here (backup_active = 0 "
        "or heartbeat = 0), so it is accepted",
    )
    assert parse_config("keepalive = 30\n").deadtime == 18
    assert parse_config("backup = 10.0.0.2\nheartbeat = 0\nkeepalive = 30\n").keepalive == 30


def test_backup_active_needs_a_backup() -> None:
    assert_error("backup_active = 1\n", 1, "backup_active", "no backup")


def test_interface_names() -> None:
    assert_error("public_iface = averyveryverylongname\n", 1, "public_iface", "interface name")
    assert_error("syncd_iface = a/b\n", 1, "syncd_iface", "interface name")


def test_metrics_address_format() -> None:
    assert_error("metrics_address = localhost\n", 1, "metrics_address", "IP:PORT")
    assert_error("metrics_address = 127.0.0.1:0\n", 1, "metrics_address", "IP:PORT")


def test_unquoted_value_with_spaces() -> None:
    assert_error("active_cmd = /bin/echo up\n", 1, "active_cmd", "expected one value", "quote")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config(tmp_path / "absent.cf")
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config(tmp_path)


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "lvs.cf"
    path.write_bytes(b"primary = 10.0.0.1\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"lvs\.cf:2: .*UTF-8"):
        load_config(path)


# --------------------------------------------------------------------------- lvsd check


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "director", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )


def test_lvsd_check_prints_the_normalized_thesis_file() -> None:
    result = run_check(THESIS)
    assert result.returncode == 0, result.stderr
    assert result.stdout == format_config(load_config(THESIS))
    assert "port = 80,21" in result.stdout
    assert "nat_router = 192.168.1.254 eth1:1" in result.stdout
    assert parse_config(result.stdout) == load_config(THESIS)


def test_lvsd_check_reports_an_error_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "lvs.cf"
    path.write_text(GOOD.replace("scheduler = wlc", "scheduler = wlcx"))
    result = run_check(path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"{path}:8: scheduler: unknown scheduler 'wlcx'" in result.stderr
    assert "Traceback" not in result.stderr


def test_lvsd_check_on_a_missing_file(tmp_path: Path) -> None:
    result = run_check(tmp_path / "nope.cf")
    assert result.returncode == 1
    assert "cannot read the configuration" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- round trips


def test_format_is_a_fixed_point() -> None:
    text = format_config(load_config(THESIS))
    assert format_config(parse_config(text)) == text


ADDRESSES = st.ip_addresses(v=4).map(lambda a: IPv4Address(int(a)))
MASKS = st.integers(0, 32).map(lambda n: IPv4Network(f"0.0.0.0/{n}").netmask)
IFNAMES = st.from_regex(r"[a-z][a-z0-9]{0,6}(:[0-9]{1,3})?", fullmatch=True)
NAMES = st.from_regex(r"[A-Za-z0-9_.-]{1,10}", fullmatch=True) | st.text(min_size=1, max_size=8)
TEXTS = st.text(max_size=24)
COMMANDS = st.text(min_size=1, max_size=24).filter(lambda s: bool(s.strip()))
PATHS = st.from_regex(r"/[a-z0-9_. #-]{0,20}", fullmatch=True).map(Path)
SECONDS = st.integers(0, 2**31 - 1)


@st.composite
def servers(draw: st.DrawFn, net: IPv4Network | None, persistent: bool) -> list[ServerConfig]:
    count = draw(st.integers(0, 4))
    if net is not None:
        hosts = st.integers(0, net.num_addresses - 1).map(lambda i: net[i])
    else:
        hosts = ADDRESSES
    addresses = draw(st.lists(hosts, min_size=count, max_size=count, unique=True))
    names = draw(st.lists(NAMES, min_size=count, max_size=count, unique=True))
    out = []
    for name, address in zip(names, addresses, strict=True):
        u = draw(st.integers(0, 2**32 - 1))
        out.append(
            ServerConfig(
                name=name,
                address=address,
                active=draw(st.booleans()),
                weight=draw(st.integers(0, 2**31 - 1)),
                port=draw(st.none() | st.integers(0 if persistent else 1, 65535)),
                u_threshold=u,
                l_threshold=draw(st.integers(0, u)),
            )
        )
    return out


@st.composite
def virtuals(
    draw: st.DrawFn, name: str, address: IPv4Address, net: IPv4Network | None
) -> VirtualConfig:
    persistent = draw(st.integers(0, 3600))
    scheduler = draw(st.sampled_from(SCHEDULER_NAMES))
    flags = [f for f, s in SCHED_FLAGS.items() if s == scheduler]
    fwmark = draw(st.integers(0, 2**32 - 1))
    return VirtualConfig(
        name=name,
        address=address,
        device=draw(st.none() | IFNAMES),
        vip_nmask=draw(st.none() | MASKS) if net is None else None,
        sorry_server=draw(st.none() | ADDRESSES),
        active=draw(st.booleans()),
        fwmark=fwmark,
        protocol=draw(st.sampled_from(Protocol)),
        ports=tuple(
            draw(
                st.lists(
                    st.integers(0 if persistent else 1, 65535),
                    min_size=1,
                    max_size=1 if fwmark else 3,
                    unique=True,
                )
            )
        ),
        scheduler=scheduler,
        sched_flags=tuple(sorted(draw(st.sets(st.sampled_from(flags))))) if flags else (),
        persistent=persistent,
        pmask=draw(MASKS),
        send=draw(st.none() | TEXTS),
        expect=draw(st.none() | TEXTS),
        use_regex=draw(st.booleans()),
        send_program=draw(st.none() | COMMANDS),
        timeout=draw(st.integers(1, 600)),
        reentry=draw(st.integers(0, 600)),
        load_monitor=draw(st.sampled_from(LoadMonitor)),
        quiesce_server=draw(st.booleans()),
        client_monitor=draw(COMMANDS),
        servers=tuple(draw(servers(net, persistent > 0))),
    )


@st.composite
def configs(draw: st.DrawFn) -> DirectorConfig:
    network = draw(st.sampled_from(Network))
    nat_router = draw(st.none() | ADDRESSES) if network is not Network.NAT else draw(ADDRESSES)
    nat_nmask = draw(st.integers(8, 32).map(lambda n: IPv4Network(f"0.0.0.0/{n}").netmask))
    net = IPv4Network(f"{nat_router}/{nat_nmask}", strict=False) if nat_router else None
    keepalive = draw(st.integers(1, 100))
    backup = draw(st.none() | ADDRESSES)
    names = draw(st.lists(NAMES, max_size=3, unique=True))
    vaddrs = draw(st.lists(ADDRESSES, min_size=len(names), max_size=len(names), unique=True))
    vs = [
        draw(virtuals(n, a, net if network is Network.NAT else None))
        for n, a in zip(names, vaddrs, strict=True)
    ]
    marks = [v.fwmark for v in vs]
    vs = [
        replace(v, fwmark=0) if v.fwmark and v.fwmark in marks[:i] else v for i, v in enumerate(vs)
    ]
    if network is not Network.NAT:
        # A direct-routing or tunnelled server receives the virtual's own port.
        vs = [
            v
            if v.fwmark
            else replace(
                v,
                servers=tuple(
                    s if s.port is None or v.ports == (s.port,) else replace(s, port=None)
                    for s in v.servers
                ),
            )
            for v in vs
        ]
    fo_names = draw(st.lists(NAMES, max_size=2, unique=True))
    fos = [
        FailoverConfig(
            name=n,
            address=draw(ADDRESSES),
            start_cmd=draw(COMMANDS),
            stop_cmd=draw(COMMANDS),
            device=draw(st.none() | IFNAMES),
            vip_nmask=draw(st.none() | MASKS),
            active=draw(st.booleans()),
            port=draw(st.integers(1, 65535)),
            send=draw(st.none() | TEXTS),
            expect=draw(st.none() | TEXTS),
            timeout=draw(st.integers(1, 100)),
            reentry=draw(st.integers(0, 100)),
        )
        for n in fo_names
    ]
    return DirectorConfig(
        service=draw(st.sampled_from(Service)),
        serial_no=draw(st.integers(0, 1000)),
        primary=draw(st.none() | ADDRESSES),
        primary_private=draw(st.none() | ADDRESSES) if network is not Network.NAT else None,
        backup=backup,
        backup_active=draw(st.booleans()) if backup else False,
        backup_private=draw(st.none() | ADDRESSES) if network is not Network.NAT else None,
        heartbeat=draw(st.booleans()),
        heartbeat_port=draw(st.integers(1, 65535)),
        keepalive=keepalive,
        deadtime=draw(st.integers(keepalive + 1, 1000)),
        network=network,
        nat_router=nat_router,
        nat_router_device=draw(st.none() | IFNAMES) if nat_router else None,
        nat_nmask=nat_nmask,
        rsh_command=draw(st.sampled_from(RshCommand)),
        debug_level=draw(st.integers(0, 255)),
        syncdaemon=draw(st.booleans()),
        syncd_iface=draw(st.none() | IFNAMES),
        syncd_id=draw(st.integers(0, 255)),
        tcp_timeout=draw(SECONDS),
        tcpfin_timeout=draw(SECONDS),
        udp_timeout=draw(SECONDS),
        active_cmd=draw(st.none() | COMMANDS),
        inactive_cmd=draw(st.none() | COMMANDS),
        monitor_links=draw(st.booleans()),
        hard_shutdown=draw(st.booleans()),
        garp_master_refresh=draw(st.sampled_from([0.0, 0.5, 10.0, 1.25])),
        public_iface=draw(st.none() | IFNAMES),
        private_iface=draw(st.none() | IFNAMES),
        metrics_address=draw(st.none() | st.builds(HostPort, ADDRESSES, st.integers(1, 65535))),
        control_socket=draw(PATHS),
        heartbeat_key_file=draw(st.none() | PATHS),
        max_connections=draw(st.integers(1, MAX_CONNECTIONS)),
        state_dir=draw(PATHS),
        virtuals=tuple(vs),
        failovers=tuple(fos),
    )


@settings(deadline=None, max_examples=200)
@given(configs())
def test_format_then_parse_gives_an_equal_model(cfg: DirectorConfig) -> None:
    text = format_config(cfg)
    assert parse_config(text) == cfg
    assert format_config(parse_config(text)) == text


LVSCF_PIECES = st.sampled_from(
    [
        "virtual",
        "server",
        "failover",
        "address",
        "port",
        "weight",
        "=",
        "{",
        "}",
        "\n",
        " ",
        "#",
        '"',
        "'",
        "\\",
        "10.0.0.1",
        "80,21",
        "-3",
        "99999999999999999999999",
        "0",
        "1",
        "eth0:1",
        "wlc",
        "sched_flags",
        "sh-port",
        "l_threshold",
        "u_threshold",
        "nat_router",
    ]
)


@settings(deadline=None, max_examples=300)
@given(st.lists(LVSCF_PIECES | st.text(max_size=5), max_size=40).map("".join))
def test_any_text_parses_or_raises_config_error(text: str) -> None:
    try:
        cfg = parse_config(text)
    except ConfigError as e:
        message = str(e)
    else:
        assert parse_config(format_config(cfg)) == cfg
        return
    assert message.startswith("<string>:")


def test_config_knows_exactly_the_registered_schedulers() -> None:
    assert sorted(config.SCHEDULER_NAMES) == sorted(SCHEDULERS)
    assert set(config.SCHED_FLAGS) == set().union(*SCHEDULER_FLAGS.values())


def test_ftp_ports_default_to_21_and_take_a_list() -> None:
    assert parse_config("").ftp_ports == (21,)
    cfg = parse_config("ftp_ports = 21, 2121\n")
    assert cfg.ftp_ports == (21, 2121)
    assert "ftp_ports = 21,2121\n" in format_config(cfg)
    assert parse_config(format_config(cfg)).ftp_ports == (21, 2121)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("1", "from 2 to 65535, got 1"),
        ("21,21", "listed twice"),
        ("1,2,3,4,5,6,7,8,9", "at most 8 ports, got 9"),
        ("70000", "'70000'"),
    ],
)
def test_bad_ftp_ports(value: str, fragment: str) -> None:
    assert_error(f"ftp_ports = {value}\n", 1, "ftp_ports", fragment)


def many_virtuals(n_virtuals: int, ports: str, servers: int) -> str:
    """``n_virtuals`` virtuals on distinct VIPs of 10.0.1.0/24 and 10.0.2.0/24..., each
    with ``ports`` and ``servers`` reals on 192.168.1.0/24."""
    out = ["primary = 10.0.1.1\nnetwork = nat\nnat_router = 192.168.1.254 eth1:1\n"]
    for i in range(n_virtuals):
        out.append(f"virtual v{i} {{\n address = 10.{1 + i // 250}.{i % 250}.5\n port = {ports}\n")
        for j in range(servers):
            out.append(f" server r{j} {{\n  address = 192.168.1.{10 + j}\n }}\n")
        out.append("}\n")
    return "".join(out)


def test_max_connections_beyond_the_table_limit_is_refused() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config("max_connections = 2147483647\n" + GOOD, "lvs.cf")
    assert str(e.value) == (
        "lvs.cf:1: max_connections: must be an integer from 1 to 16777216, got '2147483647'"
    )


def test_more_services_than_the_fast_path_holds_are_refused() -> None:
    parse_config(many_virtuals(512, "80,443", 1), "lvs.cf")  # 1,024: the limit
    with pytest.raises(ConfigError) as e:
        parse_config(many_virtuals(513, "80,443", 1), "lvs.cf")
    assert "port: the fast path holds at most 1024 services" in str(e.value)
    assert "brings the active ones to 1026" in str(e.value)


def test_more_destinations_than_the_fast_path_holds_are_refused() -> None:
    parse_config(many_virtuals(400, "80", 10), "lvs.cf")  # 4,000
    with pytest.raises(ConfigError) as e:
        parse_config(many_virtuals(410, "80", 10), "lvs.cf")
    message = str(e.value)
    assert message.startswith("lvs.cf:")
    assert "server: the fast path holds at most 4096 destinations" in message
    assert "brings the active ones to 4100" in message
