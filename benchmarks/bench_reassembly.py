"""Reassembly cost per fragment as a datagram's fragment count grows: linear work shows
as a flat time per fragment.

``python -m benchmarks.bench_reassembly`` reassembles one datagram cut into N tiny
(8-byte) fragments, shuffled, for N = 1,000 to 8,000, best of 5, and prints microseconds
per fragment and the ratio of the largest to the smallest.
"""

from __future__ import annotations

import random
import struct
import time

from director.dataplane.reassembly import Reassembler

SIZES = (1000, 2000, 4000, 8000)


def fragments(n: int) -> list[bytes]:
    data = random.Random(n).randbytes(8 * n)
    out = []
    for i in range(0, len(data), 8):
        frag = ((0x2000 if i + 8 < len(data) else 0) | (i // 8)) & 0xFFFF
        hdr = struct.pack("!BBHHHBBHII", 0x45, 0, 28, 7, frag, 64, 17, 0, 1, 2)
        out.append(hdr + data[i : i + 8])
    random.Random(n + 1).shuffle(out)
    return out


def per_fragment_us(n: int) -> float:
    frags = fragments(n)
    best = float("inf")
    for _ in range(5):
        r = Reassembler(max_fragments=8192, high_thresh=1 << 30, max_dist=1 << 20)
        start = time.perf_counter()
        whole = None
        for f in frags:
            whole = r.add(f, 0)
        best = min(best, time.perf_counter() - start)
        assert whole is not None
    return best / n * 1e6


def main() -> None:
    results = {n: per_fragment_us(n) for n in SIZES}
    for n, us in results.items():
        print(f"{n:6,} fragments: {us:6.2f} us per fragment")
    print(f"ratio 8,000 / 1,000: {results[SIZES[-1]] / results[SIZES[0]]:.2f} (1.0 is linear)")


if __name__ == "__main__":
    main()
