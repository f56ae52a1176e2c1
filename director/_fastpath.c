/* Placeholder until the connection table lands. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT, "director._fastpath", "lvsd's C fast path.", -1, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void) { return PyModule_Create(&fastpath_module); }
