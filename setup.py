"""Builds the C fast path; everything else is in pyproject.toml.

DIRECTOR_DEBUG_BUILD=1 builds with -O0 -g3 and the table's invariant checks.
"""

import glob
import os

from setuptools import Extension, setup

if os.environ.get("DIRECTOR_DEBUG_BUILD") == "1":
    cflags = ["-O0", "-g3", "-UNDEBUG", "-DDIRECTOR_DEBUG=1"]
else:
    cflags = ["-O2"]
cflags += ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"]

setup(
    ext_modules=[
        Extension(
            "director.dataplane._fastpath",
            sources=["director/dataplane/_fastpath.c"],
            depends=sorted(glob.glob("director/dataplane/fastpath/*.h")),
            extra_compile_args=cflags,
        ),
        Extension(
            "scheduling._schedhash",
            sources=["scheduling/_schedhash.c"],
            extra_compile_args=cflags,
        ),
    ],
)
