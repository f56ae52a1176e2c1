/* The IPVS connection table of lvsd's C fast path.
 *
 * Entries. One flat array of `struct conn` (112 bytes) sized to max_conns, indexed by int32
 * handles; free slots form an intrusive LIFO list through `in_next`, so handles are reused
 * last-freed-first exactly as in the Python twin. Templates live in the same array.
 *
 * Keys. Client side <proto, caddr, cport, vaddr, vport>; server side <proto, daddr, dport,
 * caddr, cport>. Templates use <proto, snet, 0, vaddr, vport> in the client-side hash with
 * the template flag as part of the key, so packets never match them. Each entry is on two
 * intrusive singly linked chains (in_next, out_next) hanging off two int32 bucket arrays
 * of a power of two >= max_conns. New entries go to the head of their chain, so among equal
 * keys the newest wins and an older one reappears when the newer goes (hlist_add_head).
 * A bucket holds its first handle + 1, so 0 is an empty bucket and the arrays come from
 * calloc: the kernel maps their pages only as buckets are used, and an idle director with
 * room for a million connections does not hold 8 MiB of empty buckets. Links (in_next,
 * out_next) hold plain handles, -1 ending a chain.
 *
 * Hash. A keyed multiply-xorshift over the key packed into two 64-bit words, with three
 * 64-bit secrets drawn from getrandom() at creation, so clients cannot aim collisions at a
 * bucket. Collisions are resolved by walking the chain; expected length <= 1.
 *
 * Expiry. Each entry stores its deadline (`expires`, ms). A hashed timer wheel of 65,536
 * one-millisecond slots files each entry once, at `slot_tick`; packets only rewrite
 * `expires` (lazy re-arm) unless the deadline moves earlier than the filing, which re-files
 * at once. expire(now) walks the slots of the ticks since the previous call (all slots at
 * most once); an entry found there that is due is collected, one filed early is re-filed at
 * its deadline, one filed for a later turn of the wheel is left. Collected entries fire in
 * (deadline, creation sequence) order. Deadlines at or before the last expire() are filed
 * on the next tick, so they are always found.
 *
 * Sync log. Off until enable_sync_log(capacity): then every insert, TCP state change (which
 * is also the only place the INACTIVE flag moves), invalidation and release appends one
 * `struct sync_rec` (the entry's key, dest address and slot, state and flags, captured at
 * the event, so a freed handle's reuse cannot change what was logged) to a fixed ring. A
 * full ring drops the new record and counts it lost; the reader then knows to resend
 * everything.
 * Hooked in tbl_set_state and tbl_release, which the packet path and expiry share.
 *
 * Half-open entries. Every TCP entry in SYN_RECV is also on a doubly linked FIFO list
 * (ho_prev, ho_next), in the order it entered that state. When the table is full, an
 * insert evicts the oldest of them that controls nothing (ip_vs_conn.c's drop_entry drops
 * half-open entries first under pressure; here the trigger is the table limit): a flood of
 * spoofed SYNs then recycles its own entries, and a client that completes its handshake
 * within (max_conns / SYN rate) seconds keeps its entry. Evictions are counted.
 *
 * Memory: 112 bytes per entry + 8 to 16 bytes of buckets + 256 KiB of wheel + 28 bytes per
 * sync log slot when enabled.
 * Cost: insert (eviction included), lookup, remove O(1) expected; a packet O(1); expire O(ticks elapsed, capped
 * at 65,536) + O(k log k) for k entries due or re-filed. Never a scan of the whole table.
 */
#ifndef LVSD_FASTPATH_TABLE_H
#define LVSD_FASTPATH_TABLE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef DIRECTOR_DEBUG
#include <assert.h>
#define FP_ASSERT(x) assert(x)
#else
#define FP_ASSERT(x) ((void)0)
#endif

