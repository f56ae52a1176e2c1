/*
 * Loads lvsd's tc offload program (offload.bpf.c) through libbpf, attaches it to the
 * ingress of the director's interfaces and edits its connection map.
 *
 * One type, `Offload`. Addresses and ports are host-order ints as in the fast path's
 * table; the map holds them in network order. The map's counters only grow; this object
 * keeps, per connection slot, what it has already reported, so that `take` and
 * `uninstall` return what was forwarded since (the caller adds it to its own counters).
 * That memory is 32 bytes per slot, calloc'ed, so untouched slots cost no resident memory.
 * Event-loop thread only.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#define MAX_IFACES 4
/* The filter's identity on every hook: found again, and removed, by these. */
#define TC_HANDLE 0x1D5
#define TC_PRIORITY 1

struct flow_key {
    uint32_t saddr, daddr;
    uint16_t sport, dport;
    uint8_t proto, pad[3];
};

struct flow_val {
    uint32_t saddr, daddr;
    uint16_t sport, dport;
    uint32_t ifindex, slot;
    uint64_t packets, bytes, last_ns;
};

typedef struct {
    PyObject_HEAD struct bpf_object *obj;
    int map_fd;
    long long max_conns;
    int n_ifaces;
    int ifindex[MAX_IFACES];
    int created[MAX_IFACES]; /* the clsact qdisc is ours to remove */
    int attached[MAX_IFACES];
    uint64_t (*reported)[4]; /* per slot: in packets, in bytes, out packets, out bytes */
    long long entries;
} OffloadObject;

static char last_libbpf_error[256];

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap) {
    /* Keep the last warning to name the cause in the exception; print nothing. */
    if (level <= LIBBPF_WARN)
        vsnprintf(last_libbpf_error, sizeof last_libbpf_error, fmt, ap);
    return 0;
}

static PyObject *os_error(int err, const char *what) {
    size_t n = strlen(last_libbpf_error);
    while (n && last_libbpf_error[n - 1] == '\n')
        last_libbpf_error[--n] = '\0';
    if (n)
        return PyErr_Format(PyExc_OSError, "%s: %s (%s)", what, strerror(err), last_libbpf_error);
    return PyErr_Format(PyExc_OSError, "%s: %s", what, strerror(err));
}

static void detach_all(OffloadObject *self) {
    for (int i = 0; i < self->n_ifaces; i++) {
        DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = self->ifindex[i],
                            .attach_point = BPF_TC_INGRESS);
        if (self->attached[i]) {
            DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = TC_HANDLE, .priority = TC_PRIORITY);
            bpf_tc_detach(&hook, &opts);
            self->attached[i] = 0;
        }
        if (self->created[i]) {
            hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
            bpf_tc_hook_destroy(&hook);
            self->created[i] = 0;
        }
    }
}

