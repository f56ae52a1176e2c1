/* VS-NAT packet classification and rewrite: the C twin of _fastpath_py.ConnTable._process.
 *
 * Checksums are patched incrementally (RFC 1624, eqn. 3): HC' = ~(~HC + ~m + m'). A field
 * holding a VIRTIO_NET_HDR_F_NEEDS_CSUM partial sum is the plain pseudo-header sum, so it
 * gets P' = P + ~m + m' and ports, which are not in the pseudo-header, are left out.
 * Bad packet data only ever yields a verdict; every read is bounds-checked first.
 */
#ifndef LVSD_FASTPATH_PACKET_H
#define LVSD_FASTPATH_PACKET_H

#include <sys/uio.h>

#include "app.h"
#include "table.h"

#define VNET_HDR_LEN 10
#define VNET_F_NEEDS_CSUM 1

static inline uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static inline uint32_t rd32(const uint8_t *p) { return rd16(p) << 16 | rd16(p + 2); }
static inline void wr16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void wr32(uint8_t *p, uint32_t v) {
    wr16(p, v >> 16);
    wr16(p + 2, v & 0xffff);
}

static inline uint32_t csum_fold(uint64_t s) {
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint32_t)s;
}

static inline uint64_t diff32(uint32_t o, uint32_t n) {
    return (uint64_t)(~o >> 16) + (~o & 0xffff) + (n >> 16) + (n & 0xffff);
}

static inline uint64_t diff16(uint32_t o, uint32_t n) { return (~o & 0xffff) + (uint64_t)n; }

static inline void csum_apply(uint8_t *p, uint64_t diff, int partial, int udp) {
    uint32_t c = rd16(p);
    if (partial) {
        c = csum_fold(c + diff);
    } else {
        if (udp && c == 0)
            return;
        c = ~csum_fold((~c & 0xffff) + diff) & 0xffff;
        if (udp && c == 0)
            c = 0xffff;
    }
    wr16(p, c);
}

static uint32_t csum_full(const uint8_t *p, size_t n) {
    uint64_t s = 0;
    size_t i = 0;
    for (; i + 1 < n; i += 2)
        s += rd16(p + i);
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    return ~csum_fold(s) & 0xffff;
}

/* ip_vs_proto_tcp.c tcp_states[]: [class syn fin ack rst][current state]. */
#define sNO S_NONE
#define sES S_ESTABLISHED
#define sSS S_SYN_SENT
#define sSR S_SYN_RECV
#define sFW S_FIN_WAIT
#define sTW S_TIME_WAIT
#define sCL S_CLOSE
#define sCW S_CLOSE_WAIT
#define sLA S_LAST_ACK
#define sLI S_LISTEN
#define sSA S_SYNACK
static const uint8_t tcp_input[4][S_SYNACK + 1] = {
    {sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR},
    {sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW},
    {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES},
    {sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR},
};
static const uint8_t tcp_output[4][S_SYNACK + 1] = {
    {sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR},
    {sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW},
    {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES},
    {sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL},
};

/* The input-only direction, for NOOUTPUT connections (DR, tunnel): replies bypass us. */
static const uint8_t tcp_input_only[4][S_SYNACK + 1] = {
    {sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR},
    {sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW},
    {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES},
    {sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL},
};

static inline int drop(struct table *t, int v) {
    t->drops[v]++;
    return v;
}

static void count_pkt(struct table *t, const struct conn *c, uint32_t len, int inbound) {
    int64_t *d = &t->dests[(size_t)c->dest * DEST_FIELDS];
    int64_t *s = &t->svcs[(size_t)d[DEST_SVC] * SVC_FIELDS];
    if (inbound) {
        d[DEST_INPKTS]++;
        d[DEST_INBYTES] += len;
        s[SVC_INPKTS]++;
        s[SVC_INBYTES] += len;
    } else {
        d[DEST_OUTPKTS]++;
        d[DEST_OUTBYTES] += len;
        s[SVC_OUTPKTS]++;
        s[SVC_OUTBYTES] += len;
    }
}

static inline int dest_available(const struct table *t, const struct conn *c) {
    return t->dests[(size_t)c->dest * DEST_FIELDS + DEST_AVAILABLE] != 0;
}