enum verdict {
    V_FORWARD,
    V_NEW,
    V_LOCAL,
    V_FRAGMENT,
    V_DROP_TRUNCATED,
    V_DROP_BAD_HEADER,
    V_DROP_IP_OPTIONS,
    V_DROP_UNKNOWN_PROTO,
    V_DROP_NO_CONN,
    V_DROP_TABLE_FULL,
    V_DROP_BAD_ICMP,
    V_DROP_TX,
    V_DROP_DEST_UNAVAILABLE,
    V_APP,           /* a payload packet of a CONN_F_APP connection: the helper finishes it */
    V_ROUTE,         /* sent unchanged to a direct-routing dest's link: done */
    V_DROP_NO_NEIGH, /* a routed packet whose dest has no link address yet */
    V_TUNNEL,        /* a tunnelled connection's packet, unchanged: the caller encapsulates */
    V_COUNT
};

enum state {
    S_NONE,
    S_ESTABLISHED,
    S_SYN_SENT,
    S_SYN_RECV,
    S_FIN_WAIT,
    S_TIME_WAIT,
    S_CLOSE,
    S_CLOSE_WAIT,
    S_LAST_ACK,
    S_LISTEN,
    S_SYNACK,
    S_UDP,
    S_COUNT
};

#define CONN_F_HASHED 0x0040
#define CONN_F_INACTIVE 0x0100
#define CONN_F_OUT_SEQ 0x0200
#define CONN_F_IN_SEQ 0x0400
#define CONN_F_NO_CPORT 0x0800 /* an expected FTP data connection: cport filled in later */
#define CONN_F_TEMPLATE 0x1000
#define CONN_F_APP 0x4000 /* payload packets go to the application helper (verdict APP) */
/* Forwarding methods (ip_vs_conn.h): taken from the dest when a connection is inserted. */
#define CONN_F_FWD_MASK 0x0007
#define CONN_F_MASQ 0x0000
#define CONN_F_TUNNEL 0x0002
#define CONN_F_DROUTE 0x0003
#define CONN_F_NOOUTPUT 0x0080 /* replies bypass the director: TCP input-only table */
#define SYNC_FLAGS                                                                           \
    (CONN_F_INACTIVE | CONN_F_TEMPLATE | CONN_F_IN_SEQ | CONN_F_OUT_SEQ | CONN_F_FWD_MASK | \
     CONN_F_NOOUTPUT)

enum dest_field {
    DEST_ACTIVE,
    DEST_INACTIVE,
    DEST_PERSIST,
    DEST_OVERLOAD,
    DEST_U_THRESHOLD,
    DEST_L_THRESHOLD,
    DEST_CONNS,
    DEST_INPKTS,
    DEST_OUTPKTS,
    DEST_INBYTES,
    DEST_OUTBYTES,
    DEST_SVC,
    DEST_ADDR,
    DEST_PORT,
    DEST_AVAILABLE, /* IP_VS_DEST_F_AVAILABLE: set by set_dest, cleared on delete */
    DEST_FWD,       /* forwarding method: CONN_F_MASQ, CONN_F_DROUTE, CONN_F_TUNNEL */
    DEST_LINK_FD,   /* packet socket for routed packets, + 1 (0: none) */
    DEST_MAC,       /* the real's (or next hop's) link address, 48 bits (0: unknown) */
    DEST_SRC_MAC,   /* the sending interface's link address */
    DEST_FIELDS
};

enum svc_field { SVC_CONNS, SVC_INPKTS, SVC_OUTPKTS, SVC_INBYTES, SVC_OUTBYTES, SVC_FIELDS };

#define PROTO_ICMP 1
#define PROTO_TCP 6
#define PROTO_UDP 17
#define TEMPLATE_EXPIRED_MS 60000
#define WHEEL_BITS 16
#define WHEEL_SIZE (1 << WHEEL_BITS)
#define WHEEL_MASK (WHEEL_SIZE - 1)