static void Offload_dealloc(OffloadObject *self) {
    detach_all(self);
    if (self->obj)
        bpf_object__close(self->obj);
    free(self->reported);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Offload_init(OffloadObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"path", "max_conns", "ifindexes", NULL};
    const char *path;
    long long max_conns;
    PyObject *ifaces;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sLO!:Offload", kwlist, &path, &max_conns,
                                     &PyTuple_Type, &ifaces))
        return -1;
    if (self->obj) {
        PyErr_SetString(PyExc_RuntimeError, "Offload: already loaded");
        return -1;
    }
    if (max_conns < 1 || max_conns > (1LL << 30)) {
        PyErr_Format(PyExc_ValueError, "max_conns must be in [1, %lld], got %lld", 1LL << 30,
                     max_conns);
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(ifaces);
    if (n < 1 || n > MAX_IFACES) {
        PyErr_Format(PyExc_ValueError, "ifindexes: 1 to %d interfaces, got %zd", MAX_IFACES, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long v = PyLong_AsLong(PyTuple_GET_ITEM(ifaces, i));
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (v < 1 || v > INT32_MAX) {
            PyErr_Format(PyExc_ValueError, "ifindexes[%zd]: not an interface index: %ld", i, v);
            return -1;
        }
        self->ifindex[i] = (int)v;
    }
    self->reported = calloc((size_t)max_conns, sizeof *self->reported);
    if (!self->reported) {
        PyErr_NoMemory();
        return -1;
    }
    self->max_conns = max_conns;
    last_libbpf_error[0] = '\0';
    libbpf_set_print(quiet_print);
    struct bpf_object *obj = bpf_object__open_file(path, NULL);
    if (!obj) {
        os_error(errno, path);
        return -1;
    }
    self->obj = obj;
    struct bpf_map *map = bpf_object__find_map_by_name(obj, "conns");
    struct bpf_program *prog = bpf_object__find_program_by_name(obj, "lvsd_offload");
    if (!map || !prog) {
        PyErr_Format(PyExc_OSError, "%s: no map 'conns' or program 'lvsd_offload'", path);
        return -1;
    }
    int err = bpf_map__set_max_entries(map, (uint32_t)(2 * max_conns));
    if (!err)
        err = bpf_object__load(obj);
    if (err) {
        os_error(-err, "loading the offload program");
        return -1;
    }
    self->map_fd = bpf_map__fd(map);
    int prog_fd = bpf_program__fd(prog);
    for (Py_ssize_t i = 0; i < n; i++) {
        int dup = 0;
        for (Py_ssize_t j = 0; j < i; j++)
            dup |= self->ifindex[j] == self->ifindex[i];
        self->n_ifaces = (int)i + 1;
        if (dup)
            continue;
        DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = self->ifindex[i],
                            .attach_point = BPF_TC_INGRESS);
        err = bpf_tc_hook_create(&hook);
        if (err && err != -EEXIST) {
            os_error(-err, "creating the clsact qdisc");
            detach_all(self);
            return -1;
        }
        self->created[i] = !err;
        /* A filter a dead lvsd left there is replaced. */
        DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = TC_HANDLE, .priority = TC_PRIORITY,
                            .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE);
        err = bpf_tc_attach(&hook, &opts);
        if (err) {
            os_error(-err, "attaching the offload program");
            detach_all(self);
            return -1;
        }
        self->attached[i] = 1;
    }
    return 0;
}

static int make_keys(unsigned long long proto, unsigned long long caddr,
                     unsigned long long cport, unsigned long long vaddr, unsigned long long vport,
                     unsigned long long daddr, unsigned long long dport, struct flow_key *in,
                     struct flow_key *out) {
    if ((proto != IPPROTO_TCP && proto != IPPROTO_UDP) || caddr > UINT32_MAX ||
        vaddr > UINT32_MAX || daddr > UINT32_MAX || cport > 0xFFFF || vport > 0xFFFF ||
        dport > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError,
                        "proto must be 6 or 17, addresses 32-bit and ports 16-bit");
        return -1;
    }
    memset(in, 0, sizeof *in);
    memset(out, 0, sizeof *out);
    in->saddr = htonl((uint32_t)caddr);
    in->daddr = htonl((uint32_t)vaddr);
    in->sport = htons((uint16_t)cport);
    in->dport = htons((uint16_t)vport);
    in->proto = (uint8_t)proto;
    out->saddr = htonl((uint32_t)daddr);
    out->daddr = htonl((uint32_t)caddr);
    out->sport = htons((uint16_t)dport);
    out->dport = htons((uint16_t)cport);
    out->proto = (uint8_t)proto;
    return 0;
}