/* Sends a packet of a DROUTE connection unchanged, framed to its dest's link address, as
 * one datagram on the dest's packet socket: virtio_net_hdr (offsets moved past the
 * Ethernet header), Ethernet header, IP packet. vnet is NULL for a bare packet. */
static int route_xmit(struct table *t, const struct conn *c, const uint8_t *vnet, uint8_t *ip,
                      size_t n) {
    const int64_t *d = &t->dests[(size_t)c->dest * DEST_FIELDS];
    int fd = (int)d[DEST_LINK_FD] - 1;
    uint64_t mac = (uint64_t)d[DEST_MAC], smac = (uint64_t)d[DEST_SRC_MAC];
    if (fd < 0 || !mac)
        return drop(t, V_DROP_NO_NEIGH);
    uint8_t hdr[VNET_HDR_LEN + 14] = {0};
    if (vnet) {
        memcpy(hdr, vnet, VNET_HDR_LEN);
        uint32_t hl = (uint32_t)hdr[2] | (uint32_t)hdr[3] << 8;
        if (hl) {
            hl += 14;
            hdr[2] = (uint8_t)hl;
            hdr[3] = (uint8_t)(hl >> 8);
        }
        if (hdr[0] & VNET_F_NEEDS_CSUM) {
            uint32_t cs = ((uint32_t)hdr[6] | (uint32_t)hdr[7] << 8) + 14;
            hdr[6] = (uint8_t)cs;
            hdr[7] = (uint8_t)(cs >> 8);
        }
    }
    uint8_t *eth = hdr + VNET_HDR_LEN;
    for (int i = 0; i < 6; i++) {
        eth[i] = (uint8_t)(mac >> (40 - 8 * i));
        eth[6 + i] = (uint8_t)(smac >> (40 - 8 * i));
    }
    eth[12] = 0x08;
    eth[13] = 0x00;
    struct iovec iov[2] = {{hdr, sizeof hdr}, {ip, n}};
    if (writev(fd, iov, 2) < 0)
        return drop(t, V_DROP_TX);
    return V_ROUTE;
}

static int is_icmp_error(uint8_t type) { return type == 3 || type == 4 || type == 11 || type == 12; }

/* An ICMP error quoting a packet of a known connection is translated; ip points at the
 * outer header, vnet (or NULL) at the virtio_net_hdr in front of it. */
static int process_icmp(struct table *t, uint8_t *vnet, uint8_t *ip, uint32_t tot, int partial) {
    uint8_t *l4 = ip + 20, *end = ip + tot;
    if (tot < 28)
        return drop(t, V_DROP_TRUNCATED);
    if (!is_icmp_error(l4[0]))
        return V_LOCAL;
    uint8_t *e = l4 + 8;
    if (end - e < 20 || e[0] >> 4 != 4 || (e[0] & 15) < 5)
        return drop(t, V_DROP_BAD_ICMP);
    uint8_t *el4 = e + (e[0] & 15) * 4;
    if (end - el4 < 8 || (e[6] & 0x1f) || e[7])
        return drop(t, V_DROP_BAD_ICMP);
    if (!partial && csum_full(l4, (size_t)(end - l4)) != 0)
        return drop(t, V_DROP_BAD_ICMP);
    uint32_t eproto = e[9];
    if (eproto != PROTO_TCP && eproto != PROTO_UDP)
        return V_LOCAL;
    /* The quoted packet travelled the other way: its reverse is an ordinary key. */
    uint32_t es = rd32(e + 12), ed = rd32(e + 16), esp = rd16(el4), edp = rd16(el4 + 2);
    int inbound = 1;
    int32_t h = lookup_in(t, eproto, ed, edp, es, esp, 0);
    uint8_t *outer_at, *eaddr_at, *eport_at;
    uint32_t new_addr, new_port;
    if (h >= 0) {
        if (t->c[h].flags & CONN_F_FWD_MASK) {
            /* ip_vs_icmp_xmit: the error goes to the real server as it is. */
            count_pkt(t, &t->c[h], tot, 1);
            if ((t->c[h].flags & CONN_F_FWD_MASK) == CONN_F_TUNNEL)
                return V_TUNNEL;
            return route_xmit(t, &t->c[h], vnet, ip, tot);
        }
        outer_at = ip + 16;
        eaddr_at = e + 12;
        eport_at = el4;
        new_addr = t->c[h].daddr;
        new_port = t->c[h].dport;
    } else {
        h = lookup_out(t, eproto, ed, edp, es, esp);
        if (h < 0 || (t->c[h].flags & CONN_F_FWD_MASK))
            return drop(t, V_DROP_NO_CONN);
        inbound = 0;
        outer_at = ip + 12;
        eaddr_at = e + 16;
        eport_at = el4 + 2;
        new_addr = t->c[h].vaddr;
        new_port = t->c[h].vport;
    }
    uint32_t old_outer = rd32(outer_at), old_addr = rd32(eaddr_at), old_port = rd16(eport_at);
    wr32(outer_at, new_addr);
    csum_apply(ip + 10, diff32(old_outer, new_addr), 0, 0);
    wr32(eaddr_at, new_addr);
    wr16(eport_at, new_port);
    uint64_t adiff = diff32(old_addr, new_addr);
    csum_apply(e + 10, adiff, 0, 0);
    uint64_t pdiff = adiff + diff16(old_port, new_port);
    if (eproto == PROTO_UDP)
        csum_apply(el4 + 6, pdiff, 0, 1);
    else if (end - el4 >= 18)
        csum_apply(el4 + 16, pdiff, 0, 0);
    l4[2] = l4[3] = 0;
    wr16(l4 + 2, csum_full(l4, (size_t)(end - l4)));
    if (partial && vnet)
        vnet[0] &= (uint8_t)~VNET_F_NEEDS_CSUM; /* complete now: the kernel must not fold it */
    count_pkt(t, &t->c[h], tot, inbound);
    return V_FORWARD;
}

