/* Docstrings of ConnTable, kept equal to director/dataplane/_fastpath_py.py's by
 * tests/unit/test_fastpath_choice.py (regenerate from the twin when they change). */
#ifndef LVSD_FASTPATH_DOCS_H
#define LVSD_FASTPATH_DOCS_H

#define DOC_set_timeout \
    "Set the timeout of `state` (TCP states NONE..SYNACK, or UDP with proto 17), seconds."

#define DOC_dest_buffer \
    "Read-only int64 view of max_dests * DEST_FIELDS counters, DEST_* offsets per slot."

#define DOC_svc_buffer \
    "Read-only int64 view of max_svcs * SVC_FIELDS counters, SVC_* offsets per slot."

#define DOC_set_dest \
    "Write a dest slot's identity and thresholds (ip_vs_ctl.c add/edit update).\n" \
    "\n" \
    "Marks the slot AVAILABLE, as every add or edit does. OVERLOAD is cleared when the\n" \
    "new u_threshold is 0 or larger than the old one. Refuses l_threshold > u_threshold,\n" \
    "as the kernel does even when u_threshold is 0."

#define DOC_set_dest_available \
    "Set or clear a dest slot's AVAILABLE flag (IP_VS_DEST_F_AVAILABLE), nothing else.\n" \
    "\n" \
    "Clear it when the destination is deleted (``ipvsadm -d``): client-to-server packets\n" \
    "of its connections then get DROP_DEST_UNAVAILABLE until it is set again (revival)."

#define DOC_clear_dest \
    "Zero a dest slot; refuses a slot that connections or templates still reference."

#define DOC_drops \
    "Packets dropped so far, by verdict name (every DROP_* name present)."

#define DOC_evictions \
    "Half-open (SYN_RECV) entries evicted so far to make room in a full table."

#define DOC_insert \
    "Create a connection bound to `dest`; returns its handle, or -1 when the table is full.\n" \
    "\n" \
    "A full table first evicts its oldest half-open (SYN_RECV) entry that controls nothing\n" \
    "and is not `ctl`; -1 only when there is none.\n" \
    "\n" \
    "proto is 6 (TCP, starts in NONE) or 17 (UDP, state UDP); the connection starts\n" \
    "INACTIVE: dest inactconns++, dest and svc conns++, then OVERLOAD when u_threshold\n" \
    "!= 0 and active + inactive >= u_threshold. `ctl` is a template (or controlling\n" \
    "connection) handle to attach to (its n_control++), or -1. -1 counts DROP_TABLE_FULL.\n" \
    "A TCP connection inserted with cport 0 is CONN_F_NO_CPORT (an expected FTP data\n" \
    "connection): the first client packet to vaddr:vport fills in its port."

#define DOC_insert_template \
    "Create a persistence template <proto, snet, 0, vaddr, vport> bound to `dest`.\n" \
    "\n" \
    "daddr:dport come from the dest slot; persistconns++ (OVERLOAD is set if the dest's\n" \
    "total is already >= u_threshold). proto 0 stands for a fwmark service. Returns the\n" \
    "handle, or -1 (and counts DROP_TABLE_FULL) when the table is full (after evicting\n" \
    "a half-open entry if it can, as insert does)."

#define DOC_lookup_template \
    "The handle of the newest findable template for this key, or -1."

#define DOC_set_state \
    "Move a TCP connection to `state` as a packet would (activity counters, timer).\n" \
    "\n" \
    "For application helpers (the FTP data connection starts in LISTEN) and tests."

#define DOC_touch_template \
    "Re-arm a template to now + its timeout (done at each new connection through it)."

#define DOC_invalidate_template \
    "Make a template unfindable (vport and dport read 65535); it lives until it expires."

#define DOC_conn_info \
    "(proto, caddr, cport, vaddr, vport, daddr, dport, dest, state, flags, expires_ms,\n" \
    "n_control, ctl) of a live connection or template; expires_ms is absolute."

#define DOC_entries \
    "Up to `limit` (handle, *conn_info(handle)) tuples in handle order, for ipvsadm -lnc."

#define DOC_entries_from \
    "Up to `limit` (handle, *conn_info(handle)) tuples from handle `start` on: (rows, next).\n" \
    "\n" \
    "`next` is the handle to continue from, or -1 once the walk passed the last handle; a\n" \
    "walk in slices sees once every entry that lives throughout it."

#define DOC_enable_sync_log \
    "Start (or restart, emptied) the sync log with room for `capacity` records; 0 stops it.\n" \
    "\n" \
    "While it is on, every insert (connection or template), TCP state change (so every\n" \
    "change of the INACTIVE flag), template invalidation and removal (expiry, remove,\n" \
    "flush, reuse of a client tuple) appends one record; a full log drops the new record\n" \
    "and counts it lost. Off by default: a table without a sync peer pays nothing."