struct conn {
    uint32_t caddr, vaddr, daddr;
    uint16_t cport, vport, dport;
    uint8_t proto, state;
    uint16_t flags;
    uint8_t live;
    uint8_t pad_;
    int32_t dest, ctl, n_control;
    int32_t in_next, out_next;
    int32_t t_next, t_prev;
    int32_t ho_prev, ho_next; /* the half-open list, while in SYN_RECV */
    uint32_t timeout_ms;
    int64_t expires;
    int64_t slot_tick;
    uint64_t seq;
    /* ip_vs_seq of each direction (ip_vs_app.c): in = client to server, out = server to
     * client; meaningful while CONN_F_IN_SEQ / CONN_F_OUT_SEQ is set. */
    uint32_t in_init, out_init;
    int32_t in_delta, in_prev, out_delta, out_prev;
};

/* One change for connection sync; flags hold SYNC_FLAGS only. */
struct sync_rec {
    uint32_t caddr, vaddr, daddr;
    int32_t dest; /* the dest slot: through it the reader finds the service (its fwmark) */
    uint16_t cport, vport, dport;
    uint8_t proto, state;
    uint8_t flags_hi, removed; /* flags >> 8: INACTIVE, TEMPLATE, IN_SEQ, OUT_SEQ */
    uint8_t flags_lo;          /* flags & 0xff: the forwarding method and NOOUTPUT */
};

struct due {
    int64_t expires;
    uint64_t seq;
    int32_t h;
};

struct table {
    struct conn *c;
    int32_t *in_b, *out_b;
    int32_t *wheel;
    struct due *due;
    size_t due_cap;
    uint32_t nb_mask;
    int32_t max, count, next_unused, free_head;
    int64_t last_run;
    uint64_t seq;
    uint64_t k0, k1, k2;
    int64_t *dests, *svcs;
    int32_t max_dests, max_svcs;
    uint64_t drops[V_COUNT];
    int32_t ho_head, ho_tail; /* the oldest and newest half-open entries, or -1 */
    uint64_t evicted;
    uint32_t tcp_to[S_SYNACK + 1];
    uint32_t udp_to;
    struct sync_rec *log;
    uint32_t log_cap, log_head, log_len;
    uint64_t log_lost;
    int32_t no_cport; /* live CONN_F_NO_CPORT entries: a client miss retries with cport 0 */
};

static const uint32_t default_tcp_timeouts[S_SYNACK + 1] = {2,   900, 120, 60, 120, 120,
                                                            10,  60,  30,  120, 120};

static inline uint32_t tbl_hash(const struct table *t, uint32_t a1, uint32_t a2, uint32_t p1,
                                uint32_t p2, uint32_t tag) {
    uint64_t x = (((uint64_t)a1 << 32) | a2) ^ t->k0;
    x *= 0x9E3779B97F4A7C15ULL;
    x ^= x >> 32;
    x ^= (((uint64_t)tag << 32) | (p1 << 16) | p2) ^ t->k1;
    x *= 0xD6E8FEB86659FD93ULL;
    x ^= x >> 29;
    x *= t->k2;
    return (uint32_t)(x >> 32);
}

/* The template flag is part of a client-side key: packets (tag = proto) never find one. */
static inline uint32_t in_tag(uint32_t proto, int tmpl) { return proto | (tmpl ? 0x100u : 0u); }

static inline uint32_t in_bucket(const struct table *t, const struct conn *c) {
    return tbl_hash(t, c->caddr, c->vaddr, c->cport, c->vport,
                    in_tag(c->proto, c->flags & CONN_F_TEMPLATE)) &
           t->nb_mask;
}

static inline uint32_t out_bucket(const struct table *t, const struct conn *c) {
    return tbl_hash(t, c->daddr, c->caddr, c->dport, c->cport, c->proto) & t->nb_mask;
}

