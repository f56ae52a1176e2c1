"""Builds the C fast path; everything else is in pyproject.toml.

DIRECTOR_DEBUG_BUILD=1 builds with -O0 -g3 and the table's invariant checks;
DIRECTOR_ASAN=1 adds AddressSanitizer and UBSan (``make fuzz`` builds so, apart).
Where clang and libbpf's headers are installed (the bootstrap installs them), the kernel
offload is built too: the tc program (offload.bpf.c, compiled for the BPF target beside the
extensions) and its libbpf loader (_offload.c); without them lvsd runs the TUN path alone.
"""

import glob
import os
import shutil
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

BPF_SOURCE = "director/dataplane/offload.bpf.c"
OFFLOAD = os.path.exists("/usr/include/bpf/libbpf.h") and shutil.which("clang") is not None


class BuildExt(build_ext):
    """build_ext that also compiles the BPF object next to the offload loader."""

    def run(self) -> None:
        super().run()
        if not OFFLOAD:
            return
        out = os.path.join(
            os.path.dirname(self.get_ext_fullpath("director.dataplane._offload")),
            "offload.bpf.o",
        )
        arch = os.uname().machine.replace("x86_64", "x86_64-linux-gnu")
        cmd = ["clang", "-O2", "-g", "-target", "bpf", f"-I/usr/include/{arch}"]
        cmd += ["-Wall", "-Werror", "-c", BPF_SOURCE, "-o", out]
        subprocess.run(cmd, check=True)


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

offload = [
    Extension(
        "director.dataplane._offload",
        sources=["director/dataplane/_offload.c"],
        extra_compile_args=cflags,
        extra_link_args=[*ldflags, "-lbpf"],
    )
]
setup(
    cmdclass={"build_ext": BuildExt},
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
        *(offload if OFFLOAD else []),
    ],
)
