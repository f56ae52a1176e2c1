"""The FTP application helper for VS-NAT (the kernel's ip_vs_ftp.c), shared by both fast paths.

An FTP control connection's payload names addresses: the real's ``227`` reply to PASV
gives its private address, and the client's ``PORT``/``EPRT`` command tells the real where
to connect. The fast path (C or twin) binds every control connection to the helper
(``ConnTable.bind_app``) and hands each of its payload-carrying packets here with verdict
APP, already NAT-rewritten; pure ACKs never leave the fast path, which applies the
sequence offsets the helper recorded. One Python implementation serves both fast paths, so
there is one parser to get right, and the C path stays small; FTP control packets are a
few per transfer, so their cost is irrelevant.

What it does to a packet (``handle``), as ip_vs_ftp does:
* Only while the control connection is ESTABLISHED. Replies and commands are recognised
  only at the start of a segment's payload.
* Server to client: ``227 ... h1,h2,h3,h4,p1,p2`` has its address rewritten to the VIP
  (same port) and an expected data connection <caddr, cport 0, vaddr, port> -> the reply's
  address:port is created on the control connection's destination, controlled by the
  control connection, in LISTEN; the client's data SYN fills in its port. ``229 ...
  (|||port|)`` creates the same entry towards the control connection's real address and is
  not rewritten. Unlike the kernel, the helper does not remember whether PASV or EPSV was
  sent: a reply is recognised by itself, so one whose command crossed a takeover is still
  handled.
* Client to server: ``PORT h1,h2,h3,h4,p1,p2`` and ``EPRT |1|addr|port|`` create the entry
  <addr, port, vaddr, vport - 1> -> <daddr, dport - 1> on the same destination, so that the
  real's connection from port 20 leaves as VIP:20. Commands are never rewritten.
* A rewrite that changes the payload's length records the difference with
  ``ConnTable.seq_update`` under the packet's original sequence number; every packet's seq
  and ack are then fixed as ip_vs_app does, keeping the previous offset for retransmitted
  data. A retransmitted 227 is rewritten again, to the same bytes, and changes no offset.
* A reply or command that starts a segment but is cut short (no CRLF in the segment: a
  reply split across segments) or does not parse is forwarded unchanged and counted
  (``split``, ``malformed``). As in the kernel a split 227 is therefore not rewritten and
  the client's data connection goes to the real's private address and fails; servers send
  the reply in one write, so this is a corner case, counted so that it can be seen.
"""

from __future__ import annotations

import re
import struct

from director.dataplane import fastpath
from director.stats import FtpStats

_VNET = fastpath.VNET_HDR_LEN
_INFO_CADDR, _INFO_CPORT, _INFO_VADDR, _INFO_VPORT = 1, 2, 3, 4
_INFO_DADDR, _INFO_DPORT, _INFO_DEST, _INFO_STATE = 5, 6, 7, 8
_SEQACK = struct.Struct("!II")
_U16 = struct.Struct("!H")

_PASV_REPLY = re.compile(rb"(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})")
_EPSV_REPLY = re.compile(rb"\(([\x21-\x7e])\1\1(\d{1,5})\1\)")
_PORT_CMD = re.compile(
    rb"PORT +(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})\r\n", re.I
)
_EPRT_CMD = re.compile(rb"EPRT +([\x21-\x7e])(\d)\1([0-9.]{7,15})\1(\d{1,5})\1\r\n", re.I)