#define DOC_sync_changes \
    "Take up to `limit` sync log records, oldest first: (records, lost).\n" \
    "\n" \
    "A record is (proto, caddr, cport, vaddr, vport, daddr, dport, dest, state, flags,\n" \
    "removed), the entry as it was at the event (fields in conn_info's order; dest is its\n" \
    "dest slot); flags are masked to CONN_F_INACTIVE | CONN_F_TEMPLATE | CONN_F_IN_SEQ |\n" \
    "CONN_F_OUT_SEQ | CONN_F_FWD_MASK | CONN_F_NOOUTPUT (IPVS sync's flags: the method\n" \
    "travels); removed is 1 for a removal (an invalidated template is removed under its old\n" \
    "key), else 0. `seq_update` logs a record too, when it changes an offset (read them\n" \
    "with `seq_state`). `lost` counts records dropped by a full log since the previous\n" \
    "call: the log then misses changes, and the caller must resend everything."

#define DOC_uncount \
    "Take a connection this table did not schedule (a synced copy) out of its dest's and\n" \
    "service's conns counters, which count scheduled connections only (the kernel's\n" \
    "ip_vs_conn_stats); refuses a template."

#define DOC_credit \
    "Add packets and bytes forwarded elsewhere (the kernel offload) to a dest's and its\n" \
    "service's counters, as if this table had forwarded them; refuses negative counts."

#define DOC_seen \
    "A packet of this connection was forwarded elsewhere at `when` (ms): its deadline\n" \
    "becomes when + its current timeout if that is later; state and counters unchanged."

#define DOC_remove \
    "Remove a connection or template now (unbind, detach); refuses one that controls any."

#define DOC_flush \
    "Remove every connection and template, unbinding each from its dest."

#define DOC_expire \
    "Fire every entry whose deadline <= now, in (deadline, creation) order.\n" \
    "\n" \
    "One that controls others (n_control > 0) is kept and re-armed with 60 s (its timeout\n" \
    "stays 60 s); any other is removed, detached from its template and unbound from its\n" \
    "dest (OVERLOAD cleared per the l/u threshold rule). Returns how many were removed."

#define DOC_process \
    "Classify and, for a known connection, rewrite one IPv4 packet in place.\n" \
    "\n" \
    "Returns FORWARD (rewritten: write it out), NEW (no connection; a TCP SYN without\n" \
    "RST or a UDP datagram that may start one: schedule, `insert`, call again), LOCAL\n" \
    "(non-error ICMP, or an error quoting neither TCP nor UDP: the caller decides),\n" \
    "FRAGMENT (reassemble first), APP (a TCP packet with payload of a connection bound\n" \
    "to the application helper, rewritten but for its sequence numbers: see `bind_app`),\n" \
    "ROUTE (a client packet of a direct-routing connection,\n" \
    "or an ICMP error quoting one: sent unchanged to the dest's link, as ip_vs_dr_xmit\n" \
    "does; nothing is left to do), TUNNEL (the same for a tunnelled connection, left\n" \
    "unchanged for the caller to encapsulate to the real's address: it is counted and\n" \
    "its state moved; the caller sends it) or a DROP_* verdict, which is also counted. A ROUTE\n" \
    "packet whose dest has no link address yet is DROP_NO_NEIGH, one whose write fails\n" \
    "DROP_TX. A packet from the VIP to the client of a non-MASQ connection (a direct-routing\n" \
    "real whose route to the client is the director) is FORWARD unchanged: written back,\n" \
    "the kernel routes it, as it does past ip_vs_out. Other packets from the server side\n" \
    "of a non-MASQ connection are DROP_NO_CONN.\n" \
    "A client packet that matches no connection but an expected one (cport 0) to the\n" \
    "same vaddr:vport fills it in.\n" \
    "A client-to-server packet of a connection whose dest is not AVAILABLE is\n" \
    "DROP_DEST_UNAVAILABLE: not rewritten, no state change, no timer re-arm (ip_vs_in,\n" \
    "expire_nodest_conn=0). Replies and ICMP errors (ip_vs_in_icmp) are not checked."

#define DOC_process_vnet \
    "`process` for a packet behind a virtio_net_hdr, as read from an IFF_VNET_HDR TUN.\n" \
    "\n" \
    "With VIRTIO_NET_HDR_F_NEEDS_CSUM the TCP/UDP checksum field holds the pseudo-header\n" \
    "partial sum (csum_start must be the L4 header and csum_offset its checksum field, else\n" \
    "DROP_BAD_HEADER); address rewrites update it as a plain sum and ports are left out of\n" \
    "it. GSO packets are rewritten the same way and the header is left for the kernel."

