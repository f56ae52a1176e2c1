"""The connection table against a plain dict model: insert, lookup, expire, remove (Hypothesis)."""

from __future__ import annotations

import importlib
import os
import struct
from types import ModuleType
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

VIP = 0xC000020A
CLIENTS = [0xC6336401, 0xC6336402]
CPORTS = [1000, 1001]
UDP_MS = 300_000


def _udp(caddr: int, cport: int) -> bytearray:
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, 28, 0, 0, 64, 17, 0, caddr, VIP)
    return bytearray(ip + struct.pack("!HHHH", cport, 53, 8, 0))


def machine(fp: ModuleType) -> type[RuleBasedStateMachine]:
    class TableModel(RuleBasedStateMachine):
        """Model: handle -> [key, daddr, deadline, creation order]; newest key wins lookups."""

        def __init__(self) -> None:
            super().__init__()
            self.t: Any = fp.ConnTable(6, 4, 1)
            for d in range(4):
                self.t.set_dest(d, 0, 0x0A000100 + d, 53, 0, 0)
            self.model: dict[int, list[int]] = {}
            self.now = 0
            self.order = 0

        def _newest(self, caddr: int, cport: int) -> int | None:
            live = [(v[4], h) for h, v in self.model.items() if (v[0], v[1]) == (caddr, cport)]
            return max(live)[1] if live else None

        @rule(caddr=st.sampled_from(CLIENTS), cport=st.sampled_from(CPORTS), dest=st.integers(0, 3))
        def insert(self, caddr: int, cport: int, dest: int) -> None:
            h = self.t.insert(17, caddr, cport, VIP, 53, 0x0A000100 + dest, 53, dest, self.now)
            if len(self.model) >= 6:
                assert h == -1
                return
            assert h >= 0
            assert h not in self.model
            self.model[h] = [caddr, cport, 0x0A000100 + dest, self.now + UDP_MS, self.order]
            self.order += 1

        @rule(caddr=st.sampled_from(CLIENTS), cport=st.sampled_from(CPORTS))
        def lookup(self, caddr: int, cport: int) -> None:
            buf = _udp(caddr, cport)
            verdict = self.t.process(buf, self.now)
            h = self._newest(caddr, cport)
            if h is None:
                assert verdict == fp.NEW
            else:
                assert verdict == fp.FORWARD
                assert int.from_bytes(buf[16:20], "big") == self.model[h][2]
                self.model[h][3] = self.now + UDP_MS

        @rule(dt=st.integers(0, 400_000))
        def expire(self, dt: int) -> None:
            self.now += dt
            gone = [h for h, v in self.model.items() if v[3] <= self.now]
            assert self.t.expire(self.now) == len(gone)
            for h in gone:
                del self.model[h]

        @precondition(lambda self: bool(self.model))
        @rule(data=st.data())
        def remove(self, data: st.DataObject) -> None:
            h = data.draw(st.sampled_from(sorted(self.model)))
            self.t.remove(h)
            del self.model[h]

        @invariant()
        def agrees(self) -> None:
            assert len(self.t) == len(self.model)
            assert sorted(e[0] for e in self.t.entries(100)) == sorted(self.model)
            for h, v in self.model.items():
                assert self.t.conn_info(h)[10] == v[3]
            assert sum(self.t.dest_buffer().tolist()[1 :: fp.DEST_FIELDS]) == len(self.model)

    return TableModel


def _module(name: str) -> ModuleType:
    if name == "c" and os.environ.get("DIRECTOR_NO_EXTENSIONS") == "1":
        pytest.skip("DIRECTOR_NO_EXTENSIONS=1")
    return importlib.import_module(
        "director.dataplane._fastpath" if name == "c" else "director.dataplane._fastpath_py"
    )


@pytest.mark.parametrize("impl", [pytest.param("c", marks=pytest.mark.c_extension), "py"])
def test_table_matches_dict_model(impl: str) -> None:
    run_state_machine_as_test(
        machine(_module(impl)),
        settings=settings(max_examples=150, stateful_step_count=40, deadline=None),
    )