/* Classifies and rewrites one IPv4 packet of n bytes at ip; vnet is its virtio_net_hdr
 * (NULL for a bare packet). */
static int process_packet(struct table *t, uint8_t *vnet, uint8_t *ip, size_t n, int64_t now) {
    int partial = vnet && (vnet[0] & VNET_F_NEEDS_CSUM);
    if (n < 20)
        return drop(t, V_DROP_TRUNCATED);
    uint32_t ihl = (ip[0] & 15u) * 4;
    if (ip[0] >> 4 != 4 || ihl < 20)
        return drop(t, V_DROP_BAD_HEADER);
    uint32_t tot = rd16(ip + 2);
    if (tot != n)
        return drop(t, V_DROP_BAD_HEADER);
    if (ihl > 20)
        return drop(t, V_DROP_IP_OPTIONS);
    if ((ip[6] & 0x3f) || ip[7])
        return V_FRAGMENT;
    uint32_t proto = ip[9];
    uint8_t *l4 = ip + 20, *csum_at;
    if (proto == PROTO_TCP) {
        if (tot < 40)
            return drop(t, V_DROP_TRUNCATED);
        csum_at = l4 + 16;
    } else if (proto == PROTO_UDP) {
        if (tot < 28)
            return drop(t, V_DROP_TRUNCATED);
        csum_at = l4 + 6;
    } else if (proto == PROTO_ICMP) {
        return process_icmp(t, vnet, ip, tot, partial);
    } else {
        return drop(t, V_DROP_UNKNOWN_PROTO);
    }
    if (partial) {
        uint32_t cstart = (uint32_t)vnet[6] | (uint32_t)vnet[7] << 8;
        uint32_t coff = (uint32_t)vnet[8] | (uint32_t)vnet[9] << 8;
        if (cstart != 20 || cstart + coff != (uint32_t)(csum_at - ip))
            return drop(t, V_DROP_BAD_HEADER);
    }
    uint32_t saddr = rd32(ip + 12), daddr = rd32(ip + 16), sport = rd16(l4), dport = rd16(l4 + 2);
    uint32_t tflags = proto == PROTO_TCP ? l4[13] : 0;
    int syn = tflags & 2, rst = tflags & 4;
    int inbound = 1;
    uint32_t old_addr, new_addr, old_port, new_port;
    uint8_t *addr_at, *port_at;
    int32_t h = lookup_in(t, proto, saddr, sport, daddr, dport, 0);
    if (h < 0 && proto == PROTO_TCP && t->no_cport > 0)
        h = fill_cport(t, saddr, sport, daddr, dport);
    struct conn *c;
    if (h >= 0) {
        c = &t->c[h];
        if (syn && !rst && proto == PROTO_TCP && c->ctl < 0 && c->n_control == 0 &&
            (c->state == S_TIME_WAIT || c->state == S_CLOSE)) {
            tbl_release(t, h); /* conn_reuse_mode=1 */
            return V_NEW;
        }
        /* ip_vs_in: a client packet for a dest no longer AVAILABLE is dropped untouched;
         * its timer is not re-armed (expire_nodest_conn=0). Replies are not checked. */
        if (!dest_available(t, c))
            return drop(t, V_DROP_DEST_UNAVAILABLE);
        if (c->flags & CONN_F_FWD_MASK) {
            count_pkt(t, c, tot, 1);
            if (proto == PROTO_TCP) {
                int cls = rst ? 3 : syn ? 0 : (tflags & 1) ? 1 : (tflags & 16) ? 2 : -1;
                int next = cls < 0                            ? S_CLOSE
                           : (c->flags & CONN_F_NOOUTPUT) ? tcp_input_only[cls][c->state]
                                                          : tcp_input[cls][c->state];
                tbl_set_state(t, h, next, now);
            } else {
                tbl_arm(t, h, now, t->udp_to);
            }
            if ((t->c[h].flags & CONN_F_FWD_MASK) == CONN_F_TUNNEL)
                return V_TUNNEL;
            return route_xmit(t, &t->c[h], vnet, ip, n);
        }
        old_addr = c->vaddr;
        new_addr = c->daddr;
        old_port = dport;
        new_port = c->dport;
        addr_at = ip + 16;
        port_at = l4 + 2;
    } else {
        h = lookup_out(t, proto, saddr, sport, daddr, dport);
        if (h < 0) {
            /* A real's reply from the VIP to the client of a DR connection, routed through the
             * director: not ours to translate; written back, the kernel forwards it. */
            int32_t b = lookup_in(t, proto, daddr, dport, saddr, sport, 0);
            if (b >= 0 && (t->c[b].flags & CONN_F_FWD_MASK))
                return V_FORWARD;
            if (proto == PROTO_UDP || (syn && !rst))
                return V_NEW;
            return drop(t, V_DROP_NO_CONN);
        }
        c = &t->c[h];
        if (c->flags & CONN_F_FWD_MASK)
            return drop(t, V_DROP_NO_CONN); /* ip_vs_out: not ours to translate */
        inbound = 0;
        old_addr = c->daddr;
        new_addr = c->vaddr;
        old_port = sport;
        new_port = c->vport;
        addr_at = ip + 12;
        port_at = l4;
    }
    wr32(addr_at, new_addr);
    wr16(port_at, new_port);
    uint64_t adiff = diff32(old_addr, new_addr);
    csum_apply(ip + 10, adiff, 0, 0);
    csum_apply(csum_at, partial ? adiff : adiff + diff16(old_port, new_port), partial,
               proto == PROTO_UDP);
    count_pkt(t, c, tot, inbound);
    if (proto == PROTO_TCP) {
        int verdict = V_FORWARD;
        if ((c->flags & CONN_F_APP) && (int64_t)tot - 20 - (l4[12] >> 4) * 4 > 0) {
            verdict = V_APP;
        } else if (c->flags & (CONN_F_IN_SEQ | CONN_F_OUT_SEQ)) {
            uint32_t seq = rd32(l4 + 4), ack = rd32(l4 + 8), nseq = seq, nack = ack;
            seq_fix(c, inbound, &nseq, &nack);
            wr32(l4 + 4, nseq);
            wr32(l4 + 8, nack);
            if (!partial)
                csum_apply(csum_at, diff32(seq, nseq) + diff32(ack, nack), 0, 0);
        }
        int cls = rst ? 3 : syn ? 0 : (tflags & 1) ? 1 : (tflags & 16) ? 2 : -1;
        int next = cls < 0 ? S_CLOSE : (inbound ? tcp_input : tcp_output)[cls][c->state];
        tbl_set_state(t, h, next, now);
        return verdict;
    }
    tbl_arm(t, h, now, t->udp_to);
    return V_FORWARD;
}

static int process_vnet_packet(struct table *t, uint8_t *buf, size_t n, int64_t now) {
    if (n < VNET_HDR_LEN)
        return drop(t, V_DROP_TRUNCATED);
    return process_packet(t, buf, buf + VNET_HDR_LEN, n - VNET_HDR_LEN, now);
}

#endif
