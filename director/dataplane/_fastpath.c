/* lvsd's C fast path: the Python binding of the connection table (fastpath/table.h) and the
 * VS-NAT rewrite (fastpath/packet.h). Same names, docstrings, verdicts and table state as
 * director/dataplane/_fastpath_py.py, which is the spec. Bad arguments raise; bad packets are verdicts.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <sys/random.h>
#include <unistd.h>

#include "fastpath/docs.h"
#include "fastpath/packet.h"

#define READ_SIZE 65550

static const char *const verdict_names[V_COUNT] = {
    "FORWARD",         "NEW",          "LOCAL",           "FRAGMENT",
    "DROP_TRUNCATED",  "DROP_BAD_HEADER", "DROP_IP_OPTIONS", "DROP_UNKNOWN_PROTO",
    "DROP_NO_CONN",    "DROP_TABLE_FULL", "DROP_BAD_ICMP",   "DROP_TX",
    "DROP_DEST_UNAVAILABLE", "APP",
    "ROUTE",           "DROP_NO_NEIGH",   "TUNNEL",
};
static const char *const state_names[S_COUNT] = {
    "NONE",      "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT",
    "CLOSE",     "CLOSE_WAIT",  "LAST_ACK", "LISTEN",   "SYNACK",   "UDP",
};

typedef struct {
    PyObject_HEAD struct table t;
    PyObject *dest_ba, *svc_ba;
    Py_buffer dest_view, svc_view;
    uint8_t *rx;
    int report_no_conn; /* drain hands DROP_NO_CONN TCP segments (not RST) to the caller */
} ConnTableObject;

static int check_range(const char *name, long long v, long long lo, long long hi) {
    if (v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "%s: must be in %lld..%lld, got %lld", name, lo, hi, v);
        return -1;
    }
    return 0;
}

static int check_handle(ConnTableObject *self, long long h) {
    if (!tbl_live(&self->t, h)) {
        PyErr_Format(PyExc_ValueError, "no connection with handle %lld", h);
        return -1;
    }
    return 0;
}

static int check_template(ConnTableObject *self, long long h) {
    if (check_handle(self, h) < 0)
        return -1;
    if (!(self->t.c[h].flags & CONN_F_TEMPLATE)) {
        PyErr_Format(PyExc_ValueError, "handle %lld is not a template", h);
        return -1;
    }
    return 0;
}

#include "fastpath/app_methods.h"
#include "fastpath/fwd_methods.h"
#include "fastpath/snap_methods.h"

static int int64_array(PyObject **ba, Py_buffer *view, size_t n) {
    *ba = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(n * sizeof(int64_t)));
    if (!*ba)
        return -1;
    memset(PyByteArray_AS_STRING(*ba), 0, n * sizeof(int64_t));
    /* Held for the table's life: the bytearray can never be resized under our pointer. */
    return PyObject_GetBuffer(*ba, view, PyBUF_WRITABLE);
}

