"""Admin tells the data plane when an address gets its first service and loses its last
(``VipHook``): lvsadm -A of a new VIP routes it into the TUN, -D and -C take it away, and a
refusal (a VIP that is a local address) leaves no service behind."""

from __future__ import annotations

import pytest

from director.dataplane import fastpath
from director.ipvs.estimator import RateEstimator
from director.ipvs.service import IPVS, SchedulerNotFound
from director.ops.admin import Admin, ServiceSpec, VipRefused

VIP = 0x0A000105
OTHER = 0x0A000106


class Plane:
    def __init__(self, refuse: frozenset[int] = frozenset()) -> None:
        self.refuse = refuse
        self.events: list[tuple[str, int]] = []

    def vip_added(self, vaddr: int) -> None:
        if vaddr in self.refuse:
            raise VipRefused(f"VIP {vaddr:#x}: is a local address of this director (on eth0)")
        self.events.append(("added", vaddr))

    def vip_removed(self, vaddr: int) -> None:
        self.events.append(("removed", vaddr))


def _admin(plane: Plane) -> Admin:
    return Admin(IPVS(fastpath.ConnTable(64)), RateEstimator(), lambda: 0, vips=plane)


def test_first_and_last_service_of_an_address() -> None:
    plane = Plane()
    admin = _admin(plane)
    admin.add_service(ServiceSpec(6, VIP, 80))
    admin.add_service(ServiceSpec(6, VIP, 443))
    admin.add_service(ServiceSpec(17, VIP, 53))
    admin.add_service(ServiceSpec(6, 0, 0, 7))  # a fwmark service has no address to route
    assert plane.events == [("added", VIP)]
    admin.del_service(ServiceSpec(6, VIP, 80))
    admin.del_service(ServiceSpec(17, VIP, 53))
    assert plane.events == [("added", VIP)]
    admin.del_service(ServiceSpec(6, VIP, 443))
    assert plane.events == [("added", VIP), ("removed", VIP)]
    admin.add_service(ServiceSpec(6, OTHER, 80))
    admin.flush()
    assert plane.events[-2:] == [("added", OTHER), ("removed", OTHER)]


def test_a_refused_vip_leaves_no_service() -> None:
    plane = Plane(refuse=frozenset({VIP}))
    admin = _admin(plane)
    with pytest.raises(VipRefused, match="local address of this director"):
        admin.add_service(ServiceSpec(6, VIP, 80))
    assert admin.ipvs.services == {}
    assert plane.events == []


def test_a_service_that_fails_to_build_gives_its_vip_back() -> None:
    plane = Plane()
    admin = _admin(plane)
    with pytest.raises(SchedulerNotFound):
        admin.add_service(ServiceSpec(6, VIP, 80), scheduler="nosuch")
    assert plane.events == [("added", VIP), ("removed", VIP)]