static int32_t lookup_in(const struct table *t, uint32_t proto, uint32_t caddr, uint32_t cport,
                         uint32_t vaddr, uint32_t vport, int tmpl) {
    uint32_t tag = in_tag(proto, tmpl);
    int32_t i = t->in_b[tbl_hash(t, caddr, vaddr, cport, vport, tag) & t->nb_mask] - 1;
    while (i >= 0) {
        const struct conn *c = &t->c[i];
        if (c->caddr == caddr && c->vaddr == vaddr && c->cport == cport && c->vport == vport &&
            in_tag(c->proto, c->flags & CONN_F_TEMPLATE) == tag)
            return i;
        i = c->in_next;
    }
    return -1;
}

static int32_t lookup_out(const struct table *t, uint32_t proto, uint32_t daddr, uint32_t dport,
                          uint32_t caddr, uint32_t cport) {
    int32_t i = t->out_b[tbl_hash(t, daddr, caddr, dport, cport, proto) & t->nb_mask] - 1;
    while (i >= 0) {
        const struct conn *c = &t->c[i];
        if (c->daddr == daddr && c->caddr == caddr && c->dport == dport && c->cport == cport &&
            c->proto == proto && !(c->flags & CONN_F_TEMPLATE))
            return i;
        i = c->out_next;
    }
    return -1;
}

static void chain_unlink(struct table *t, int32_t *head, int32_t h, int out) {
    FP_ASSERT(*head > 0);
    if (*head <= 0)
        return;
    if (*head - 1 == h) {
        *head = (out ? t->c[h].out_next : t->c[h].in_next) + 1;
        return;
    }
    int32_t *p = out ? &t->c[*head - 1].out_next : &t->c[*head - 1].in_next;
    while (*p >= 0 && *p != h)
        p = out ? &t->c[*p].out_next : &t->c[*p].in_next;
    FP_ASSERT(*p == h);
    if (*p == h)
        *p = out ? t->c[h].out_next : t->c[h].in_next;
}

static void tbl_hash_conn(struct table *t, int32_t h) {
    struct conn *c = &t->c[h];
    uint32_t b = in_bucket(t, c);
    c->in_next = t->in_b[b] - 1;
    t->in_b[b] = h + 1;
    if (!(c->flags & CONN_F_TEMPLATE)) {
        b = out_bucket(t, c);
        c->out_next = t->out_b[b] - 1;
        t->out_b[b] = h + 1;
    }
    c->flags |= CONN_F_HASHED;
}

static void tbl_unhash(struct table *t, int32_t h) {
    struct conn *c = &t->c[h];
    if (!(c->flags & CONN_F_HASHED))
        return;
    chain_unlink(t, &t->in_b[in_bucket(t, c)], h, 0);
    if (!(c->flags & CONN_F_TEMPLATE))
        chain_unlink(t, &t->out_b[out_bucket(t, c)], h, 1);
    c->flags &= (uint16_t)~CONN_F_HASHED;
}

/* -- timer wheel ------------------------------------------------------------------------ */

static void wheel_link(struct table *t, int32_t h, int64_t tick) {
    struct conn *c = &t->c[h];
    int32_t s = (int32_t)(tick & WHEEL_MASK);
    c->slot_tick = tick;
    c->t_prev = -1;
    c->t_next = t->wheel[s];
    if (c->t_next >= 0)
        t->c[c->t_next].t_prev = h;
    t->wheel[s] = h;
}

static void wheel_unlink(struct table *t, int32_t h) {
    struct conn *c = &t->c[h];
    if (c->t_prev >= 0)
        t->c[c->t_prev].t_next = c->t_next;
    else
        t->wheel[c->slot_tick & WHEEL_MASK] = c->t_next;
    if (c->t_next >= 0)
        t->c[c->t_next].t_prev = c->t_prev;
}

static void wheel_file(struct table *t, int32_t h) {
    int64_t e = t->c[h].expires;
    wheel_link(t, h, e > t->last_run ? e : t->last_run + 1);
}