static PyObject *Offload_install(OffloadObject *self, PyObject *args) {
    struct flow_key in, out;
    unsigned long long proto, caddr, cport, vaddr, vport, daddr, dport;
    long long slot, in_if, out_if;
    if (!PyArg_ParseTuple(args, "KKKKKKKLLL:install", &proto, &caddr, &cport, &vaddr, &vport,
                          &daddr, &dport, &slot, &in_if, &out_if) ||
        make_keys(proto, caddr, cport, vaddr, vport, daddr, dport, &in, &out) < 0)
        return NULL;
    if (in_if < 1 || in_if > INT32_MAX || out_if < 1 || out_if > INT32_MAX)
        return PyErr_Format(PyExc_ValueError, "install: bad interface index %lld or %lld", in_if,
                            out_if);
    if (slot < 0 || slot >= self->max_conns)
        return PyErr_Format(PyExc_ValueError, "install: slot %lld out of [0, %lld)", slot,
                            self->max_conns);
    /* Inbound: client -> VIP becomes client -> real, out of the real's interface. */
    struct flow_val vin = {in.saddr, out.saddr, in.sport, out.sport, (uint32_t)in_if,
                           (uint32_t)slot, 0, 0, 0};
    /* Outbound: real -> client becomes VIP -> client, out of the client's interface. */
    struct flow_val vout = {in.daddr, in.saddr, in.dport, in.sport, (uint32_t)out_if,
                            (uint32_t)slot, 0, 0, 0};
    memset(self->reported[slot], 0, sizeof self->reported[slot]);
    if (bpf_map_update_elem(self->map_fd, &in, &vin, BPF_ANY) ||
        bpf_map_update_elem(self->map_fd, &out, &vout, BPF_ANY)) {
        int err = errno;
        bpf_map_delete_elem(self->map_fd, &in);
        return PyErr_Format(PyExc_OSError, "install: map update: %s", strerror(err));
    }
    self->entries++;
    Py_RETURN_NONE;
}

/* Counters since the last report of both entries: (in pkts, in bytes, out pkts, out bytes,
 * last_ns); remove them too when `delete`. */
static PyObject *report(OffloadObject *self, PyObject *args, const char *fmt, int delete) {
    struct flow_key in, out;
    unsigned long long proto, caddr, cport, vaddr, vport, daddr, dport;
    if (!PyArg_ParseTuple(args, fmt, &proto, &caddr, &cport, &vaddr, &vport, &daddr, &dport) ||
        make_keys(proto, caddr, cport, vaddr, vport, daddr, dport, &in, &out) < 0)
        return NULL;
    struct flow_val v[2];
    int found[2];
    found[0] = bpf_map_lookup_elem(self->map_fd, &in, &v[0]) == 0;
    found[1] = bpf_map_lookup_elem(self->map_fd, &out, &v[1]) == 0;
    if (delete) {
        if (found[0])
            bpf_map_delete_elem(self->map_fd, &in);
        if (found[1])
            bpf_map_delete_elem(self->map_fd, &out);
        if (found[0] || found[1])
            self->entries--;
    }
    uint64_t d[4] = {0, 0, 0, 0}, last = 0;
    long long slot = -1;
    for (int i = 0; i < 2; i++) {
        if (!found[i] || v[i].slot >= (uint64_t)self->max_conns)
            continue;
        slot = v[i].slot;
        uint64_t *r = &self->reported[v[i].slot][2 * i];
        d[2 * i] = v[i].packets - r[0];
        d[2 * i + 1] = v[i].bytes - r[1];
        r[0] = v[i].packets;
        r[1] = v[i].bytes;
        if (v[i].last_ns > last)
            last = v[i].last_ns;
    }
    return Py_BuildValue("KKKKKL", d[0], d[1], d[2], d[3], last, slot);
}

static PyObject *Offload_take(OffloadObject *self, PyObject *args) {
    return report(self, args, "KKKKKKK:take", 0);
}

static PyObject *Offload_uninstall(OffloadObject *self, PyObject *args) {
    return report(self, args, "KKKKKKK:uninstall", 1);
}

static PyObject *Offload_clear(OffloadObject *self, PyObject *unused) {
    (void)unused;
    struct flow_key k, next;
    int more = bpf_map_get_next_key(self->map_fd, NULL, &k) == 0;
    while (more) {
        more = bpf_map_get_next_key(self->map_fd, &k, &next) == 0;
        bpf_map_delete_elem(self->map_fd, &k);
        k = next;
    }
    self->entries = 0;
    Py_RETURN_NONE;
}

static PyObject *Offload_close(OffloadObject *self, PyObject *unused) {
    (void)unused;
    detach_all(self);
    Py_RETURN_NONE;
}