class FtpHelper:
    """ip_vs_ftp over one ConnTable. Event-loop thread only."""

    def __init__(self, table: fastpath.ConnTable) -> None:
        self.table = table
        self.packets = 0
        self.rewritten = 0
        self.expected = 0
        self.malformed = 0
        self.split = 0

    def statistics(self) -> FtpStats:
        return FtpStats(self.packets, self.rewritten, self.expected, self.malformed, self.split)

    def handle(self, buf: bytearray, now: int) -> bytearray:
        """Run the helper on a vnet-headed packet the fast path answered APP; returns the
        packet to write (``buf`` itself, or a resized copy). ``now`` in milliseconds."""
        self.packets += 1
        ip = _VNET
        tot = buf[ip + 2] << 8 | buf[ip + 3]
        l4 = ip + 20
        saddr, daddr = struct.unpack_from("!II", buf, ip + 12)
        sport, dport = struct.unpack_from("!HH", buf, l4)
        table = self.table
        inbound = False
        h = table.lookup(6, daddr, dport, saddr, sport)
        if h < 0:
            inbound = True
            h = table.lookup_out(6, daddr, dport, saddr, sport)
            if h < 0:
                return buf
        payload_at = l4 + (buf[l4 + 12] >> 4) * 4
        payload = bytes(buf[payload_at : ip + tot])
        seq, ack = _SEQACK.unpack_from(buf, l4 + 4)
        new = payload
        info = table.conn_info(h)
        if info[_INFO_STATE] == fastpath.ESTABLISHED:
            if inbound:
                self._command(payload, h, info, now)
            else:
                new = self._reply(payload, h, info, now)
        nseq, nack = table.seq_fix(h, inbound, seq, ack)
        _SEQACK.pack_into(buf, l4 + 4, nseq, nack)
        if new is not payload:
            diff = len(new) - len(payload)
            buf[payload_at : ip + tot] = new
            tot += diff
            _U16.pack_into(buf, ip + 2, tot)
            if diff:
                table.seq_update(h, inbound, seq, diff)
        _checksums(buf, tot)
        return buf

    def _reply(self, payload: bytes, h: int, info: tuple[int, ...], now: int) -> bytes:
        code = payload[:4]
        if code not in (b"227 ", b"229 "):
            return payload
        end = payload.find(b"\r\n")
        if end < 0:
            self.split += 1
            return payload
        line = payload[:end]
        if code == b"227 ":
            m = _PASV_REPLY.search(line, 4)
            nums = [int(g) for g in m.groups()] if m else []
            if not nums or max(nums) > 255 or not (nums[4] or nums[5]):
                self.malformed += 1
                return payload
            addr = int.from_bytes(bytes(nums[:4]), "big")
            port = nums[4] << 8 | nums[5]
            self._expect(h, info, info[_INFO_CADDR], 0, port, addr, port, now)
            vaddr = info[_INFO_VADDR].to_bytes(4, "big")
            text = b"%d,%d,%d,%d,%d,%d" % (*vaddr, nums[4], nums[5])
            self.rewritten += 1
            assert m is not None
            return payload[: m.start()] + text + payload[m.end() :]
        e = _EPSV_REPLY.search(line, 4)
        port = int(e.group(2)) if e else 0
        if not 0 < port <= 0xFFFF:
            self.malformed += 1
            return payload
        self._expect(h, info, info[_INFO_CADDR], 0, port, info[_INFO_DADDR], port, now)
        return payload

    def _command(self, payload: bytes, h: int, info: tuple[int, ...], now: int) -> None:
        verb = payload[:4].upper()
        if verb not in (b"PORT", b"EPRT"):
            return
        if b"\r\n" not in payload:
            self.split += 1
            return
        addr = port = -1
        if verb == b"PORT":
            m = _PORT_CMD.match(payload)
            if m:
                nums = [int(g) for g in m.groups()]
                if max(nums) <= 255:
                    addr = int.from_bytes(bytes(nums[:4]), "big")
                    port = nums[4] << 8 | nums[5]
        else:
            e = _EPRT_CMD.match(payload)
            if e and e.group(2) == b"1":
                quad = e.group(3).split(b".")
                if len(quad) == 4 and all(q and int(q) <= 255 for q in quad):
                    addr = int.from_bytes(bytes(int(q) for q in quad), "big")
                    port = int(e.group(4))
        vport, dport = info[_INFO_VPORT], info[_INFO_DPORT]
        if addr < 0 or not 0 < port <= 0xFFFF or vport < 1 or dport < 1:
            self.malformed += 1
            return
        self._expect(h, info, addr, port, vport - 1, info[_INFO_DADDR], dport - 1, now)

    def _expect(
        self,
        ctl: int,
        info: tuple[int, ...],
        caddr: int,
        cport: int,
        vport: int,
        daddr: int,
        dport: int,
        now: int,
    ) -> None:
        """Create (unless it exists) the data connection <caddr, cport, vaddr, vport> ->
        daddr:dport on the control connection's dest, controlled by it, in LISTEN."""
        table = self.table
        vaddr = info[_INFO_VADDR]
        if table.lookup(6, caddr, cport, vaddr, vport) >= 0:
            return
        n = table.insert(6, caddr, cport, vaddr, vport, daddr, dport, info[_INFO_DEST], now, ctl)
        if n < 0:
            return
        table.set_state(n, fastpath.LISTEN, now)
        self.expected += 1


def _sum16(data: bytes | bytearray, start: int, end: int) -> int:
    n = end - start
    s: int = sum(struct.unpack_from(f"!{n // 2}H", data, start))
    if n & 1:
        s += data[end - 1] << 8
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _checksums(buf: bytearray, tot: int) -> None:
    """Recompute the IP header checksum and the TCP checksum of a vnet-headed packet: in
    full, or the pseudo-header partial sum when the vnet header asks the kernel to finish
    it (VIRTIO_NET_HDR_F_NEEDS_CSUM)."""
    ip = _VNET
    buf[ip + 10] = buf[ip + 11] = 0
    _U16.pack_into(buf, ip + 10, ~_sum16(buf, ip, ip + 20) & 0xFFFF)
    l4 = ip + 20
    seglen = tot - 20
    pseudo = bytes(buf[ip + 12 : ip + 20]) + struct.pack("!BBH", 0, 6, seglen)
    if buf[0] & fastpath.VNET_F_NEEDS_CSUM:
        _U16.pack_into(buf, l4 + 16, _sum16(pseudo, 0, 12))
        return
    buf[l4 + 16] = buf[l4 + 17] = 0
    s = _sum16(pseudo, 0, 12) + _sum16(buf, l4, ip + tot)
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    _U16.pack_into(buf, l4 + 16, ~s & 0xFFFF)