static void tbl_arm(struct table *t, int32_t h, int64_t now, uint32_t timeout_ms) {
    struct conn *c = &t->c[h];
    c->timeout_ms = timeout_ms;
    c->expires = now + timeout_ms;
    if (c->expires < c->slot_tick) {
        wheel_unlink(t, h);
        wheel_file(t, h);
    }
}

/* -- dest binding (ip_vs_bind_dest / ip_vs_unbind_dest) ------------------------------------ */

static void tbl_bind(struct table *t, const struct conn *c) {
    int64_t *d = &t->dests[(size_t)c->dest * DEST_FIELDS];
    if (c->flags & CONN_F_TEMPLATE) {
        d[DEST_PERSIST]++;
    } else {
        d[DEST_INACTIVE]++;
        d[DEST_CONNS]++;
        t->svcs[(size_t)d[DEST_SVC] * SVC_FIELDS + SVC_CONNS]++;
    }
    if (d[DEST_U_THRESHOLD] && d[DEST_ACTIVE] + d[DEST_INACTIVE] >= d[DEST_U_THRESHOLD])
        d[DEST_OVERLOAD] = 1;
}

static void tbl_unbind(struct table *t, const struct conn *c) {
    int64_t *d = &t->dests[(size_t)c->dest * DEST_FIELDS];
    if (c->flags & CONN_F_TEMPLATE)
        d[DEST_PERSIST]--;
    else if (c->flags & CONN_F_INACTIVE)
        d[DEST_INACTIVE]--;
    else
        d[DEST_ACTIVE]--;
    int64_t total = d[DEST_ACTIVE] + d[DEST_INACTIVE];
    if (d[DEST_L_THRESHOLD]) {
        if (total < d[DEST_L_THRESHOLD])
            d[DEST_OVERLOAD] = 0;
    } else if (d[DEST_U_THRESHOLD]) {
        if (total * 4 < d[DEST_U_THRESHOLD] * 3)
            d[DEST_OVERLOAD] = 0;
    } else {
        d[DEST_OVERLOAD] = 0;
    }
}

/* -- sync log ----------------------------------------------------------------------------- */

static void tbl_log(struct table *t, const struct conn *c, int removed) {
    if (!t->log_cap)
        return;
    if (t->log_len == t->log_cap) {
        t->log_lost++;
        return;
    }
    struct sync_rec *r = &t->log[(t->log_head + t->log_len) % t->log_cap];
    t->log_len++;
    r->proto = c->proto;
    r->caddr = c->caddr;
    r->cport = c->cport;
    r->vaddr = c->vaddr;
    r->vport = c->vport;
    r->daddr = c->daddr;
    r->dport = c->dport;
    r->dest = c->dest;
    r->state = c->state;
    r->flags_hi = (uint8_t)((c->flags & SYNC_FLAGS) >> 8);
    r->flags_lo = (uint8_t)(c->flags & SYNC_FLAGS & 0xff);
    r->removed = (uint8_t)(removed != 0);
}

static inline int state_active(int s) {
    return s == S_ESTABLISHED || s == S_SYN_SENT || s == S_SYN_RECV || s == S_SYNACK;
}

/* -- half-open list ------------------------------------------------------------------------ */

static void ho_append(struct table *t, int32_t h) {
    struct conn *c = &t->c[h];
    c->ho_next = -1;
    c->ho_prev = t->ho_tail;
    if (t->ho_tail >= 0)
        t->c[t->ho_tail].ho_next = h;
    else
        t->ho_head = h;
    t->ho_tail = h;
}

static void ho_unlink(struct table *t, int32_t h) {
    struct conn *c = &t->c[h];
    if (c->ho_prev >= 0)
        t->c[c->ho_prev].ho_next = c->ho_next;
    else
        t->ho_head = c->ho_next;
    if (c->ho_next >= 0)
        t->c[c->ho_next].ho_prev = c->ho_prev;
    else
        t->ho_tail = c->ho_prev;
}

