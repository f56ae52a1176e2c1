"""Golden VS-NAT packets through both fast paths: verdicts, bytes and drop counters."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.unit.dataplane.fastpath_ref import icmp_ok, ip_header_ok, l4_ok, standard_table
from tests.vectors.nat_vectors import VECTORS, Vector, pseudo_partial


@pytest.mark.parametrize("vec", VECTORS, ids=lambda v: f"{v.number:02d}")
def test_vector(fastpath: ModuleType, vec: Vector) -> None:
    t = standard_table(fastpath)
    buf = bytearray(vec.before)
    verdict = t.process_vnet(buf, 1000) if vec.vnet else t.process(buf, 1000)
    assert fastpath.VERDICT_NAMES[verdict] == vec.verdict, vec.description
    assert bytes(buf) == vec.after, vec.description
    drops = t.drops()
    assert sum(drops.values()) == (1 if vec.verdict.startswith("DROP_") else 0)
    if vec.verdict.startswith("DROP_"):
        assert drops[vec.verdict] == 1


@pytest.mark.parametrize("vec", [v for v in VECTORS if v.verdict in ("FORWARD", "APP")], ids=str)
def test_forward_vectors_carry_valid_checksums(vec: Vector) -> None:
    """The expected packets themselves pass an independent full checksum recomputation."""
    pkt = vec.after[10:] if vec.vnet else vec.after
    assert ip_header_ok(pkt)
    if pkt[9] == 1:
        assert icmp_ok(pkt)
        inner = pkt[28:]
        assert ip_header_ok(inner)
        if len(inner) == ((inner[2] << 8) | inner[3]):
            assert l4_ok(inner)
    elif vec.vnet and vec.after[0] & 1:
        field = 36 if pkt[9] == 6 else 26
        src = ".".join(map(str, pkt[12:16]))
        dst = ".".join(map(str, pkt[16:20]))
        expect = pseudo_partial(src, dst, pkt[9], len(pkt) - 20)
        assert int.from_bytes(pkt[field : field + 2], "big") == expect
    else:
        assert l4_ok(pkt)


def test_vectors_are_numbered_and_cover_every_verdict(fastpath: ModuleType) -> None:
    assert [v.number for v in VECTORS] == list(range(1, len(VECTORS) + 1))
    seen = {v.verdict for v in VECTORS}
    # Direct routing's verdicts need a link to write to: test_fastpath_droute has them.
    routed = {"ROUTE", "DROP_NO_NEIGH", "TUNNEL"}
    wanted = set(fastpath.VERDICT_NAMES.values()) - {"DROP_TABLE_FULL", "DROP_TX"} - routed
    assert wanted <= seen


def test_counters_follow_direction(fastpath: ModuleType) -> None:
    """ipvsadm --stats: in = client->server, out = server->client, bytes = IP length."""
    t = standard_table(fastpath)
    fwd = [v for v in VECTORS if v.verdict == "FORWARD" and not v.vnet]
    for v in fwd[:2]:  # Table 1 SYN in, SYN+ACK out
        assert t.process(bytearray(v.before), 5) == fastpath.FORWARD
    d = t.dest_buffer()
    f = fastpath.DEST_FIELDS
    assert d[fastpath.DEST_INPKTS] == 1
    assert d[fastpath.DEST_OUTPKTS] == 1
    assert d[fastpath.DEST_INBYTES] == len(fwd[0].before)
    assert d[fastpath.DEST_OUTBYTES] == len(fwd[1].before)
    s = t.svc_buffer()
    assert s[fastpath.SVC_INPKTS] == 1
    assert s[fastpath.SVC_OUTPKTS] == 1
    assert s[fastpath.SVC_CONNS] == 2  # dests 0 and 3 belong to svc 0
    assert d[f + fastpath.DEST_INPKTS] == 0
