/* What the packet path does for connections of the application helper (ip_vs_app.c): the
 * sequence-number fix-up of connections whose payload a helper resized, and the port
 * fill-in of expected connections. The helper itself (parsing, rewriting, creating the
 * expected entries) is shared Python, director/dataplane/ftp.py: the fast path only hands it
 * the payload-carrying packets of CONN_F_APP connections, with verdict APP.
 *
 * Per direction a connection keeps {init_seq, delta, previous_delta}. A packet's seq moves
 * by delta when it is after init_seq, else by previous_delta (a retransmission of data from
 * before the last resize); its ack moves back by the other direction's delta when
 * ack - previous_delta is after init_seq, else by previous_delta. That is conntrack seqadj's
 * test: ip_vs_app compares ack with init_seq + delta, which for a rewrite that shortened
 * the payload maps an ACK of exactly the data before it past the rewritten segment.
 * seq_update records a resize.
 */
#ifndef LVSD_FASTPATH_APP_H
#define LVSD_FASTPATH_APP_H

#include "table.h"

/* Serial-number arithmetic (RFC 1982), the kernel's after(). */
static inline int seq_after(uint32_t a, uint32_t b) { return (int32_t)(b - a) < 0; }

static inline void seq_fix(const struct conn *c, int inbound, uint32_t *seq, uint32_t *ack) {
    uint32_t s_flag = inbound ? CONN_F_IN_SEQ : CONN_F_OUT_SEQ;
    uint32_t a_flag = inbound ? CONN_F_OUT_SEQ : CONN_F_IN_SEQ;
    uint32_t s_init = inbound ? c->in_init : c->out_init;
    int32_t s_delta = inbound ? c->in_delta : c->out_delta;
    int32_t s_prev = inbound ? c->in_prev : c->out_prev;
    uint32_t a_init = inbound ? c->out_init : c->in_init;
    int32_t a_delta = inbound ? c->out_delta : c->in_delta;
    int32_t a_prev = inbound ? c->out_prev : c->in_prev;
    if (c->flags & s_flag)
        *seq += (uint32_t)(seq_after(*seq, s_init) ? s_delta : s_prev);
    if (c->flags & a_flag)
        *ack -= (uint32_t)(seq_after(*ack - (uint32_t)a_prev, a_init) ? a_delta : a_prev);
}

/* Records a resize; 0 when it changed nothing (a retransmission). */
static inline int seq_update(struct conn *c, int inbound, uint32_t seq, int32_t diff) {
    uint32_t flag = inbound ? CONN_F_IN_SEQ : CONN_F_OUT_SEQ;
    uint32_t *init = inbound ? &c->in_init : &c->out_init;
    int32_t *delta = inbound ? &c->in_delta : &c->out_delta;
    int32_t *prev = inbound ? &c->in_prev : &c->out_prev;
    if (!(c->flags & flag) || seq_after(seq, *init)) {
        *prev = *delta;
        *delta = (int32_t)((uint32_t)*delta + (uint32_t)diff);
        *init = seq;
        c->flags |= (uint16_t)flag;
        return 1;
    }
    return 0;
}

/* ip_vs_conn_fill_cport: the client packet caddr:cport -> vaddr:vport matched no connection;
 * an expected one <caddr, 0, vaddr, vport> takes its port and is rehashed. The handle, or -1. */
static int32_t fill_cport(struct table *t, uint32_t caddr, uint32_t cport, uint32_t vaddr,
                          uint32_t vport) {
    int32_t h = lookup_in(t, PROTO_TCP, caddr, 0, vaddr, vport, 0);
    if (h < 0 || !(t->c[h].flags & CONN_F_NO_CPORT))
        return -1;
    struct conn *c = &t->c[h];
    tbl_log(t, c, 1);
    tbl_unhash(t, h);
    c->cport = (uint16_t)cport;
    c->flags &= (uint16_t)~CONN_F_NO_CPORT;
    t->no_cport--;
    tbl_hash_conn(t, h);
    tbl_log(t, c, 0);
    return lookup_in(t, PROTO_TCP, caddr, cport, vaddr, vport, 0);
}

#endif