static inline int half_open(const struct conn *c) {
    return c->proto == PROTO_TCP && c->state == S_SYN_RECV && !(c->flags & CONN_F_TEMPLATE);
}

static void tbl_set_state(struct table *t, int32_t h, int new_state, int64_t now) {
    struct conn *c = &t->c[h];
    if (new_state != c->state) {
        if (half_open(c))
            ho_unlink(t, h);
        int was_active = !(c->flags & CONN_F_INACTIVE);
        int active = state_active(new_state);
        if (active != was_active) {
            int64_t *d = &t->dests[(size_t)c->dest * DEST_FIELDS];
            if (active) {
                d[DEST_INACTIVE]--;
                d[DEST_ACTIVE]++;
                c->flags &= (uint16_t)~CONN_F_INACTIVE;
            } else {
                d[DEST_ACTIVE]--;
                d[DEST_INACTIVE]++;
                c->flags |= CONN_F_INACTIVE;
            }
        }
        c->state = (uint8_t)new_state;
        if (half_open(c))
            ho_append(t, h);
        tbl_log(t, c, 0);
    }
    tbl_arm(t, h, now, t->tcp_to[new_state]);
}

/* -- entries ------------------------------------------------------------------------------ */

static inline int tbl_live(const struct table *t, int64_t h) {
    return h >= 0 && h < t->next_unused && t->c[h].live;
}

static void tbl_release(struct table *t, int32_t h);

/* A zeroed entry, or -1 (counted) when the table is full and no half-open entry other than
 * `keep` that controls nothing can be evicted. */
static int32_t tbl_alloc(struct table *t, int32_t keep) {
    int32_t h;
    if (t->count >= t->max) {
        int32_t v = t->ho_head;
        while (v >= 0 && (t->c[v].n_control > 0 || v == keep))
            v = t->c[v].ho_next;
        if (v < 0) {
            t->drops[V_DROP_TABLE_FULL]++;
            return -1;
        }
        tbl_release(t, v);
        t->evicted++;
    }
    if (t->free_head >= 0) {
        h = t->free_head;
        t->free_head = t->c[h].in_next;
    } else {
        h = t->next_unused++;
    }
    t->count++;
    memset(&t->c[h], 0, sizeof(struct conn));
    t->c[h].live = 1;
    t->c[h].ctl = -1;
    t->c[h].seq = t->seq++;
    return h;
}

/* Unhash, detach from its controller, unbind from its dest, free. */
static void tbl_release(struct table *t, int32_t h) {
    struct conn *c = &t->c[h];
    FP_ASSERT(c->live && c->n_control == 0);
    if (half_open(c))
        ho_unlink(t, h);
    tbl_log(t, c, 1);
    tbl_unhash(t, h);
    if (c->slot_tick != INT64_MAX)
        wheel_unlink(t, h);
    if (c->ctl >= 0)
        t->c[c->ctl].n_control--;
    tbl_unbind(t, c);
    if (c->flags & CONN_F_NO_CPORT)
        t->no_cport--;
    c->live = 0;
    c->in_next = t->free_head;
    t->free_head = h;
    t->count--;
}

