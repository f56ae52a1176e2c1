"""Connection table accounting on both fast paths: counters, thresholds, expiry, templates."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.vectors.nat_vectors import _tcp

CLIENT, VIP, RIP = 0xC6336401, 0xC000020A, 0x0A000115  # 198.51.100.1, 192.0.2.10, 10.0.1.21


def _table(fp: ModuleType, u: int = 0, lo: int = 0, max_conns: int = 64) -> Any:
    t = fp.ConnTable(max_conns, 8, 2)
    t.set_dest(0, 1, RIP, 8080, u, lo)
    return t


def _ins(t: Any, cport: int, now: int = 0, ctl: int = -1, proto: int = 6) -> int:
    h: int = t.insert(proto, CLIENT, cport, VIP, 80, RIP, 8080, 0, now, ctl)
    return h


def _d(fp: ModuleType, t: Any, field: str) -> int:
    v: int = t.dest_buffer()[getattr(fp, "DEST_" + field)]
    return v


def _syn(cport: int) -> bytearray:
    return bytearray(_tcp("198.51.100.1", "192.0.2.10", cport, 80, "S"))


def test_insert_takes_positional_and_keyword_arguments_alike(fastpath: ModuleType) -> None:
    t = _table(fastpath)
    args = (6, CLIENT, 1000, VIP, 80, RIP, 8080, 0, 0)
    names = ("proto", "caddr", "cport", "vaddr", "vport", "daddr", "dport", "dest", "now")
    handles = [
        t.insert(*args),
        t.insert(*args, -1),
        t.insert(*args[:8], now=0),
        t.insert(**dict(zip(names, args, strict=True)), ctl=-1),
    ]
    assert [t.conn_info(h)[:8] for h in handles] == [args[:8]] * 4
    with pytest.raises(TypeError):
        t.insert(*args[:8])
    with pytest.raises(TypeError):
        t.insert(*args, -1, 0)
    with pytest.raises(TypeError):
        t.insert(*args, bogus=1)
    with pytest.raises(ValueError, match=r"cport: must be in 0\.\.65535, got 65536"):
        t.insert(6, CLIENT, 65536, VIP, 80, RIP, 8080, 0, 0)
    assert len(t) == 4


def test_insert_binds_inactive_and_counts(fastpath: ModuleType) -> None:
    fp = fastpath
    t = _table(fp)
    h = _ins(t, 1000, now=5)
    assert t.conn_info(h) == (
        6, CLIENT, 1000, VIP, 80, RIP, 8080, 0, fp.NONE,
        fp.CONN_F_INACTIVE | fp.CONN_F_HASHED, 5 + 2000, 0, -1,
    )  # fmt: skip
    assert (_d(fp, t, "INACTIVE"), _d(fp, t, "ACTIVE"), _d(fp, t, "CONNS")) == (1, 0, 1)
    assert t.svc_buffer()[fp.SVC_FIELDS + fp.SVC_CONNS] == 1
    assert len(t) == 1
    assert t.max_conns == 64
    assert t.dest_buffer().format == "q"
    assert t.dest_buffer().readonly
    assert len(t.dest_buffer()) == 8 * fp.DEST_FIELDS
    assert len(t.svc_buffer()) == 2 * fp.SVC_FIELDS


def test_overload_set_at_upper_threshold_and_cleared_below_lower(fastpath: ModuleType) -> None:
    fp = fastpath
    t = _table(fp, u=3, lo=2)
    hs = [_ins(t, 1000 + i) for i in range(2)]
    assert _d(fp, t, "OVERLOAD") == 0
    hs.append(_ins(t, 1002))
    assert _d(fp, t, "OVERLOAD") == 1
    t.remove(hs.pop())
    assert _d(fp, t, "OVERLOAD") == 1  # total 2 is not < l_threshold 2
    t.remove(hs.pop())
    assert _d(fp, t, "OVERLOAD") == 0


def test_overload_three_quarters_rule_without_lower(fastpath: ModuleType) -> None:
    fp = fastpath
    t = _table(fp, u=4)
    hs = [_ins(t, 1000 + i) for i in range(4)]
    assert _d(fp, t, "OVERLOAD") == 1
    t.remove(hs.pop())  # 3*4 < 4*3 is false
    assert _d(fp, t, "OVERLOAD") == 1
    t.remove(hs.pop())  # 2*4 < 12
    assert _d(fp, t, "OVERLOAD") == 0


def test_set_dest_edit_rule_and_clear(fastpath: ModuleType) -> None:
    fp = fastpath
    t = _table(fp, u=1)
    h = _ins(t, 1000)
    assert _d(fp, t, "OVERLOAD") == 1
    t.set_dest(0, 1, RIP, 8080, 1, 0)  # same u: kept
    assert _d(fp, t, "OVERLOAD") == 1
    t.set_dest(0, 1, RIP, 8080, 5, 0)  # larger u: cleared
    assert _d(fp, t, "OVERLOAD") == 0
    with pytest.raises(ValueError, match="l_threshold"):
        t.set_dest(0, 1, RIP, 8080, 0, 1)
    with pytest.raises(ValueError, match="still has 1"):
        t.clear_dest(0)
    t.remove(h)
    t.clear_dest(0)
    assert t.dest_buffer().tolist()[: fp.DEST_FIELDS] == [0] * fp.DEST_FIELDS


def test_expiry_unbinds_active_and_inactive(fastpath: ModuleType) -> None:
    fp = fastpath
    t = _table(fp)
    a = _ins(t, 1000)
    _ins(t, 1001)
    t.set_state(a, fp.ESTABLISHED, 0)
    assert (_d(fp, t, "ACTIVE"), _d(fp, t, "INACTIVE")) == (1, 1)
    assert t.expire(1999) == 0
    assert t.expire(2000) == 1  # the NONE conn (2 s)
    assert (_d(fp, t, "ACTIVE"), _d(fp, t, "INACTIVE")) == (1, 0)
    assert t.expire(900_000) == 1
    assert (_d(fp, t, "ACTIVE"), _d(fp, t, "INACTIVE"), len(t)) == (0, 0, 0)


def test_lazy_rearm_and_shortened_deadline(fastpath: ModuleType) -> None:
    fp = fastpath
    t = _table(fp)
    h = _ins(t, 1000)
    t.set_state(h, fp.ESTABLISHED, 1000)
    assert t.expire(2000) == 0
    assert t.expire(900_999) == 0
    t.set_state(h, fp.CLOSE, 5000)  # 900 s -> 10 s: must fire at 15 s, not at 901 s
    assert t.expire(14_999) == 0
    assert t.expire(15_000) == 1


def test_expire_after_a_long_jump(fastpath: ModuleType) -> None:
    fp = fastpath
    t = _table(fp, max_conns=500)
    for i in range(300):
        h = _ins(t, 1000 + i, now=i * 977)
        t.set_state(h, (fp.ESTABLISHED, fp.CLOSE, fp.SYN_RECV)[i % 3], i * 977)
    assert t.expire(10 * 86_400_000) == 300
    assert len(t) == 0
    assert _d(fp, t, "ACTIVE") == 0
    assert _d(fp, t, "INACTIVE") == 0


def test_template_lifecycle_and_60s_rule(fastpath: ModuleType) -> None:
    fp = fastpath
    t = _table(fp, u=1)
    tp = t.insert_template(6, CLIENT & 0xFFFFFF00, VIP, 80, 0, 300, 0)
    assert _d(fp, t, "PERSIST") == 1
    assert _d(fp, t, "OVERLOAD") == 0
    assert t.lookup_template(6, CLIENT & 0xFFFFFF00, VIP, 80) == tp
    assert t.lookup_template(17, CLIENT & 0xFFFFFF00, VIP, 80) == -1
    info = t.conn_info(tp)
    assert info[1:8] == (CLIENT & 0xFFFFFF00, 0, VIP, 80, RIP, 8080, 0)
    assert info[9] & fp.CONN_F_TEMPLATE
    assert info[10] == 300_000
    c = _ins(t, 2000, now=0, ctl=tp)
    t.touch_template(tp, 0)
    assert t.conn_info(tp)[11] == 1
    assert t.conn_info(c)[12] == tp
    # the conn becomes ESTABLISHED and outlives the template's 300 s
    t.set_state(c, fp.ESTABLISHED, 0)
    assert t.expire(300_000) == 0
    assert t.conn_info(tp)[10] == 360_000
    t.touch_template(tp, 400_000)  # the timeout is now 60 s for good
    assert t.conn_info(tp)[10] == 460_000
    assert t.expire(900_000) == 1  # the conn; template still re-armed at 460 s before
    assert t.conn_info(tp)[11] == 0
    assert t.expire(960_000) == 1
    assert len(t) == 0
    assert _d(fp, t, "PERSIST") == 0


def test_template_and_conn_due_together_fire_in_creation_order(fastpath: ModuleType) -> None:
    fp = fastpath
    t = _table(fp)
    tp = t.insert_template(6, CLIENT, VIP, 80, 0, 2, 0)
    c = _ins(t, 2000, now=0, ctl=tp)  # NONE: 2 s too
    assert t.expire(2000) == 1  # template first: still controls c, kept for 60 s
    assert t.conn_info(tp)[10] == 62_000
    with pytest.raises(ValueError, match="no connection"):
        t.conn_info(c)
    assert t.expire(62_000) == 1


def test_invalidated_template_lives_until_its_timer(fastpath: ModuleType) -> None:
    fp = fastpath
    t = _table(fp)
    tp = t.insert_template(6, CLIENT, VIP, 80, 0, 10, 0)
    t.invalidate_template(tp)
    assert t.lookup_template(6, CLIENT, VIP, 80) == -1
    info = t.conn_info(tp)
    assert (info[4], info[6], info[9] & fp.CONN_F_HASHED) == (0xFFFF, 0xFFFF, 0)
    assert len(t) == 1
    assert t.expire(10_000) == 1
    assert _d(fp, t, "PERSIST") == 0
    with pytest.raises(ValueError, match="not a template"):
        t.touch_template(_ins(t, 5), 0)


def test_conn_reuse_in_time_wait(fastpath: ModuleType) -> None:
    fp = fastpath
    t = _table(fp)
    h = _ins(t, 1000)
    t.set_state(h, fp.TIME_WAIT, 0)
    assert t.process(_syn(1000), 10) == fp.NEW
    assert len(t) == 0
    assert _d(fp, t, "INACTIVE") == 0
    # under a template the SYN joins the old connection instead
    tp = t.insert_template(6, CLIENT, VIP, 80, 0, 300, 0)
    h = _ins(t, 1000, ctl=tp)
    t.set_state(h, fp.TIME_WAIT, 0)
    assert t.process(_syn(1000), 10) == fp.FORWARD
    assert t.conn_info(h)[8] == fp.SYN_RECV


def test_newest_duplicate_shadows_older(fastpath: ModuleType) -> None:
    fp = fastpath
    t = _table(fp)
    t.set_dest(1, 1, RIP + 1, 8080, 0, 0)
    old = _ins(t, 1000)
    new = t.insert(6, CLIENT, 1000, VIP, 80, RIP + 1, 8080, 1, 0)
    pkt = _syn(1000)
    assert t.process(pkt, 1) == fp.FORWARD
    assert pkt[16:20] == (RIP + 1).to_bytes(4, "big")
    t.remove(new)
    pkt = _syn(1000)
    assert t.process(pkt, 1) == fp.FORWARD
    assert pkt[16:20] == RIP.to_bytes(4, "big")
    assert t.conn_info(old)[8] == fp.SYN_RECV


def test_table_full(fastpath: ModuleType) -> None:
    fp = fastpath
    t = _table(fp, max_conns=2)
    assert _ins(t, 1) >= 0
    assert _ins(t, 2) >= 0
    assert _ins(t, 3) == -1
    assert t.insert_template(6, 1, 2, 3, 0, 10, 0) == -1
    assert t.drops()["DROP_TABLE_FULL"] == 2
    assert set(t.drops()) == {n for v, n in fp.VERDICT_NAMES.items() if n.startswith("DROP_")}


def test_remove_flush_entries(fastpath: ModuleType) -> None:
    fp = fastpath
    t = _table(fp)
    tp = t.insert_template(6, CLIENT, VIP, 80, 0, 10, 0)
    hs = [_ins(t, 1000 + i, ctl=tp) for i in range(3)]
    with pytest.raises(ValueError, match="controls 3"):
        t.remove(tp)
    assert [e[0] for e in t.entries(10)] == [tp, *hs]
    assert len(t.entries(2)) == 2
    t.remove(hs[1])
    assert t.conn_info(tp)[11] == 2
    with pytest.raises(ValueError, match="no connection"):
        t.remove(hs[1])
    assert _ins(t, 5000) == hs[1]  # freed handles are reused, last freed first
    t.flush()
    assert len(t) == 0
    assert t.entries(10) == []
    assert (_d(fp, t, "INACTIVE"), _d(fp, t, "PERSIST"), _d(fp, t, "CONNS")) == (0, 0, 4)
    assert t.expire(10**9) == 0


@pytest.mark.parametrize(
    "args",
    [
        (7, 1, 1, 1, 1, 1, 1, 0, 0),
        (6, -1, 1, 1, 1, 1, 1, 0, 0),
        (6, 1, 65536, 1, 1, 1, 1, 0, 0),
        (6, 1, 1, 1 << 32, 1, 1, 1, 0, 0),
        (6, 1, 1, 1, 1, 1, 1, 8, 0),
        (6, 1, 1, 1, 1, 1, 1, 0, 0, 42),
    ],
)
def test_bad_arguments_raise(fastpath: ModuleType, args: tuple[int, ...]) -> None:
    t = _table(fastpath)
    with pytest.raises(ValueError, match=r"proto|addr|port|dest|handle"):
        t.insert(*args)


def test_bad_constructor_and_slots(fastpath: ModuleType) -> None:
    fp = fastpath
    with pytest.raises(ValueError, match="max_conns"):
        fp.ConnTable(0)
    t = _table(fp)
    for bad in ((8, 0, 1, 1, 0, 0), (0, 2, 1, 1, 0, 0), (0, 0, 1, 70000, 0, 0)):
        with pytest.raises(ValueError, match=r"dest|svc|port"):
            t.set_dest(*bad)
    with pytest.raises(ValueError, match="no connection"):
        t.conn_info(0)
    with pytest.raises(ValueError, match="cannot take state"):
        t.set_state(_ins(t, 1, proto=17), fp.ESTABLISHED, 0)