#define DOC_drain \
    "Read vnet-headed packets from a non-blocking TUN fd until EAGAIN or max_packets.\n" \
    "\n" \
    "Packets of known connections are rewritten and written to `write_fd` (negative, the\n" \
    "default: back to `fd`; a failed write counts DROP_TX and never raises), or for a\n" \
    "direct-routing connection sent to its dest's link (ROUTE, see `process`); a NEW,\n" \
    "LOCAL, FRAGMENT, APP or TUNNEL packet is appended to `out` as (verdict, packet), the\n" \
    "packet a bytearray with its vnet header, so that the caller acts on the verdict without\n" \
    "classifying it again; drops are counted. An APP packet ends the call, so that the\n" \
    "offsets the helper records for it apply to the packets read after it. Returns packets\n" \
    "read."

#define DOC_lookup \
    "The handle of the connection a client packet caddr:cport -> vaddr:vport matches\n" \
    "(the newest; an expected one with cport 0 is not tried), or -1."

#define DOC_lookup_out \
    "The handle of the connection a server packet daddr:dport -> caddr:cport matches,\n" \
    "or -1."

#define DOC_bind_app \
    "Bind a TCP connection to the application helper (CONN_F_APP).\n" \
    "\n" \
    "From then on each of its packets that carries TCP payload is rewritten as usual\n" \
    "(addresses, ports, state, counters) but its sequence numbers are left alone and\n" \
    "the verdict is APP: the caller parses the payload, calls `seq_fix` (and after a\n" \
    "change of length `seq_update`), and writes the packet out."

#define DOC_seq_fix \
    "The (seq, ack) a packet of this connection leaves with (ip_vs_app's fix-up).\n" \
    "\n" \
    "`inbound` is client to server. seq moves by the direction's delta when it is after\n" \
    "that direction's init_seq, else by its previous_delta; ack moves back by the other\n" \
    "direction's delta when ack - previous_delta is after its init_seq, else by its\n" \
    "previous_delta (conntrack seqadj's test; ip_vs_app's init_seq + delta misplaces an\n" \
    "ACK of the data just before a rewrite that shortened the payload)."

#define DOC_seq_update \
    "Record that a helper changed by `diff` bytes the payload of a packet whose\n" \
    "original sequence number was `seq` (ip_vs_app's vs_seq_update).\n" \
    "\n" \
    "Unless the direction's flag is unset or `seq` is after its init_seq, nothing\n" \
    "changes (a retransmission); else previous_delta = delta, delta += diff,\n" \
    "init_seq = seq and the flag (CONN_F_IN_SEQ or CONN_F_OUT_SEQ) is set, and the sync\n" \
    "log (when on) records the connection."

#define DOC_seq_state \
    "(in_init, in_delta, in_prev, out_init, out_delta, out_prev) of a connection;\n" \
    "deltas signed, all zero for a direction whose flag is unset."

#define DOC_set_seq_state \
    "Install a connection's offsets as `seq_state` gives them (a synced copy); a\n" \
    "direction with any non-zero value gets its flag, one of all zeros loses it."

#define DOC_max_conns \
    "The capacity given at creation: connections plus templates."

#define DOC_ConnTable \
    "IPVS connections, templates and per-dest/per-svc counters, with the VS-NAT rewrite.\n" \
    "\n" \
    "`max_conns` bounds connections plus templates; `max_dests` and `max_svcs` size the\n" \
    "counter arrays read through `dest_buffer()` and `svc_buffer()`. Call from one thread only."