static int cmp_due(const void *a, const void *b) {
    const struct due *x = a, *y = b;
    if (x->expires != y->expires)
        return x->expires < y->expires ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int due_push(struct table *t, size_t *n, int32_t h) {
    if (*n == t->due_cap) {
        size_t cap = t->due_cap ? t->due_cap * 2 : 256;
        struct due *p = realloc(t->due, cap * sizeof(struct due));
        if (!p)
            return -1;
        t->due = p;
        t->due_cap = cap;
    }
    t->due[(*n)++] = (struct due){t->c[h].expires, t->c[h].seq, h};
    return 0;
}

/* Walks one slot: collects due entries (unfiled: slot_tick INT64_MAX), re-files those filed
 * before their deadline. */
static int walk_slot(struct table *t, int32_t s, int64_t now, size_t *n) {
    int32_t i = t->wheel[s];
    while (i >= 0) {
        struct conn *c = &t->c[i];
        int32_t next = c->t_next;
        if (c->expires <= now) {
            wheel_unlink(t, i);
            c->slot_tick = INT64_MAX;
            if (due_push(t, n, i) < 0)
                return -1;
        } else if (c->slot_tick <= now) {
            wheel_unlink(t, i);
            wheel_link(t, i, c->expires);
        }
        i = next;
    }
    return 0;
}

/* Fires every entry due at `now`; returns how many were removed, or -1 on ENOMEM. */
static int64_t tbl_expire(struct table *t, int64_t now) {
    size_t n = 0;
    int64_t removed = 0;
    if (now <= t->last_run) {
        /* Time went back: only deadlines filed on the next tick can be due. */
        if (walk_slot(t, (int32_t)((t->last_run + 1) & WHEEL_MASK), now, &n) < 0)
            return -1;
    } else {
        int64_t start = t->last_run + 1;
        if (now - start >= WHEEL_SIZE)
            start = now - WHEEL_SIZE + 1;
        for (int64_t tick = start; tick <= now; tick++)
            if (t->wheel[tick & WHEEL_MASK] >= 0 &&
                walk_slot(t, (int32_t)(tick & WHEEL_MASK), now, &n) < 0)
                return -1;
        t->last_run = now;
    }
    if (n > 1)
        qsort(t->due, n, sizeof(struct due), cmp_due);
    for (size_t k = 0; k < n; k++) {
        int32_t h = t->due[k].h;
        struct conn *c = &t->c[h];
        if (c->n_control > 0) {
            c->timeout_ms = TEMPLATE_EXPIRED_MS;
            c->expires = now + TEMPLATE_EXPIRED_MS;
            wheel_file(t, h);
        } else {
            tbl_release(t, h);
            removed++;
        }
    }
    return removed;
}

static void tbl_flush(struct table *t) {
    for (int32_t h = 0; h < t->next_unused; h++)
        if (t->c[h].live) {
            tbl_log(t, &t->c[h], 1);
            tbl_unbind(t, &t->c[h]);
            t->c[h].live = 0;
        }
    if (t->next_unused > 0) { /* else no bucket was ever written: still calloc's zeros */
        memset(t->in_b, 0, sizeof(int32_t) * ((size_t)t->nb_mask + 1));
        memset(t->out_b, 0, sizeof(int32_t) * ((size_t)t->nb_mask + 1));
    }
    memset(t->wheel, 0xff, sizeof(int32_t) * WHEEL_SIZE);
    t->count = 0;
    t->next_unused = 0;
    t->free_head = -1;
    t->no_cport = 0;
    t->ho_head = t->ho_tail = -1;
}

#ifdef DIRECTOR_DEBUG
/* Invariants: chains only hold live hashed entries; counts agree. O(n): debug builds only. */
static void tbl_check(const struct table *t) {
    int32_t live = 0;
    for (int32_t h = 0; h < t->next_unused; h++)
        live += t->c[h].live;
    assert(live == t->count);
    for (uint32_t b = 0; b <= t->nb_mask; b++)
        for (int32_t i = t->in_b[b] - 1; i >= 0; i = t->c[i].in_next)
            assert(t->c[i].live && (t->c[i].flags & CONN_F_HASHED) && in_bucket(t, &t->c[i]) == b);
    for (int32_t s = 0; s < WHEEL_SIZE; s++)
        for (int32_t i = t->wheel[s]; i >= 0; i = t->c[i].t_next)
            assert(t->c[i].live && (t->c[i].slot_tick & WHEEL_MASK) == s);
}
#define TBL_CHECK(t) tbl_check(t)
#else
#define TBL_CHECK(t) ((void)0)
#endif

#endif
