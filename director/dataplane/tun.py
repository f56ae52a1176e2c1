"""The TUN device: the director's packet interface, opened with a virtio-net header and offloads.

Every packet the kernel routes to a VIP (and every reply the policy rule steers
from the private segment) is read from this fd; every rewritten packet is
written back to it and forwarded by the kernel.

Why offloads matter. With ``TUN_F_CSUM`` the kernel may hand us a packet whose
transport checksum is not finished: the header's ``flags`` carry
``VIRTIO_NET_HDR_F_NEEDS_CSUM`` and the checksum field holds only the partial
pseudo-header sum, to be completed from ``csum_start`` by whoever transmits the
packet last (a NIC, or the kernel's software fallback). A NAT rewrite then only
patches that partial sum incrementally and writes the packet back with the same
header. With ``TUN_F_TSO4/6`` (and ``TUN_F_USO4/6`` for UDP) the kernel hands us
GSO super-packets of up to 64 KiB with ``gso_type``/``gso_size`` set, and takes
them back whole: one read, one table lookup and one rewrite for up to ~44 MSS
segments instead of one each. That is the single largest throughput gain a
userspace director has; without it, every 1500-byte packet costs a syscall pair.

Who may call: start-up code (``open_tun``) and the event-loop thread (reads and
writes on ``TunDevice.fd``, which is non-blocking; register it with
``loop.add_reader``).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import struct
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

from director.errors import TunError

log = logging.getLogger(__name__)

# <linux/if_tun.h>; the ioctl numbers are _IOW/_IOR('T', n, int), identical on
# every architecture Linux runs lvsd on (x86_64, aarch64).
TUNSETIFF: Final = 0x400454CA
TUNSETOFFLOAD: Final = 0x400454D0
TUNSETVNETHDRSZ: Final = 0x400454D8

IFF_TUN: Final = 0x0001
IFF_MULTI_QUEUE: Final = 0x0100
IFF_NO_PI: Final = 0x1000
IFF_VNET_HDR: Final = 0x4000

TUN_F_CSUM: Final = 0x01
TUN_F_TSO4: Final = 0x02
TUN_F_TSO6: Final = 0x04
TUN_F_USO4: Final = 0x20
TUN_F_USO6: Final = 0x40

OFFLOAD_NAMES: Final[dict[int, str]] = {
    TUN_F_CSUM: "csum",
    TUN_F_TSO4: "tso4",
    TUN_F_TSO6: "tso6",
    TUN_F_USO4: "uso4",
    TUN_F_USO6: "uso6",
}

# <linux/virtio_net.h> struct virtio_net_hdr (no num_buffers): the 10 bytes that
# precede every packet read from or written to the fd when vnet_hdr is on.
# Fields are in host byte order (little-endian on every supported machine).
VNET_HDR_LEN: Final = 10
VIRTIO_NET_HDR_F_NEEDS_CSUM: Final = 1
VIRTIO_NET_HDR_F_DATA_VALID: Final = 2
VIRTIO_NET_HDR_GSO_NONE: Final = 0
VIRTIO_NET_HDR_GSO_TCPV4: Final = 1
VIRTIO_NET_HDR_GSO_UDP: Final = 3
VIRTIO_NET_HDR_GSO_TCPV6: Final = 4
VIRTIO_NET_HDR_GSO_UDP_L4: Final = 5
VIRTIO_NET_HDR_GSO_ECN: Final = 0x80

_VNET_HDR: Final = struct.Struct("=BBHHHH")
_IFREQ: Final = struct.Struct("16sH22x")
_IFNAMSIZ: Final = 16


@dataclass(frozen=True, slots=True)
class VnetHdr:
    """struct virtio_net_hdr: offload metadata in front of each packet on a vnet_hdr TUN.

    ``hdr_len``, ``gso_size``, ``csum_start`` and ``csum_offset`` are byte counts
    from the start of the IP header; ``csum_start``/``csum_offset`` mean something
    only with ``VIRTIO_NET_HDR_F_NEEDS_CSUM`` in ``flags``.
    """

    flags: int = 0
    gso_type: int = VIRTIO_NET_HDR_GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0

    @classmethod
    def unpack(cls, buf: bytes | bytearray | memoryview) -> VnetHdr:
        """Parse the first ``VNET_HDR_LEN`` bytes of ``buf``; refuses a shorter buffer."""
        if len(buf) < VNET_HDR_LEN:
            raise ValueError(f"virtio_net_hdr: need {VNET_HDR_LEN} bytes, got {len(buf)}")
        return cls(*_VNET_HDR.unpack_from(buf))

    def pack(self) -> bytes:
        """The 10-byte wire form, to put in front of a packet written to the TUN."""
        return _VNET_HDR.pack(
            self.flags,
            self.gso_type,
            self.hdr_len,
            self.gso_size,
            self.csum_start,
            self.csum_offset,
        )


def _errno_text(err: OSError) -> str:
    code = err.errno or 0
    return f"{errno.errorcode.get(code, str(code))} ({os.strerror(code)})"


class TunDevice:
    """An open TUN queue: its interface ``name`` and ``ifindex``, the non-blocking ``fd``.

    The device exists while a queue is open (it is not made persistent), so a
    crashed daemon leaves no TUN behind, and the kernel drops every route through
    it. ``close()`` is idempotent.
    """

    __slots__ = ("_closed", "fd", "ifindex", "multi_queue", "name", "offloads", "vnet_hdr")

    def __init__(
        self,
        *,
        name: str,
        fd: int,
        ifindex: int,
        vnet_hdr: bool,
        offloads: frozenset[str],
        multi_queue: bool,
    ) -> None:
        self.name: Final = name
        self.fd: Final = fd
        self.ifindex: Final = ifindex
        self.vnet_hdr: Final = vnet_hdr
        self.offloads: Final = offloads
        self.multi_queue: Final = multi_queue
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the queue; closing the last queue removes the interface."""
        if self._closed:
            return
        self._closed = True
        os.close(self.fd)
        log.debug("tun %s: closed fd %d", self.name, self.fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self.fd}"
        return (
            f"TunDevice({self.name!r}, ifindex={self.ifindex}, {state}, "
            f"vnet_hdr={self.vnet_hdr}, offloads={sorted(self.offloads)})"
        )


