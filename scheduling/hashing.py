"""The kernel's hash functions that IPVS schedulers use: hash_32 and (h)siphash.

``hash_32`` is include/linux/hash.h (multiply by 0x61C88647, keep the high bits).
``siphash`` is SipHash-c-d with 64-bit key words (lib/siphash.c); ``hsiphash_u32`` is
the kernel's ``hsiphash(&u32, 4, key)`` on a 64-bit little-endian machine, which is
SipHash-1-3 over the four bytes of the value, truncated to 32 bits (ip_vs_mh.c).
``hsiphash_u32`` comes from the C module ``_schedhash`` when it is built (and
DIRECTOR_NO_EXTENSIONS is not "1"); ``IMPLEMENTATION`` says which ("c" or "py").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

GOLDEN_RATIO_32: Final = 0x61C88647
_M32: Final = 0xFFFFFFFF
_M64: Final = 0xFFFFFFFFFFFFFFFF

SIPHASH_CONST: Final = (
    0x736F6D6570736575,
    0x646F72616E646F6D,
    0x6C7967656E657261,
    0x7465646279746573,
)


def hash_32(val: int, bits: int) -> int:
    """The generic ``hash_32``: ``((val * 0x61C88647) mod 2**32) >> (32 - bits)``."""
    return ((val * GOLDEN_RATIO_32) & _M32) >> (32 - bits)


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M64


def _sipround(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _M64
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _M64
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _M64
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _M64
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash(c_rounds: int, d_rounds: int, key0: int, key1: int, data: bytes) -> int:
    """SipHash-c-d of ``data`` with the 64-bit key words ``key0``, ``key1``; a 64-bit result.

    The reference algorithm, written for clarity (the specification and test oracle);
    ``hsiphash_u32`` is the fast path for the one case the schedulers need.
    """
    v0 = SIPHASH_CONST[0] ^ key0
    v1 = SIPHASH_CONST[1] ^ key1
    v2 = SIPHASH_CONST[2] ^ key0
    v3 = SIPHASH_CONST[3] ^ key1
    full = len(data) - len(data) % 8
    for i in range(0, full, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v3 ^= m
        for _ in range(c_rounds):
            v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
        v0 ^= m
    b = ((len(data) & 0xFF) << 56) | int.from_bytes(data[full:], "little")
    v3 ^= b
    for _ in range(c_rounds):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0 ^= b
    v2 ^= 0xFF
    for _ in range(d_rounds):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def hsiphash_u32_py(key0: int, key1: int, value: int) -> int:
    """``hsiphash(&value, 4, key)`` of a 64-bit kernel: SipHash-1-3, low 32 bits.

    ``value`` is a u32 whose four bytes are hashed in little-endian order. The C
    module's ``hsiphash_u32`` is the fast path; this is its reference and fallback.
    """
    data = (value & 0xFFFFFFFF).to_bytes(4, "little")
    return siphash(1, 3, key0, key1, data) & 0xFFFFFFFF


hsiphash_u32: Callable[[int, int, int], int]
IMPLEMENTATION: str
try:
    if os.environ.get("DIRECTOR_NO_EXTENSIONS") == "1":
        raise ImportError("DIRECTOR_NO_EXTENSIONS=1")
    from scheduling._schedhash import hsiphash_u32 as _hsiphash_u32_c
except ImportError:
    hsiphash_u32 = hsiphash_u32_py
    IMPLEMENTATION = "py"
else:
    hsiphash_u32 = _hsiphash_u32_c
    IMPLEMENTATION = "c"
