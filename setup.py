"""Builds the C fast path; everything else is in pyproject.toml.

DIRECTOR_DEBUG_BUILD=1 builds with -O0 -g3 and the table's invariant checks;
DIRECTOR_ASAN=1 adds AddressSanitizer and UBSan (``make fuzz`` builds so, apart).
"""

import glob
import os

from setuptools import Extension, setup

if os.environ.get("DIRECTOR_DEBUG_BUILD") == "1":
    cflags = ["-O0", "-g3", "-UNDEBUG", "-DDIRECTOR_DEBUG=1"]
else:
    cflags = ["-O2"]
cflags += ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"]
ldflags: list[str] = []
if os.environ.get("DIRECTOR_ASAN") == "1":
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    cflags += [*sanitize, "-fno-omit-frame-pointer"]
    ldflags += sanitize

setup(
    ext_modules=[
        Extension(
            "director.dataplane._fastpath",
            sources=["director/dataplane/_fastpath.c"],
            depends=sorted(glob.glob("director/dataplane/fastpath/*.h")),
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        ),
        Extension(
            "scheduling._schedhash",
            sources=["scheduling/_schedhash.c"],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        ),
    ],
)
