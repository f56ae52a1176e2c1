/* The ConnTable methods that run packets through the fast path: one packet (`process`,
 * `process_vnet`) and a TUN fd read dry (`drain`). Included by _fastpath.c after
 * ConnTableObject and check_range. */
#ifndef LVSD_FASTPATH_IO_METHODS_H
#define LVSD_FASTPATH_IO_METHODS_H

/* The verdicts `drain` hands to its caller with the packet: the caller acts on them. */
#define FOR_CALLER(v)                                                                      \
    ((v) == V_NEW || (v) == V_LOCAL || (v) == V_FRAGMENT || (v) == V_APP || (v) == V_TUNNEL)

/* A DROP_NO_CONN packet the caller asked to see (set_report_no_conn): an IPv4 TCP segment
 * without RST, which the caller may answer with a reset as the kernel's stack would. */
static int report_no_conn(const ConnTableObject *self, int verdict, const uint8_t *pkt,
                          ssize_t n) {
    if (verdict != V_DROP_NO_CONN || !self->report_no_conn || n < VNET_HDR_LEN + 20)
        return 0;
    const uint8_t *ip = pkt + VNET_HDR_LEN;
    size_t ihl = (size_t)(ip[0] & 0x0F) * 4;
    if ((ip[0] >> 4) != 4 || ip[9] != PROTO_TCP || (size_t)n < VNET_HDR_LEN + ihl + 14)
        return 0;
    return !(ip[ihl + 13] & 0x04);
}

static PyObject *ConnTable_set_report_no_conn(ConnTableObject *self, PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    self->report_no_conn = on;
    Py_RETURN_NONE;
}

static PyObject *do_process(ConnTableObject *self, PyObject *args, int vnet, const char *fmt) {
    Py_buffer b;
    long long now;
    if (!PyArg_ParseTuple(args, fmt, &b, &now))
        return NULL;
    int v = vnet ? process_vnet_packet(&self->t, b.buf, (size_t)b.len, now)
                 : process_packet(&self->t, NULL, b.buf, (size_t)b.len, now);
    PyBuffer_Release(&b);
    return PyLong_FromLong(v);
}

static PyObject *ConnTable_process(ConnTableObject *self, PyObject *args) {
    return do_process(self, args, 0, "w*L:process");
}

static PyObject *ConnTable_process_vnet(ConnTableObject *self, PyObject *args) {
    return do_process(self, args, 1, "w*L:process_vnet");
}

static PyObject *ConnTable_drain(ConnTableObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"fd", "now", "out", "max_packets", "write_fd", NULL};
    int fd, write_fd = -1;
    long long now, max_packets = 256;
    PyObject *out;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iLO!|Li:drain", kwlist, &fd, &now, &PyList_Type,
                                     &out, &max_packets, &write_fd))
        return NULL;
    if (check_range("max_packets", max_packets, 0, 1LL << 30) < 0)
        return NULL;
    if (write_fd < 0)
        write_fd = fd;
    long long n = 0;
    while (n < max_packets) {
        ssize_t r = 0;
        int err = 0, verdict = V_FORWARD;
        /* Forward known connections without the GIL; stop for packets Python must see. */
        Py_BEGIN_ALLOW_THREADS;
        while (n < max_packets) {
            r = read(fd, self->rx, READ_SIZE);
            if (r <= 0) {
                err = r < 0 ? errno : 0;
                break;
            }
            n++;
            verdict = process_vnet_packet(&self->t, self->rx, (size_t)r, now);
            if (verdict == V_FORWARD) {
                if (write(write_fd, self->rx, (size_t)r) < 0)
                    self->t.drops[V_DROP_TX]++;
            } else if (FOR_CALLER(verdict) || report_no_conn(self, verdict, self->rx, r)) {
                break;
            }
        }
        Py_END_ALLOW_THREADS;
        if (r < 0) {
            if (err == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    return NULL;
                continue;
            }
            if (err == EAGAIN || err == EWOULDBLOCK)
                break;
            errno = err;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (r == 0)
            break;
        if (FOR_CALLER(verdict) || report_no_conn(self, verdict, self->rx, r)) {
            PyObject *item = NULL;
            PyObject *pkt = PyByteArray_FromStringAndSize((const char *)self->rx, r);
            if (pkt)
                item = Py_BuildValue("(iN)", verdict, pkt);
            if (!item || PyList_Append(out, item) < 0) {
                Py_XDECREF(item);
                return NULL;
            }
            Py_DECREF(item);
            if (verdict == V_APP)
                break;
        }
    }
    return PyLong_FromLongLong(n);
}

#endif
