"""Lab fixtures: every test gets its own uniquely named lab, removed whatever happens.

Names are ``t<pid>x<counter>``: unique across the tests of one run and across runs in
parallel (each pytest process has its own pid), and short enough for namespace names.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from director.config import DirectorConfig
from director.dataplane.offload import OFFLOAD, TUN
from lab.cluster import Lab, LabSpec
from tests.conftest import require_root

_lab_counter = itertools.count()

LabFactory = Callable[..., Lab]


def unique_lab_name() -> str:
    """A lab name no other test of any running pytest process uses."""
    return f"t{os.getpid()}x{next(_lab_counter)}"


@pytest.fixture
def lab_factory() -> Iterator[LabFactory]:
    """``make(reals=3, backup=False, spec=LabSpec(), nginx=False, ftp=False, sshd=False)``.

    Every lab it made is downed at teardown, also when the test or ``up`` failed.
    """
    require_root()
    labs: list[Lab] = []

    def make(
        reals: int = 3,
        backup: bool = False,
        spec: LabSpec | None = None,
        nginx: bool = False,
        ftp: bool = False,
        sshd: bool = False,
    ) -> Lab:
        lab = Lab(spec or LabSpec(), unique_lab_name())
        labs.append(lab)
        lab.up(reals=reals, backup=backup, nginx=nginx, ftp=ftp, sshd=sshd)
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            lab.down()


@pytest.fixture
def lab(lab_factory: LabFactory) -> Lab:
    """A lab up with three reals (real1..real3) and no backup director."""
    return lab_factory(reals=3)


@dataclass(frozen=True)
class DataPath:
    """One way of running the daemon's data plane: the decisions' fast path ("c", or the
    "py" twin) and the forwarding mode ("tun", or "tun+offload": established connections
    forwarded by the kernel's tc program)."""

    implementation: str
    mode: str

    @property
    def id(self) -> str:
        return f"{self.implementation}-{self.mode}"

    @property
    def env(self) -> dict[str, str]:
        """The daemon's environment for this fast path."""
        return {"DIRECTOR_NO_EXTENSIONS": "1"} if self.implementation == "py" else {}

    def configure(self, cfg: DirectorConfig) -> DirectorConfig:
        """``cfg`` with this mode's ``offload`` setting."""
        return replace(cfg, offload=self.mode == OFFLOAD)

    def text(self, lvs_cf: str) -> str:
        """An lvs.cf text with this mode's ``offload`` line first."""
        return f"offload = {int(self.mode == OFFLOAD)}\n{lvs_cf}"

    def check(self, status: dict[str, Any]) -> None:
        """Fail unless the running daemon uses this fast path and this mode (so a run never
        passes on a fallback: CI builds the offload, the bootstrap installs clang and libbpf)."""
        assert status["fastpath"] == self.implementation, status
        assert status["offload"]["mode"] == self.mode, status["offload"]


# Every data-plane module runs twice, not four times: on PAIRED or on CROSSED, which
# between them hold both fast paths in both modes. Each pair covers both fast paths and
# both modes on its own.
PAIRED = (DataPath("c", OFFLOAD), DataPath("py", TUN))
CROSSED = (DataPath("c", TUN), DataPath("py", OFFLOAD))


def data_paths(pairs: tuple[DataPath, ...]) -> list[Any]:
    """``pairs`` as pytest params, named like ``c-tun+offload``."""
    return [pytest.param(p, id=p.id) for p in pairs]