static PyObject *ConnTable_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_conns", "max_dests", "max_svcs", NULL};
    long long max_conns, max_dests = 4096, max_svcs = 1024;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "L|LL:ConnTable", kwlist, &max_conns,
                                     &max_dests, &max_svcs))
        return NULL;
    if (check_range("max_conns", max_conns, 1, 1 << 30) < 0 ||
        check_range("max_dests", max_dests, 1, 1 << 24) < 0 ||
        check_range("max_svcs", max_svcs, 1, 1 << 24) < 0)
        return NULL;
    ConnTableObject *self = (ConnTableObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    struct table *t = &self->t;
    uint32_t nb = 16;
    while (nb < (uint32_t)max_conns)
        nb <<= 1;
    t->max = (int32_t)max_conns;
    t->nb_mask = nb - 1;
    t->c = PyMem_RawCalloc((size_t)max_conns, sizeof(struct conn));
    t->in_b = PyMem_RawCalloc(nb, sizeof(int32_t));
    t->out_b = PyMem_RawCalloc(nb, sizeof(int32_t));
    t->wheel = PyMem_RawMalloc(sizeof(int32_t) * WHEEL_SIZE);
    self->rx = PyMem_RawMalloc(READ_SIZE);
    if (!t->c || !t->in_b || !t->out_b || !t->wheel || !self->rx) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    if (int64_array(&self->dest_ba, &self->dest_view, (size_t)max_dests * DEST_FIELDS) < 0 ||
        int64_array(&self->svc_ba, &self->svc_view, (size_t)max_svcs * SVC_FIELDS) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    t->dests = self->dest_view.buf;
    t->svcs = self->svc_view.buf;
    t->max_dests = (int32_t)max_dests;
    t->max_svcs = (int32_t)max_svcs;
    uint64_t keys[3];
    if (getrandom(keys, sizeof keys, 0) != (ssize_t)sizeof keys) {
        Py_DECREF(self);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    t->k0 = keys[0];
    t->k1 = keys[1];
    t->k2 = keys[2] | 1;
    t->last_run = INT64_MIN / 4;
    for (int s = 0; s <= S_SYNACK; s++)
        t->tcp_to[s] = default_tcp_timeouts[s] * 1000;
    t->udp_to = 300 * 1000;
    tbl_flush(t);
    return (PyObject *)self;
}

static void ConnTable_dealloc(ConnTableObject *self) {
    if (self->dest_ba) {
        if (self->dest_view.obj)
            PyBuffer_Release(&self->dest_view);
        Py_DECREF(self->dest_ba);
    }
    if (self->svc_ba) {
        if (self->svc_view.obj)
            PyBuffer_Release(&self->svc_view);
        Py_DECREF(self->svc_ba);
    }
    PyMem_RawFree(self->t.c);
    PyMem_RawFree(self->t.in_b);
    PyMem_RawFree(self->t.out_b);
    PyMem_RawFree(self->t.wheel);
    PyMem_RawFree(self->t.due);
    PyMem_RawFree(self->t.log);
    PyMem_RawFree(self->rx);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t ConnTable_len(ConnTableObject *self) { return self->t.count; }

static PyObject *ConnTable_max_conns(ConnTableObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLong(self->t.max);
}

static PyObject *ConnTable_set_timeout(ConnTableObject *self, PyObject *args) {
    long long proto, state, seconds;
    if (!PyArg_ParseTuple(args, "LLL:set_timeout", &proto, &state, &seconds))
        return NULL;
    if (check_range("seconds", seconds, 0, 1LL << 31) < 0)
        return NULL;
    if (seconds * 1000 > UINT32_MAX)
        return PyErr_Format(PyExc_ValueError, "seconds: must be <= %u, got %lld",
                            UINT32_MAX / 1000, seconds);
    if (proto == PROTO_TCP && state >= S_NONE && state <= S_SYNACK)
        self->t.tcp_to[state] = (uint32_t)(seconds * 1000);
    else if (proto == PROTO_UDP && state == S_UDP)
        self->t.udp_to = (uint32_t)(seconds * 1000);
    else
        return PyErr_Format(PyExc_ValueError, "set_timeout: no state %lld for protocol %lld",
                            state, proto);
    Py_RETURN_NONE;
}

static PyObject *readonly_int64_view(PyObject *ba) {
    PyObject *mv = PyMemoryView_FromObject(ba);
    if (!mv)
        return NULL;
    PyObject *cast = PyObject_CallMethod(mv, "cast", "s", "q");
    Py_DECREF(mv);
    if (!cast)
        return NULL;
    PyObject *ro = PyObject_CallMethod(cast, "toreadonly", NULL);
    Py_DECREF(cast);
    return ro;
}

static PyObject *ConnTable_dest_buffer(ConnTableObject *self, PyObject *unused) {
    (void)unused;
    return readonly_int64_view(self->dest_ba);
}

static PyObject *ConnTable_svc_buffer(ConnTableObject *self, PyObject *unused) {
    (void)unused;
    return readonly_int64_view(self->svc_ba);
}

static PyObject *ConnTable_set_dest(ConnTableObject *self, PyObject *args) {
    long long dest, svc, addr, port, u, l;
    if (!PyArg_ParseTuple(args, "LLLLLL:set_dest", &dest, &svc, &addr, &port, &u, &l))
        return NULL;
    if (check_range("dest", dest, 0, self->t.max_dests - 1) < 0 ||
        check_range("svc", svc, 0, self->t.max_svcs - 1) < 0 ||
        check_range("addr", addr, 0, 0xFFFFFFFFLL) < 0 || check_range("port", port, 0, 0xFFFF) < 0 ||
        check_range("u_threshold", u, 0, 1LL << 31) < 0 || check_range("l_threshold", l, 0, u) < 0)
        return NULL;
    int64_t *d = &self->t.dests[dest * DEST_FIELDS];
    if (u == 0 || u > d[DEST_U_THRESHOLD])
        d[DEST_OVERLOAD] = 0;
    d[DEST_U_THRESHOLD] = u;
    d[DEST_L_THRESHOLD] = l;
    d[DEST_SVC] = svc;
    d[DEST_ADDR] = addr;
    d[DEST_PORT] = port;
    d[DEST_AVAILABLE] = 1;
    Py_RETURN_NONE;
}

static PyObject *ConnTable_set_dest_available(ConnTableObject *self, PyObject *args) {
    long long dest;
    int available;
    if (!PyArg_ParseTuple(args, "Lp:set_dest_available", &dest, &available))
        return NULL;
    if (check_range("dest", dest, 0, self->t.max_dests - 1) < 0)
        return NULL;
    self->t.dests[dest * DEST_FIELDS + DEST_AVAILABLE] = available ? 1 : 0;
    Py_RETURN_NONE;
}

static PyObject *ConnTable_clear_dest(ConnTableObject *self, PyObject *arg) {
    long long dest = PyLong_AsLongLong(arg);
    if (dest == -1 && PyErr_Occurred())
        return NULL;
    if (check_range("dest", dest, 0, self->t.max_dests - 1) < 0)
        return NULL;
    int64_t *d = &self->t.dests[dest * DEST_FIELDS];
    int64_t refs = d[DEST_ACTIVE] + d[DEST_INACTIVE] + d[DEST_PERSIST];
    if (refs)
        return PyErr_Format(PyExc_ValueError, "clear_dest: dest %lld still has %lld connections",
                            dest, (long long)refs);
    memset(d, 0, sizeof(int64_t) * DEST_FIELDS);
    Py_RETURN_NONE;
}

static PyObject *ConnTable_evictions(ConnTableObject *self, PyObject *unused) {
    (void)unused;
    return PyLong_FromUnsignedLongLong(self->t.evicted);
}

static PyObject *ConnTable_drops(ConnTableObject *self, PyObject *unused) {
    (void)unused;
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    for (int v = V_DROP_TRUNCATED; v < V_COUNT; v++) {
        if (strncmp(verdict_names[v], "DROP_", 5) != 0)
            continue;
        PyObject *n = PyLong_FromUnsignedLongLong(self->t.drops[v]);
        if (!n || PyDict_SetItemString(d, verdict_names[v], n) < 0) {
            Py_XDECREF(n);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(n);
    }
    return d;
}

static int check_addr_port(const char *an, long long a, const char *pn, long long p) {
    return check_range(an, a, 0, 0xFFFFFFFFLL) < 0 || check_range(pn, p, 0, 0xFFFF) < 0 ? -1 : 0;
}

/* insert's arguments from a vectorcall: every new connection passes here, and the generic
 * parser costs as much as the insert itself. Anything but 9 or 10 positional exact ints that
 * fit goes through PyArg_ParseTupleAndKeywords, so errors read the same either way. */
static int insert_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                       long long v[10]) {
    static char *kwlist[] = {"proto", "caddr", "cport", "vaddr", "vport", "daddr",
                             "dport", "dest",  "now",   "ctl",   NULL};
    v[9] = -1;
    if (!kwnames && (nargs == 9 || nargs == 10)) {
        Py_ssize_t i = 0;
        for (; i < nargs; i++) {
            if (!PyLong_CheckExact(args[i]))
                break;
            v[i] = PyLong_AsLongLong(args[i]);
            if (v[i] == -1 && PyErr_Occurred()) {
                PyErr_Clear();
                break;
            }
        }
        if (i == nargs)
            return 0;
        v[9] = -1;
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *tuple = PyTuple_New(nargs), *kwds = nkw ? PyDict_New() : NULL;
    int rc = tuple && (!nkw || kwds) ? 0 : -1;
    for (Py_ssize_t i = 0; rc == 0 && i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(tuple, i, args[i]);
    }
    for (Py_ssize_t i = 0; rc == 0 && i < nkw; i++)
        rc = PyDict_SetItem(kwds, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]);
    if (rc == 0 && !PyArg_ParseTupleAndKeywords(tuple, kwds, "LLLLLLLLL|L:insert", kwlist, &v[0],
                                                &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
                                                &v[8], &v[9]))
        rc = -1;
    Py_XDECREF(tuple);
    Py_XDECREF(kwds);
    return rc;
}

static PyObject *ConnTable_insert(ConnTableObject *self, PyObject *const *args,
                                  Py_ssize_t nargs, PyObject *kwnames) {
    long long v[10];
    struct table *t = &self->t;
    if (insert_args(args, nargs, kwnames, v) < 0)
        return NULL;
    long long proto = v[0], caddr = v[1], cport = v[2], vaddr = v[3], vport = v[4], daddr = v[5],
              dport = v[6], dest = v[7], now = v[8], ctl = v[9];
    if (proto != PROTO_TCP && proto != PROTO_UDP)
        return PyErr_Format(PyExc_ValueError, "insert: proto must be 6 or 17, got %lld", proto);
    if (check_addr_port("caddr", caddr, "cport", cport) < 0 ||
        check_addr_port("vaddr", vaddr, "vport", vport) < 0 ||
        check_addr_port("daddr", daddr, "dport", dport) < 0 ||
        check_range("dest", dest, 0, t->max_dests - 1) < 0)
        return NULL;
    if (ctl != -1 && check_handle(self, ctl) < 0)
        return NULL;
    int32_t h = tbl_alloc(t, (int32_t)ctl);
    if (h < 0)
        return PyLong_FromLong(-1);
    struct conn *c = &t->c[h];
    c->proto = (uint8_t)proto;
    c->caddr = (uint32_t)caddr;
    c->cport = (uint16_t)cport;
    c->vaddr = (uint32_t)vaddr;
    c->vport = (uint16_t)vport;
    c->daddr = (uint32_t)daddr;
    c->dport = (uint16_t)dport;
    c->dest = (int32_t)dest;
    int64_t fwd = t->dests[dest * DEST_FIELDS + DEST_FWD];
    c->flags = (uint16_t)(CONN_F_INACTIVE | fwd | (fwd ? CONN_F_NOOUTPUT : 0));
    if (proto == PROTO_TCP && cport == 0) {
        c->flags |= CONN_F_NO_CPORT;
        t->no_cport++;
    }
    c->ctl = (int32_t)ctl;
    c->state = proto == PROTO_TCP ? S_NONE : S_UDP;
    c->timeout_ms = proto == PROTO_TCP ? t->tcp_to[S_NONE] : t->udp_to;
    c->expires = now + c->timeout_ms;
    tbl_hash_conn(t, h);
    if (ctl >= 0)
        t->c[ctl].n_control++;
    tbl_bind(t, c);
    wheel_file(t, h);
    tbl_log(t, c, 0);
    TBL_CHECK(t);
    return PyLong_FromLong(h);
}

static PyObject *ConnTable_insert_template(ConnTableObject *self, PyObject *args) {
    long long proto, snet, vaddr, vport, dest, timeout_s, now;
    struct table *t = &self->t;
    if (!PyArg_ParseTuple(args, "LLLLLLL:insert_template", &proto, &snet, &vaddr, &vport, &dest,
                          &timeout_s, &now))
        return NULL;
    if (proto != 0 && proto != PROTO_TCP && proto != PROTO_UDP)
        return PyErr_Format(PyExc_ValueError,
                            "insert_template: proto must be 0, 6 or 17, got %lld", proto);
    if (check_range("snet", snet, 0, 0xFFFFFFFFLL) < 0 ||
        check_addr_port("vaddr", vaddr, "vport", vport) < 0 ||
        check_range("timeout_s", timeout_s, 0, 1LL << 31) < 0 ||
        check_range("dest", dest, 0, t->max_dests - 1) < 0)
        return NULL;
    if (timeout_s * 1000 > UINT32_MAX)
        return PyErr_Format(PyExc_ValueError, "timeout_s: must be <= %u, got %lld",
                            UINT32_MAX / 1000, timeout_s);
    int32_t h = tbl_alloc(t, -1);
    if (h < 0)
        return PyLong_FromLong(-1);
    struct conn *c = &t->c[h];
    const int64_t *d = &t->dests[dest * DEST_FIELDS];
    c->proto = (uint8_t)proto;
    c->caddr = (uint32_t)snet;
    c->vaddr = (uint32_t)vaddr;
    c->vport = (uint16_t)vport;
    c->daddr = (uint32_t)d[DEST_ADDR];
    c->dport = (uint16_t)d[DEST_PORT];
    c->dest = (int32_t)dest;
    c->flags = CONN_F_TEMPLATE;
    c->state = S_NONE;
    c->timeout_ms = (uint32_t)(timeout_s * 1000);
    c->expires = now + c->timeout_ms;
    tbl_hash_conn(t, h);
    tbl_bind(t, c);
    wheel_file(t, h);
    tbl_log(t, c, 0);
    return PyLong_FromLong(h);
}

static PyObject *ConnTable_lookup_template(ConnTableObject *self, PyObject *args) {
    long long proto, snet, vaddr, vport;
    if (!PyArg_ParseTuple(args, "LLLL:lookup_template", &proto, &snet, &vaddr, &vport))
        return NULL;
    if (snet < 0 || snet > 0xFFFFFFFFLL || vaddr < 0 || vaddr > 0xFFFFFFFFLL || vport < 0 ||
        vport > 0xFFFF)
        return PyErr_Format(PyExc_ValueError, "lookup_template: address or port out of range");
    if (proto < 0 || proto > 255)
        return PyErr_Format(PyExc_ValueError, "lookup_template: proto out of range: %lld", proto);
    return PyLong_FromLong(lookup_in(&self->t, (uint32_t)proto, (uint32_t)snet, 0,
                                     (uint32_t)vaddr, (uint32_t)vport, 1));
}

static PyObject *ConnTable_set_state(ConnTableObject *self, PyObject *args) {
    long long h, state, now;
    if (!PyArg_ParseTuple(args, "LLL:set_state", &h, &state, &now))
        return NULL;
    if (check_handle(self, h) < 0)
        return NULL;
    const struct conn *c = &self->t.c[h];
    if (c->proto != PROTO_TCP || (c->flags & CONN_F_TEMPLATE) || state < S_NONE ||
        state > S_SYNACK)
        return PyErr_Format(PyExc_ValueError, "set_state: handle %lld cannot take state %lld", h,
                            state);
    tbl_set_state(&self->t, (int32_t)h, (int)state, now);
    Py_RETURN_NONE;
}

static PyObject *ConnTable_touch_template(ConnTableObject *self, PyObject *args) {
    long long h, now;
    if (!PyArg_ParseTuple(args, "LL:touch_template", &h, &now) || check_template(self, h) < 0)
        return NULL;
    tbl_arm(&self->t, (int32_t)h, now, self->t.c[h].timeout_ms);
    Py_RETURN_NONE;
}

static PyObject *ConnTable_invalidate_template(ConnTableObject *self, PyObject *arg) {
    long long h = PyLong_AsLongLong(arg);
    if ((h == -1 && PyErr_Occurred()) || check_template(self, h) < 0)
        return NULL;
    /* Its key changes: to a sync peer the template under the old key is gone. */
    tbl_log(&self->t, &self->t.c[h], 1);
    tbl_unhash(&self->t, (int32_t)h);
    self->t.c[h].vport = 0xFFFF;
    self->t.c[h].dport = 0xFFFF;
    Py_RETURN_NONE;
}

static PyObject *info_tuple(const struct conn *c, long long handle, int with_handle) {
    if (with_handle)
        return Py_BuildValue("(LiIiIiIiiiiLii)", handle, c->proto, c->caddr, c->cport, c->vaddr,
                             c->vport, c->daddr, c->dport, c->dest, c->state, c->flags,
                             (long long)c->expires, c->n_control, c->ctl);
    return Py_BuildValue("(iIiIiIiiiiLii)", c->proto, c->caddr, c->cport, c->vaddr, c->vport,
                         c->daddr, c->dport, c->dest, c->state, c->flags, (long long)c->expires,
                         c->n_control, c->ctl);
}

static PyObject *ConnTable_conn_info(ConnTableObject *self, PyObject *arg) {
    long long h = PyLong_AsLongLong(arg);
    if ((h == -1 && PyErr_Occurred()) || check_handle(self, h) < 0)
        return NULL;
    return info_tuple(&self->t.c[h], h, 0);
}

static PyObject *ConnTable_entries(ConnTableObject *self, PyObject *arg) {
    long long limit = PyLong_AsLongLong(arg);
    if ((limit == -1 && PyErr_Occurred()) || check_range("limit", limit, 0, 1LL << 62) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    for (int32_t h = 0; out && h < self->t.next_unused && PyList_GET_SIZE(out) < limit; h++) {
        if (!self->t.c[h].live)
            continue;
        PyObject *e = info_tuple(&self->t.c[h], h, 1);
        if (!e || PyList_Append(out, e) < 0)
            Py_CLEAR(out);
        Py_XDECREF(e);
    }
    return out;
}

static PyObject *ConnTable_entries_from(ConnTableObject *self, PyObject *args) {
    long long start, limit;
    if (!PyArg_ParseTuple(args, "LL:entries_from", &start, &limit))
        return NULL;
    if (check_range("start", start, 0, 1LL << 62) < 0 ||
        check_range("limit", limit, 0, 1LL << 62) < 0)
        return NULL;
    PyObject *rows = PyList_New(0);
    if (!rows)
        return NULL;
    long long h = start;
    for (; h < self->t.next_unused && PyList_GET_SIZE(rows) < limit; h++) {
        if (!self->t.c[h].live)
            continue;
        PyObject *e = info_tuple(&self->t.c[h], h, 1);
        if (!e || PyList_Append(rows, e) < 0) {
            Py_XDECREF(e);
            Py_DECREF(rows);
            return NULL;
        }
        Py_DECREF(e);
    }
    return Py_BuildValue("(NL)", rows, h < self->t.next_unused ? h : -1LL);
}

static PyObject *ConnTable_enable_sync_log(ConnTableObject *self, PyObject *arg) {
    long long cap = PyLong_AsLongLong(arg);
    if ((cap == -1 && PyErr_Occurred()) || check_range("capacity", cap, 0, 1 << 24) < 0)
        return NULL;
    struct sync_rec *log = NULL;
    if (cap) {
        log = PyMem_RawMalloc((size_t)cap * sizeof(struct sync_rec));
        if (!log)
            return PyErr_NoMemory();
    }
    PyMem_RawFree(self->t.log);
    self->t.log = log;
    self->t.log_cap = (uint32_t)cap;
    self->t.log_head = self->t.log_len = 0;
    self->t.log_lost = 0;
    Py_RETURN_NONE;
}

static PyObject *ConnTable_sync_changes(ConnTableObject *self, PyObject *arg) {
    long long limit = PyLong_AsLongLong(arg);
    if ((limit == -1 && PyErr_Occurred()) || check_range("limit", limit, 0, 1LL << 62) < 0)
        return NULL;
    struct table *t = &self->t;
    long long n = limit < t->log_len ? limit : t->log_len;
    PyObject *out = PyList_New((Py_ssize_t)n);
    if (!out)
        return NULL;
    for (long long i = 0; i < n; i++) {
        const struct sync_rec *r = &t->log[(t->log_head + i) % t->log_cap];
        PyObject *e = Py_BuildValue("(iIiIiIiiiii)", r->proto, r->caddr, r->cport, r->vaddr,
                                    r->vport, r->daddr, r->dport, (int)r->dest, r->state,
                                    r->flags_hi << 8 | r->flags_lo, r->removed);
        if (!e) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, e);
    }
    if (n) {
        t->log_head = (uint32_t)((t->log_head + n) % t->log_cap);
        t->log_len -= (uint32_t)n;
    }
    unsigned long long lost = t->log_lost;
    t->log_lost = 0;
    return Py_BuildValue("(NK)", out, lost);
}

static PyObject *ConnTable_remove(ConnTableObject *self, PyObject *arg) {
    long long h = PyLong_AsLongLong(arg);
    if ((h == -1 && PyErr_Occurred()) || check_handle(self, h) < 0)
        return NULL;
    if (self->t.c[h].n_control)
        return PyErr_Format(PyExc_ValueError, "remove: handle %lld controls %d connections", h,
                            self->t.c[h].n_control);
    tbl_release(&self->t, (int32_t)h);
    TBL_CHECK(&self->t);
    Py_RETURN_NONE;
}

static PyObject *ConnTable_uncount(ConnTableObject *self, PyObject *arg) {
    long long h = PyLong_AsLongLong(arg);
    if ((h == -1 && PyErr_Occurred()) || check_handle(self, h) < 0)
        return NULL;
    struct table *t = &self->t;
    const struct conn *c = &t->c[h];
    if (c->flags & CONN_F_TEMPLATE)
        return PyErr_Format(PyExc_ValueError, "uncount: handle %lld is a template", h);
    int64_t *d = &t->dests[(size_t)c->dest * DEST_FIELDS];
    d[DEST_CONNS]--;
    t->svcs[(size_t)d[DEST_SVC] * SVC_FIELDS + SVC_CONNS]--;
    Py_RETURN_NONE;
}

static PyObject *ConnTable_credit(ConnTableObject *self, PyObject *args) {
    long long dest, v[4];
    static const char *const names[] = {"inpkts", "inbytes", "outpkts", "outbytes"};
    if (!PyArg_ParseTuple(args, "LLLLL:credit", &dest, &v[0], &v[1], &v[2], &v[3]) ||
        check_range("dest", dest, 0, self->t.max_dests - 1) < 0)
        return NULL;
    for (int i = 0; i < 4; i++)
        if (check_range(names[i], v[i], 0, 1LL << 62) < 0)
            return NULL;
    struct table *t = &self->t;
    int64_t *d = &t->dests[(size_t)dest * DEST_FIELDS];
    int64_t *s = &t->svcs[(size_t)d[DEST_SVC] * SVC_FIELDS];
    d[DEST_INPKTS] += v[0];
    d[DEST_INBYTES] += v[1];
    d[DEST_OUTPKTS] += v[2];
    d[DEST_OUTBYTES] += v[3];
    s[SVC_INPKTS] += v[0];
    s[SVC_INBYTES] += v[1];
    s[SVC_OUTPKTS] += v[2];
    s[SVC_OUTBYTES] += v[3];
    Py_RETURN_NONE;
}

static PyObject *ConnTable_seen(ConnTableObject *self, PyObject *args) {
    long long h, when;
    if (!PyArg_ParseTuple(args, "LL:seen", &h, &when) || check_handle(self, h) < 0)
        return NULL;
    const struct conn *c = &self->t.c[h];
    if (when + (long long)c->timeout_ms > c->expires)
        tbl_arm(&self->t, (int32_t)h, when, c->timeout_ms);
    TBL_CHECK(&self->t);
    Py_RETURN_NONE;
}

static PyObject *ConnTable_flush(ConnTableObject *self, PyObject *unused) {
    (void)unused;
    tbl_flush(&self->t);
    Py_RETURN_NONE;
}

static PyObject *ConnTable_expire(ConnTableObject *self, PyObject *arg) {
    long long now = PyLong_AsLongLong(arg);
    if (now == -1 && PyErr_Occurred())
        return NULL;
    int64_t n = tbl_expire(&self->t, now);
    if (n < 0)
        return PyErr_NoMemory();
    TBL_CHECK(&self->t);
    return PyLong_FromLongLong(n);
}

#include "fastpath/io_methods.h"

static PyMethodDef ConnTable_methods[] = {
    {"set_timeout", (PyCFunction)ConnTable_set_timeout, METH_VARARGS, DOC_set_timeout},
    {"dest_buffer", (PyCFunction)ConnTable_dest_buffer, METH_NOARGS, DOC_dest_buffer},
    {"svc_buffer", (PyCFunction)ConnTable_svc_buffer, METH_NOARGS, DOC_svc_buffer},
    {"set_dest", (PyCFunction)ConnTable_set_dest, METH_VARARGS, DOC_set_dest},
    {"set_dest_available", (PyCFunction)ConnTable_set_dest_available, METH_VARARGS,
     DOC_set_dest_available},
    {"clear_dest", (PyCFunction)ConnTable_clear_dest, METH_O, DOC_clear_dest},
    {"set_dest_fwd", (PyCFunction)ConnTable_set_dest_fwd, METH_VARARGS, DOC_set_dest_fwd},
    {"set_dest_link", (PyCFunction)ConnTable_set_dest_link, METH_VARARGS, DOC_set_dest_link},
    {"drops", (PyCFunction)ConnTable_drops, METH_NOARGS, DOC_drops},
    {"dest_of", (PyCFunction)ConnTable_dest_of, METH_VARARGS, DOC_dest_of},
    {"evictions", (PyCFunction)ConnTable_evictions, METH_NOARGS, DOC_evictions},
    {"set_report_no_conn", (PyCFunction)ConnTable_set_report_no_conn, METH_O,
     DOC_set_report_no_conn},
    {"insert", (PyCFunction)(void (*)(void))ConnTable_insert, METH_FASTCALL | METH_KEYWORDS,
     DOC_insert},
    {"insert_template", (PyCFunction)ConnTable_insert_template, METH_VARARGS,
     DOC_insert_template},
    {"lookup_template", (PyCFunction)ConnTable_lookup_template, METH_VARARGS,
     DOC_lookup_template},
    {"set_state", (PyCFunction)ConnTable_set_state, METH_VARARGS, DOC_set_state},
    {"touch_template", (PyCFunction)ConnTable_touch_template, METH_VARARGS, DOC_touch_template},
    {"invalidate_template", (PyCFunction)ConnTable_invalidate_template, METH_O,
     DOC_invalidate_template},
    {"conn_info", (PyCFunction)ConnTable_conn_info, METH_O, DOC_conn_info},
    {"entries", (PyCFunction)ConnTable_entries, METH_O, DOC_entries},
    {"entries_from", (PyCFunction)ConnTable_entries_from, METH_VARARGS, DOC_entries_from},
    {"enable_sync_log", (PyCFunction)ConnTable_enable_sync_log, METH_O, DOC_enable_sync_log},
    {"sync_changes", (PyCFunction)ConnTable_sync_changes, METH_O, DOC_sync_changes},
    {"remove", (PyCFunction)ConnTable_remove, METH_O, DOC_remove},
    {"uncount", (PyCFunction)ConnTable_uncount, METH_O, DOC_uncount},
    {"credit", (PyCFunction)ConnTable_credit, METH_VARARGS, DOC_credit},
    {"seen", (PyCFunction)ConnTable_seen, METH_VARARGS, DOC_seen},
    {"flush", (PyCFunction)ConnTable_flush, METH_NOARGS, DOC_flush},
    {"expire", (PyCFunction)ConnTable_expire, METH_O, DOC_expire},
    {"process", (PyCFunction)ConnTable_process, METH_VARARGS, DOC_process},
    {"process_vnet", (PyCFunction)ConnTable_process_vnet, METH_VARARGS, DOC_process_vnet},
    {"drain", (PyCFunction)(void (*)(void))ConnTable_drain, METH_VARARGS | METH_KEYWORDS,
     DOC_drain},
    APP_METHODS,
    SNAP_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ConnTable_getset[] = {
    {"max_conns", (getter)ConnTable_max_conns, NULL, DOC_max_conns, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods ConnTable_as_sequence = {.sq_length = (lenfunc)ConnTable_len};

static PyTypeObject ConnTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "director.dataplane._fastpath.ConnTable",
    .tp_basicsize = sizeof(ConnTableObject),
    .tp_dealloc = (destructor)ConnTable_dealloc,
    .tp_as_sequence = &ConnTable_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = DOC_ConnTable,
    .tp_methods = ConnTable_methods,
    .tp_getset = ConnTable_getset,
    .tp_new = ConnTable_new,
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT, "director.dataplane._fastpath",
    "lvsd's C fast path: the IPVS connection table and VS-NAT rewrite (see _fastpath_py).", -1,
    NULL,
};

static int add_names(PyObject *m, const char *dict_name, const char *const *names, int n) {
    PyObject *d = PyDict_New();
    if (!d)
        return -1;
    for (int i = 0; i < n; i++) {
        PyObject *k = PyLong_FromLong(i), *v = PyUnicode_FromString(names[i]);
        int rc = (k && v) ? PyDict_SetItem(d, k, v) : -1;
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (rc < 0 || PyModule_AddIntConstant(m, names[i], i) < 0) {
            Py_DECREF(d);
            return -1;
        }
    }
    return PyModule_AddObject(m, dict_name, d) < 0 ? (Py_DECREF(d), -1) : 0;
}

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (PyType_Ready(&ConnTableType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastpath_module);
    if (!m)
        return NULL;
    static const struct {
        const char *name;
        long value;
    } ints[] = {
        {"PROTO_TCP", PROTO_TCP},
        {"PROTO_UDP", PROTO_UDP},
        {"CONN_F_HASHED", CONN_F_HASHED},
        {"CONN_F_INACTIVE", CONN_F_INACTIVE},
        {"CONN_F_TEMPLATE", CONN_F_TEMPLATE},
        {"CONN_F_FWD_MASK", CONN_F_FWD_MASK},
        {"CONN_F_MASQ", CONN_F_MASQ},
        {"CONN_F_TUNNEL", CONN_F_TUNNEL},
        {"CONN_F_DROUTE", CONN_F_DROUTE},
        {"CONN_F_NOOUTPUT", CONN_F_NOOUTPUT},
        {"CONN_F_OUT_SEQ", CONN_F_OUT_SEQ},
        {"CONN_F_IN_SEQ", CONN_F_IN_SEQ},
        {"CONN_F_NO_CPORT", CONN_F_NO_CPORT},
        {"CONN_F_APP", CONN_F_APP},
        {"DEST_ACTIVE", DEST_ACTIVE},
        {"DEST_INACTIVE", DEST_INACTIVE},
        {"DEST_PERSIST", DEST_PERSIST},
        {"DEST_OVERLOAD", DEST_OVERLOAD},
        {"DEST_U_THRESHOLD", DEST_U_THRESHOLD},
        {"DEST_L_THRESHOLD", DEST_L_THRESHOLD},
        {"DEST_CONNS", DEST_CONNS},
        {"DEST_INPKTS", DEST_INPKTS},
        {"DEST_OUTPKTS", DEST_OUTPKTS},
        {"DEST_INBYTES", DEST_INBYTES},
        {"DEST_OUTBYTES", DEST_OUTBYTES},
        {"DEST_SVC", DEST_SVC},
        {"DEST_ADDR", DEST_ADDR},
        {"DEST_PORT", DEST_PORT},
        {"DEST_AVAILABLE", DEST_AVAILABLE},
        {"DEST_FWD", DEST_FWD},
        {"DEST_LINK_FD", DEST_LINK_FD},
        {"DEST_MAC", DEST_MAC},
        {"DEST_SRC_MAC", DEST_SRC_MAC},
        {"DEST_FIELDS", DEST_FIELDS},
        {"SVC_CONNS", SVC_CONNS},
        {"SVC_INPKTS", SVC_INPKTS},
        {"SVC_OUTPKTS", SVC_OUTPKTS},
        {"SVC_INBYTES", SVC_INBYTES},
        {"SVC_OUTBYTES", SVC_OUTBYTES},
        {"SVC_FIELDS", SVC_FIELDS},
        {"VNET_HDR_LEN", VNET_HDR_LEN},
        {"VNET_F_NEEDS_CSUM", VNET_F_NEEDS_CSUM},
        {"TEMPLATE_EXPIRED_TIMEOUT_S", TEMPLATE_EXPIRED_MS / 1000},
        {"READ_SIZE", READ_SIZE},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (PyModule_AddIntConstant(m, ints[i].name, ints[i].value) < 0)
            goto fail;
    if (add_names(m, "VERDICT_NAMES", verdict_names, V_COUNT) < 0 ||
        add_names(m, "STATE_NAMES", state_names, S_COUNT) < 0)
        goto fail;
    Py_INCREF(&ConnTableType);
    if (PyModule_AddObject(m, "ConnTable", (PyObject *)&ConnTableType) < 0) {
        Py_DECREF(&ConnTableType);
        goto fail;
    }
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
