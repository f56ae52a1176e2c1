"""ipvsadm's column layout, checked against output ipvsadm 1.31 prints for the same rules."""

from __future__ import annotations

from director.ops.listing import format_list, largenum

SNAPSHOT = {
    "services": [
        {
            "proto": "TCP",
            "addr": "10.95.84.63:80",
            "scheduler": "wlc",
            "flags": [],
            "persistent": 0,
            "conns": 6,
            "inpkts": 36,
            "outpkts": 24,
            "inbytes": 2464,
            "outbytes": 2178,
            "rates": {"cps": 3, "inpps": 18, "outpps": 12, "inbps": 1232, "outbps": 1089},
            "dests": [
                {
                    "addr": "10.95.84.69:80",
                    "weight": 1,
                    "active": 0,
                    "inactive": 2,
                    "conns": 2,
                    "inpkts": 12,
                    "outpkts": 8,
                    "inbytes": 825,
                    "outbytes": 726,
                    "rates": {"cps": 1, "inpps": 6, "outpps": 4, "inbps": 412, "outbps": 363},
                },
            ],
        }
    ]
}


def test_stats_layout_matches_ipvsadm() -> None:
    assert format_list(SNAPSHOT, stats=True) == (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n"
        "  -> RemoteAddress:Port\n"
        "TCP  10.95.84.63:80                      6       36       24     2464     2178\n"
        "  -> 10.95.84.69:80                      2       12        8      825      726\n"
    )


def test_list_layout_matches_ipvsadm() -> None:
    assert format_list(SNAPSHOT) == (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  10.95.84.63:80 wlc\n"
        "  -> 10.95.84.69:80               Masq    1      0          2         \n"
    )


def test_large_numbers_take_suffixes_like_ipvsadm() -> None:
    assert largenum(99_999_999) == " 99999999"
    assert largenum(863_494_123) == "  863494K"
    assert largenum(1_030_000_000) == "    1030M"
    assert largenum(150_000_000_000) == "     150G"
    assert largenum(100_000_000_000_000) == "     100T"


def test_rate_layout_matches_ipvsadm() -> None:
    assert format_list(SNAPSHOT, rate=True) == (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n"
        "  -> RemoteAddress:Port\n"
        "TCP  10.95.84.63:80                      3       18       12     1232     1089\n"
        "  -> 10.95.84.69:80                      1        6        4      412      363\n"
    )
