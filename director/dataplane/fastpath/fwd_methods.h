/* The ConnTable methods of the forwarding methods (direct routing, tunnelling): a dest's
 * method and link, and the dest a client packet's connection uses. Included by _fastpath.c
 * after ConnTableObject and check_range. */
#ifndef LVSD_FASTPATH_FWD_METHODS_H
#define LVSD_FASTPATH_FWD_METHODS_H

static PyObject *ConnTable_set_dest_fwd(ConnTableObject *self, PyObject *args) {
    long long dest, fwd;
    if (!PyArg_ParseTuple(args, "LL:set_dest_fwd", &dest, &fwd))
        return NULL;
    if (check_range("dest", dest, 0, self->t.max_dests - 1) < 0)
        return NULL;
    if (fwd != CONN_F_MASQ && fwd != CONN_F_TUNNEL && fwd != CONN_F_DROUTE)
        return PyErr_Format(PyExc_ValueError, "set_dest_fwd: fwd must be 0, 2 or 3, got %lld",
                            fwd);
    self->t.dests[dest * DEST_FIELDS + DEST_FWD] = fwd;
    Py_RETURN_NONE;
}

static PyObject *ConnTable_set_dest_link(ConnTableObject *self, PyObject *args) {
    long long dest, fd, mac, smac;
    if (!PyArg_ParseTuple(args, "LLLL:set_dest_link", &dest, &fd, &mac, &smac))
        return NULL;
    if (check_range("dest", dest, 0, self->t.max_dests - 1) < 0 ||
        check_range("fd", fd, -1, 0x7FFFFFFF) < 0 ||
        check_range("mac", mac, 0, (1LL << 48) - 1) < 0 ||
        check_range("src_mac", smac, 0, (1LL << 48) - 1) < 0)
        return NULL;
    int64_t *d = &self->t.dests[dest * DEST_FIELDS];
    d[DEST_LINK_FD] = fd + 1;
    d[DEST_MAC] = mac;
    d[DEST_SRC_MAC] = smac;
    Py_RETURN_NONE;
}

static PyObject *ConnTable_dest_of(ConnTableObject *self, PyObject *args) {
    Py_buffer b;
    long long offset;
    if (!PyArg_ParseTuple(args, "y*L:dest_of", &b, &offset))
        return NULL;
    if (check_range("offset", offset, 0, VNET_HDR_LEN) < 0) {
        PyBuffer_Release(&b);
        return NULL;
    }
    long dest = -1;
    const uint8_t *ip = (const uint8_t *)b.buf + offset;
    if (b.len >= offset + 24 && ip[0] == 0x45 && (ip[9] == PROTO_TCP || ip[9] == PROTO_UDP)) {
        int32_t h = lookup_in(&self->t, ip[9], rd32(ip + 12), rd16(ip + 20), rd32(ip + 16),
                              rd16(ip + 22), 0);
        if (h >= 0)
            dest = self->t.c[h].dest;
    }
    PyBuffer_Release(&b);
    return PyLong_FromLong(dest);
}

#endif