#define DOC_module \
    "The VS-NAT connection table and packet rewrite in pure Python: the spec of _fastpath.c.\n" \
    "\n" \
    "This module and the C extension `director.dataplane._fastpath` have the same names, docstrings,\n" \
    "verdicts and table state; `director.dataplane.fastpath` picks one. Every test runs on both, and\n" \
    "differential tests compare them byte for byte, so a behaviour change lands here first.\n" \
    "\n" \
    "Conventions of the whole API:\n" \
    "* IPv4 addresses are ints in host order (192.0.2.1 is 0xC0000201); ports are host-order ints.\n" \
    "* `now` is a monotonic time in integer milliseconds supplied by the caller; the table never\n" \
    "  reads a clock, so tests and `lvsd simulate` drive time. Timeouts are set in seconds.\n" \
    "* Packets are IPv4 datagrams without a link header in a `bytearray`, rewritten in place.\n" \
    "* Forwarding methods (ip_vs_conn.h): a connection takes its dest's (`set_dest_fwd`) when it\n" \
    "  is inserted. MASQ rewrites (VS-NAT). DROUTE leaves the packet as it is and sends it framed\n" \
    "  to the real server's link address through the dest's packet socket (`set_dest_link`): the\n" \
    "  verdict is ROUTE. Non-MASQ connections carry NOOUTPUT and follow the TCP input-only table.\n" \
    "  `process_vnet` takes the same datagram behind the 10-byte `struct virtio_net_hdr` that a\n" \
    "  TUN device opened with IFF_VNET_HDR prepends (fields little-endian, as on x86).\n" \
    "* The table knows connections, destinations and services by slot number, not virtual\n" \
    "  services by address: NEW says \"no connection, and this packet may start one\"; the caller\n" \
    "  matches the VIP:port against its services, schedules, calls `insert` and `process` again.\n" \
    "* Single-threaded: call from the event-loop thread only (`drain` releases the GIL in C but\n" \
    "  still owns the table while it runs).\n" \
    "\n" \
    "Design of the table (the C file carries the same block with its own data structures):\n" \
    "* Key: client side <proto, caddr, cport, vaddr, vport>, server side <proto, daddr, dport,\n" \
    "  caddr, cport>; templates <proto, snet, 0, vaddr, vport> in a separate key space that\n" \
    "  packets never match. Duplicate keys are allowed: the newest connection shadows older ones\n" \
    "  (the kernel's hlist_add_head), and an older one becomes visible again when the newer goes.\n" \
    "* Hash: here, dicts keyed by the packed key as `bytes` (CPython's SipHash with a per-process\n" \
    "  random key, so clients cannot aim collisions); in C, a keyed multiply-xorshift.\n" \
    "* Expiry: every entry stores its deadline; packets only rewrite that field (lazy re-arm). A\n" \
    "  heap of (deadline, creation sequence, handle) here, a hashed timer wheel in C, files each\n" \
    "  entry once; a filing that comes due early is re-filed at the stored deadline, and one that\n" \
    "  is stale is dropped. Entries due together fire in (deadline, creation) order.\n" \
    "* Sync log: off until `enable_sync_log`; then each insert, TCP state change, template\n" \
    "  invalidation and removal appends a record captured at the event to a bounded log (a deque\n" \
    "  here, a fixed ring in C); a full log drops the new record and counts it lost.\n" \
    "* Cost: lookup, insert and per-packet work O(1) expected; expire O(log n) per entry that is\n" \
    "  due or re-filed, never a scan of the table."

#define DOC_set_dest_fwd \
    "Set a dest slot's forwarding method: CONN_F_MASQ, CONN_F_DROUTE or CONN_F_TUNNEL.\n" \
    "\n" \
    "Connections take it when they are inserted (ip_vs_bind_dest) and keep it: an edit\n" \
    "changes the method of new connections only. A non-MASQ connection also gets NOOUTPUT."

#define DOC_set_dest_link \
    "Set where a dest slot's routed packets go: a packet socket `fd` bound to the real\n" \
    "server's interface with PACKET_VNET_HDR (-1: none), the real's (or its next hop's)\n" \
    "link address `mac` and the interface's own `src_mac`, 48-bit ints (0: unknown).\n" \
    "\n" \
    "A ROUTE packet is written to `fd` as one datagram: the virtio_net_hdr (csum_start\n" \
    "moved past the Ethernet header), the Ethernet header, the IP packet. The slot's\n" \
    "DEST_LINK_FD field holds fd + 1 (0: none)."

#define DOC_dest_of \
    "The dest slot of the connection whose client-side key a TCP or UDP packet (at\n" \
    "`offset` in `buf`: 0, or VNET_HDR_LEN behind a vnet header) carries; -1 if none or\n" \
    "the packet is not one. For a TUNNEL verdict: where the caller encapsulates to."

#define DOC_dump_from \
    "Up to `limit` live entries from handle `start` on, as snapshot records: (data, next).\n" \
    "\n" \
    "`data` is bytes of 80-byte little-endian records, one per entry in handle order:\n" \
    "remaining_ms (expires - `now`) q, seq Q, handle i, ctl i, dest i, caddr I, vaddr I,\n" \
    "daddr I, timeout_ms I, in_init I, in_delta i, in_prev i, out_init I, out_delta i,\n" \
    "out_prev i, cport H, vport H, dport H, flags H, proto B, state B, 2 pad bytes.\n" \
    "`next` is the handle to continue from, or -1 once the walk passed the last handle."

#define DOC_set_report_no_conn \
    "From now on (`on` true) drain also hands the caller, as (DROP_NO_CONN, packet), every\n" \
    "IPv4 TCP segment without RST that found no connection (still counted as a drop), so\n" \
    "that it can answer with a reset as the kernel's stack does; off by default."

#endif