def _offload_names(flags: int) -> frozenset[str]:
    return frozenset(name for bit, name in OFFLOAD_NAMES.items() if flags & bit)


def _set_offloads(fd: int, name: str) -> int:
    """Ask for csum+TSO+USO, then csum+TSO if the kernel refuses USO (before 6.2)."""
    wanted = (
        TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6,
        TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
    )
    for i, flags in enumerate(wanted):
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, flags)
        except OSError as e:
            if e.errno == errno.EINVAL and i + 1 < len(wanted):
                log.debug("tun %s: kernel refused offloads %#x, retrying without USO", name, flags)
                continue
            raise TunError(f"tun {name}: TUNSETOFFLOAD {flags:#x}: {_errno_text(e)}") from e
        return flags
    raise AssertionError("unreachable")


def open_tun(
    name: str, *, vnet_hdr: bool = True, offloads: bool = True, multi_queue: bool = False
) -> TunDevice:
    """Create (or, with ``multi_queue``, attach another queue to) the TUN interface ``name``.

    The device is IFF_TUN | IFF_NO_PI: each read returns one IP packet, preceded
    by a ``VnetHdr`` when ``vnet_hdr`` is true (header size 10 bytes). With
    ``offloads`` (which needs ``vnet_hdr``) it enables TUN_F_CSUM, TSO4, TSO6 and,
    when the kernel accepts them, USO4 and USO6; ``TunDevice.offloads`` names
    those accepted. The interface is left down, without addresses or routes
    (``director.dataplane.plumbing`` does that). Raises TunError naming the device and the
    errno (EPERM without CAP_NET_ADMIN, EBUSY if the name is taken without
    ``multi_queue``); ValueError for a bad name or argument combination.
    """
    if not name or len(name.encode()) >= _IFNAMSIZ or "/" in name or name.strip() != name:
        raise ValueError(f"tun name: must be 1..{_IFNAMSIZ - 1} bytes without '/', got {name!r}")
    if offloads and not vnet_hdr:
        raise ValueError(f"tun {name}: offloads need vnet_hdr (the kernel reports GSO in it)")
    ifr_flags = IFF_TUN | IFF_NO_PI
    if vnet_hdr:
        ifr_flags |= IFF_VNET_HDR
    if multi_queue:
        ifr_flags |= IFF_MULTI_QUEUE
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise TunError(f"tun {name}: open /dev/net/tun: {_errno_text(e)}") from e
    try:
        try:
            ifr = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), ifr_flags))
        except OSError as e:
            raise TunError(f"tun {name}: TUNSETIFF {ifr_flags:#x}: {_errno_text(e)}") from e
        actual = _IFREQ.unpack(ifr)[0].rstrip(b"\0").decode()
        if vnet_hdr:
            try:
                fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("=i", VNET_HDR_LEN))
            except OSError as e:
                raise TunError(f"tun {actual}: TUNSETVNETHDRSZ: {_errno_text(e)}") from e
        accepted = _set_offloads(fd, actual) if offloads else 0
        os.set_blocking(fd, False)
        ifindex = socket.if_nametoindex(actual)
    except BaseException:
        os.close(fd)
        raise
    dev = TunDevice(
        name=actual,
        fd=fd,
        ifindex=ifindex,
        vnet_hdr=vnet_hdr,
        offloads=_offload_names(accepted),
        multi_queue=multi_queue,
    )
    log.debug("tun %s: opened %r", actual, dev)
    return dev
