"""Lab fixtures: every test gets its own uniquely named lab, removed whatever happens.

Names are ``t<pid>x<counter>``: unique across the tests of one run and across runs in
parallel (each pytest process has its own pid), and short enough for namespace names.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

import pytest

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