static PyObject *Offload_release(OffloadObject *self, PyObject *unused) {
    /* Leave the filters and qdiscs as they are: a successor replaced the program with its
       own on the same handle and priority, and owns the hook from now on. */
    (void)unused;
    for (int i = 0; i < self->n_ifaces; i++)
        self->attached[i] = self->created[i] = 0;
    Py_RETURN_NONE;
}

static Py_ssize_t Offload_len(OffloadObject *self) { return (Py_ssize_t)self->entries; }

static PyMethodDef Offload_methods[] = {
    {"install", (PyCFunction)Offload_install, METH_VARARGS,
     "install(proto, caddr, cport, vaddr, vport, daddr, dport, slot, in_ifindex, out_ifindex)\n"
     "Forward the connection's packets in the kernel from now on: client -> VIP rewritten\n"
     "to the real and sent out of in_ifindex, real -> client rewritten from the VIP and sent\n"
     "out of out_ifindex. Its counters start at zero."},
    {"take", (PyCFunction)Offload_take, METH_VARARGS,
     "take(proto, caddr, cport, vaddr, vport, daddr, dport) -> (in_pkts, in_bytes, out_pkts,\n"
     "out_bytes, last_ns, slot): what the kernel forwarded since the previous report, when\n"
     "it last did (CLOCK_MONOTONIC ns, 0 if never) and the slot it was installed with; zeros\n"
     "and slot -1 for a connection not installed."},
    {"uninstall", (PyCFunction)Offload_uninstall, METH_VARARGS,
     "uninstall(...) -> the same as take, and the connection's packets go to lvsd again."},
    {"clear", (PyCFunction)Offload_clear, METH_NOARGS, "Remove every connection."},
    {"close", (PyCFunction)Offload_close, METH_NOARGS,
     "Detach the program from every interface (and remove the clsact qdiscs it created)."},
    {"release", (PyCFunction)Offload_release, METH_NOARGS,
     "Forget the interfaces without detaching anything (a successor's program is there)."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Offload_as_sequence = {.sq_length = (lenfunc)Offload_len};

static PyTypeObject OffloadType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "director.dataplane._offload.Offload",
    .tp_basicsize = sizeof(OffloadObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Offload(path, max_conns, ifindexes): the tc offload program, loaded from the\n"
              "object file `path` and attached to the ingress of each interface; len() is the\n"
              "number of connections installed. Raises OSError when the kernel refuses.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Offload_init,
    .tp_dealloc = (destructor)Offload_dealloc,
    .tp_methods = Offload_methods,
    .tp_as_sequence = &Offload_as_sequence,
};

static PyObject *offload_detach(PyObject *module, PyObject *arg) {
    (void)module;
    long ifindex = PyLong_AsLong(arg);
    if (ifindex == -1 && PyErr_Occurred())
        return NULL;
    if (ifindex < 1 || ifindex > INT32_MAX)
        return PyErr_Format(PyExc_ValueError, "detach: not an interface index: %ld", ifindex);
    libbpf_set_print(quiet_print);
    DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)ifindex,
                        .attach_point = BPF_TC_INGRESS);
    DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = TC_HANDLE, .priority = TC_PRIORITY);
    return PyBool_FromLong(bpf_tc_detach(&hook, &opts) == 0);
}

static PyMethodDef module_methods[] = {
    {"detach", offload_detach, METH_O,
     "detach(ifindex) -> bool: remove lvsd's filter from the interface's ingress, if there."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef offload_module = {
    PyModuleDef_HEAD_INIT, "director.dataplane._offload",
    "libbpf loader and map editor of lvsd's tc offload program.", -1, module_methods, NULL, NULL,
    NULL, NULL};

PyMODINIT_FUNC PyInit__offload(void) {
    if (PyType_Ready(&OffloadType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&offload_module);
    if (!m)
        return NULL;
    Py_INCREF(&OffloadType);
    if (PyModule_AddObject(m, "Offload", (PyObject *)&OffloadType) < 0) {
        Py_DECREF(&OffloadType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
