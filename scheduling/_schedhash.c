/* The kernel hashes mh needs, in C: hsiphash of a u32 (SipHash-1-3 with 64-bit key
 * words, as lib/siphash.c builds it on 64-bit machines) and hash_32 (include/linux/hash.h).
 * scheduling/hashing.py holds the same functions in Python: the specification, the
 * fallback when this module is not built, and the test oracle.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                   \
    do {                                                                           \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                  \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                     \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                     \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                  \
    } while (0)

static uint32_t hsiphash_u32(uint64_t k0, uint64_t k1, uint32_t value)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    /* 4 message bytes, little-endian, with the length in the top byte */
    uint64_t b = ((uint64_t)4 << 56) | value;

    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return (uint32_t)((v0 ^ v1) ^ (v2 ^ v3));
}

static PyObject *py_hsiphash_u32(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "hsiphash_u32() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    uint64_t k0 = PyLong_AsUnsignedLongLongMask(args[0]);
    uint64_t k1 = PyLong_AsUnsignedLongLongMask(args[1]);
    uint64_t value = PyLong_AsUnsignedLongLongMask(args[2]);
    if (PyErr_Occurred())
        return NULL;
    return PyLong_FromUnsignedLong(hsiphash_u32(k0, k1, (uint32_t)value));
}

static PyObject *py_hash_32(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "hash_32() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    uint64_t val = PyLong_AsUnsignedLongLongMask(args[0]);
    long bits = PyLong_AsLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (bits < 1 || bits > 32) {
        PyErr_Format(PyExc_ValueError, "hash_32: bits must be 1..32, got %ld", bits);
        return NULL;
    }
    uint32_t h = (uint32_t)val * 0x61C88647u;
    return PyLong_FromUnsignedLong(h >> (32 - bits));
}

static PyMethodDef methods[] = {
    {"hsiphash_u32", (PyCFunction)(void (*)(void))py_hsiphash_u32, METH_FASTCALL,
     "hsiphash_u32(key0, key1, value) -> int: SipHash-1-3 of the u32's 4 LE bytes, low 32 bits"},
    {"hash_32", (PyCFunction)(void (*)(void))py_hash_32, METH_FASTCALL,
     "hash_32(val, bits) -> int: ((val * 0x61C88647) mod 2**32) >> (32 - bits)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "scheduling._schedhash", "mh's hashes in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__schedhash(void) { return PyModule_Create(&module); }
