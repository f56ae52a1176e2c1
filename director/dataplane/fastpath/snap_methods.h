/* The connection table as snapshot records (director/daemon/snapshot.py reads them).
 *
 * dump_from(start, limit, now) walks the entry array from handle `start` and copies up to
 * `limit` live entries (connections and templates) into one bytes object of fixed
 * 80-byte little-endian records, so a snapshot of a million entries costs one call per
 * slice and no Python object per entry. A record holds what a new table needs to rebuild
 * the entry: its key and dest, state, flags, timeout and time left, the creation order
 * (seq: a controlling entry was created before the entries it controls) and the FTP
 * helper's sequence offsets.
 */
#ifndef LVSD_FASTPATH_SNAP_METHODS_H
#define LVSD_FASTPATH_SNAP_METHODS_H

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "snapshot records are written in host order, which must be little-endian"
#endif

struct snap_rec {
    int64_t remaining_ms; /* expires - now */
    uint64_t seq;
    int32_t handle, ctl, dest;
    uint32_t caddr, vaddr, daddr;
    uint32_t timeout_ms;
    uint32_t in_init;
    int32_t in_delta, in_prev;
    uint32_t out_init;
    int32_t out_delta, out_prev;
    uint16_t cport, vport, dport, flags;
    uint8_t proto, state;
    uint8_t pad_[2];
};

_Static_assert(sizeof(struct snap_rec) == 80, "snapshot record layout");

static PyObject *ConnTable_dump_from(ConnTableObject *self, PyObject *args) {
    long long start, limit, now;
    if (!PyArg_ParseTuple(args, "LLL:dump_from", &start, &limit, &now))
        return NULL;
    if (check_range("start", start, 0, 1LL << 62) < 0 ||
        check_range("limit", limit, 0, 1LL << 62) < 0)
        return NULL;
    long long end = self->t.next_unused, n = 0;
    for (long long h = start; h < end && n < limit; h++)
        n += self->t.c[h].live ? 1 : 0;
    PyObject *out =
        PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * (long long)sizeof(struct snap_rec)));
    if (!out)
        return NULL;
    char *p = PyBytes_AS_STRING(out);
    long long h = start, k = 0;
    for (; h < end && k < n; h++) {
        const struct conn *c = &self->t.c[h];
        if (!c->live)
            continue;
        struct snap_rec r;
        memset(&r, 0, sizeof r);
        r.remaining_ms = c->expires - now;
        r.seq = c->seq;
        r.handle = (int32_t)h;
        r.ctl = c->ctl;
        r.dest = c->dest;
        r.caddr = c->caddr;
        r.vaddr = c->vaddr;
        r.daddr = c->daddr;
        r.timeout_ms = c->timeout_ms;
        r.in_init = c->in_init;
        r.in_delta = c->in_delta;
        r.in_prev = c->in_prev;
        r.out_init = c->out_init;
        r.out_delta = c->out_delta;
        r.out_prev = c->out_prev;
        r.cport = c->cport;
        r.vport = c->vport;
        r.dport = c->dport;
        r.flags = c->flags;
        r.proto = c->proto;
        r.state = c->state;
        memcpy(p + k * (long long)sizeof r, &r, sizeof r);
        k++;
    }
    return Py_BuildValue("(NL)", out, h < end ? h : -1LL);
}

#define SNAP_METHODS {"dump_from", (PyCFunction)ConnTable_dump_from, METH_VARARGS, DOC_dump_from}

#endif
