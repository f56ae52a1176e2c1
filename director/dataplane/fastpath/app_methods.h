/* The ConnTable methods of the application helper (see app.h): lookups by key, binding a
 * connection to the helper, and its sequence-number offsets. Included by _fastpath.c after
 * ConnTableObject, check_range and check_handle. */
#ifndef LVSD_FASTPATH_APP_METHODS_H
#define LVSD_FASTPATH_APP_METHODS_H

static int lookup_args(PyObject *args, const char *fmt, long long v[5]) {
    if (!PyArg_ParseTuple(args, fmt, &v[0], &v[1], &v[2], &v[3], &v[4]))
        return -1;
    if (v[0] != PROTO_TCP && v[0] != PROTO_UDP) {
        PyErr_Format(PyExc_ValueError, "lookup: proto must be 6 or 17, got %lld", v[0]);
        return -1;
    }
    if (check_range("addr", v[1], 0, 0xFFFFFFFFLL) < 0 || check_range("port", v[2], 0, 0xFFFF) < 0 ||
        check_range("addr", v[3], 0, 0xFFFFFFFFLL) < 0 || check_range("port", v[4], 0, 0xFFFF) < 0)
        return -1;
    return 0;
}

static PyObject *ConnTable_lookup(ConnTableObject *self, PyObject *args) {
    long long v[5];
    if (lookup_args(args, "LLLLL:lookup", v) < 0)
        return NULL;
    return PyLong_FromLong(lookup_in(&self->t, (uint32_t)v[0], (uint32_t)v[1], (uint32_t)v[2],
                                     (uint32_t)v[3], (uint32_t)v[4], 0));
}

static PyObject *ConnTable_lookup_out(ConnTableObject *self, PyObject *args) {
    long long v[5];
    if (lookup_args(args, "LLLLL:lookup_out", v) < 0)
        return NULL;
    return PyLong_FromLong(lookup_out(&self->t, (uint32_t)v[0], (uint32_t)v[1], (uint32_t)v[2],
                                      (uint32_t)v[3], (uint32_t)v[4]));
}

static PyObject *ConnTable_bind_app(ConnTableObject *self, PyObject *arg) {
    long long h = PyLong_AsLongLong(arg);
    if ((h == -1 && PyErr_Occurred()) || check_handle(self, h) < 0)
        return NULL;
    struct conn *c = &self->t.c[h];
    if (c->proto != PROTO_TCP || (c->flags & CONN_F_TEMPLATE))
        return PyErr_Format(PyExc_ValueError, "bind_app: handle %lld is not a TCP connection", h);
    c->flags |= CONN_F_APP;
    Py_RETURN_NONE;
}

static PyObject *ConnTable_seq_fix(ConnTableObject *self, PyObject *args) {
    long long h, seq, ack;
    int inbound;
    if (!PyArg_ParseTuple(args, "LpLL:seq_fix", &h, &inbound, &seq, &ack) ||
        check_handle(self, h) < 0 || check_range("seq", seq, 0, 0xFFFFFFFFLL) < 0 ||
        check_range("ack", ack, 0, 0xFFFFFFFFLL) < 0)
        return NULL;
    uint32_t s = (uint32_t)seq, a = (uint32_t)ack;
    seq_fix(&self->t.c[h], inbound, &s, &a);
    return Py_BuildValue("(kk)", (unsigned long)s, (unsigned long)a);
}

static PyObject *ConnTable_seq_update(ConnTableObject *self, PyObject *args) {
    long long h, seq, diff;
    int inbound;
    if (!PyArg_ParseTuple(args, "LpLL:seq_update", &h, &inbound, &seq, &diff) ||
        check_handle(self, h) < 0 || check_range("seq", seq, 0, 0xFFFFFFFFLL) < 0 ||
        check_range("diff", diff, -(1LL << 16), 1LL << 16) < 0)
        return NULL;
    struct conn *c = &self->t.c[h];
    if (seq_update(c, inbound, (uint32_t)seq, (int32_t)diff))
        tbl_log(&self->t, c, 0);
    Py_RETURN_NONE;
}

static PyObject *ConnTable_seq_state(ConnTableObject *self, PyObject *arg) {
    long long h = PyLong_AsLongLong(arg);
    if ((h == -1 && PyErr_Occurred()) || check_handle(self, h) < 0)
        return NULL;
    const struct conn *c = &self->t.c[h];
    return Py_BuildValue("(kiikii)", (unsigned long)c->in_init, c->in_delta, c->in_prev,
                         (unsigned long)c->out_init, c->out_delta, c->out_prev);
}

static PyObject *ConnTable_set_seq_state(ConnTableObject *self, PyObject *args) {
    long long h, v[6];
    static const char *names[6] = {"in_init",  "in_delta",  "in_prev",
                                   "out_init", "out_delta", "out_prev"};
    if (!PyArg_ParseTuple(args, "LLLLLLL:set_seq_state", &h, &v[0], &v[1], &v[2], &v[3], &v[4],
                          &v[5]) ||
        check_handle(self, h) < 0)
        return NULL;
    for (int i = 0; i < 6; i++) {
        int init = i % 3 == 0;
        if (check_range(names[i], v[i], init ? 0 : -(1LL << 31),
                        init ? 0xFFFFFFFFLL : (1LL << 31) - 1) < 0)
            return NULL;
    }
    struct conn *c = &self->t.c[h];
    c->in_init = (uint32_t)v[0];
    c->in_delta = (int32_t)v[1];
    c->in_prev = (int32_t)v[2];
    c->out_init = (uint32_t)v[3];
    c->out_delta = (int32_t)v[4];
    c->out_prev = (int32_t)v[5];
    c->flags &= (uint16_t)~(CONN_F_IN_SEQ | CONN_F_OUT_SEQ);
    if (v[0] || v[1] || v[2])
        c->flags |= CONN_F_IN_SEQ;
    if (v[3] || v[4] || v[5])
        c->flags |= CONN_F_OUT_SEQ;
    Py_RETURN_NONE;
}

#define APP_METHODS                                                                            \
    {"lookup", (PyCFunction)ConnTable_lookup, METH_VARARGS, DOC_lookup},                       \
        {"lookup_out", (PyCFunction)ConnTable_lookup_out, METH_VARARGS, DOC_lookup_out},       \
        {"bind_app", (PyCFunction)ConnTable_bind_app, METH_O, DOC_bind_app},                   \
        {"seq_fix", (PyCFunction)ConnTable_seq_fix, METH_VARARGS, DOC_seq_fix},                \
        {"seq_update", (PyCFunction)ConnTable_seq_update, METH_VARARGS, DOC_seq_update},       \
        {"seq_state", (PyCFunction)ConnTable_seq_state, METH_O, DOC_seq_state},                \
        {"set_seq_state", (PyCFunction)ConnTable_set_seq_state, METH_VARARGS, DOC_set_seq_state}

#endif
