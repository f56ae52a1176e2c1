"""The fuzz targets; ``python -m fuzz.targets NAME [libFuzzer args]`` runs one.

With ``LVSD_FUZZ_ASAN_LIB`` set to a directory holding an AddressSanitizer build of the
C extension (``make fuzz`` builds one into build/asan), that build is the one loaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import atheris


def _load_asan_build() -> None:
    lib = os.environ.get("LVSD_FUZZ_ASAN_LIB")
    if not lib:
        return
    [so] = Path(lib, "director", "dataplane").glob("_fastpath.*.so")
    spec = importlib.util.spec_from_file_location("director.dataplane._fastpath", so)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["director.dataplane._fastpath"] = module
    spec.loader.exec_module(module)


_load_asan_build()

with atheris.instrument_imports(include=["director", "healthcheck", "scheduling"]):
    from director.config import format_config, parse_config
    from director.dataplane import _fastpath_py
    from director.dataplane.reassembly import Reassembler
    from director.errors import ConfigError
    from director.ipvs.estimator import RateEstimator
    from director.ipvs.service import IPVS
    from director.ops.admin import Admin
    from director.ops.control import ControlServer, Sliced

# After the ASan load, which it then finds in sys.modules.
_fastpath_c = importlib.import_module("director.dataplane._fastpath")
from tests.unit.dataplane.fastpath_ref import standard_table  # noqa: E402
from tests.vectors.nat_vectors import CONNECTIONS, VECTORS, ip4  # noqa: E402

NOW = 1000


def _state(t: object) -> tuple[object, ...]:
    table: ModuleType = t  # type: ignore[assignment]
    return (len(table), table.drops(), table.evictions(), table.entries(1 << 12))


_TABLES: list[object] = []


def _tables() -> list[object]:
    """The two standard tables, emptied and refilled with the vectors' connections: as
    a fresh pair would be, bar counters, which grow alike on both."""
    if not _TABLES:
        _TABLES.extend([standard_table(_fastpath_c, NOW), standard_table(_fastpath_py, NOW)])
        return _TABLES
    for t in _TABLES:
        table: ModuleType = t  # type: ignore[assignment]
        table.flush()
        for c in CONNECTIONS:
            args = (ip4(c.caddr), c.cport, ip4(c.vaddr), c.vport, ip4(c.daddr), c.dport)
            table.insert(c.proto, *args, c.dest, NOW)
    return _TABLES


def fastpath(data: bytes) -> None:
    """One or more packets through both fast paths, which must agree on everything."""
    if not data:
        return
    tables: list[ModuleType] = _tables()  # type: ignore[assignment]
    # First byte: which entry point, then packets separated by a 0xA5 0x5A marker.
    vnet = data[0] & 1
    for i, pkt in enumerate(data[1:].split(b"\xa5\x5a")[:8]):
        results = []
        for t in tables:
            buf = bytearray(pkt)
            verdict = t.process_vnet(buf, NOW + i) if vnet else t.process(buf, NOW + i)
            results.append((verdict, bytes(buf)))
        if results[0] != results[1]:
            raise AssertionError(f"C and Python disagree on {pkt.hex()}: {results}")
        if results[0][0] == _fastpath_py.NEW and pkt[9:10] == b"\x06":
            # Make it a connection on both, as the director would, and go on.
            for t in tables:
                h = t.insert(6, 1, 2, 3, 4, 5, 6, 0, NOW + i)
                t.set_state(h, 3, NOW + i)
    for t in tables:
        t.expire(NOW + 10**6)
    if _state(tables[0]) != _state(tables[1]):
        raise AssertionError(f"tables differ: {_state(tables[0])} != {_state(tables[1])}")


def reassembly(data: bytes) -> None:
    """Fragments (length-prefixed) into a small reassembler: no exception, sane output."""
    r = Reassembler(max_datagrams=8, high_thresh=8192, low_thresh=4096, max_fragments=64)
    at, now = 0, 0
    while at + 2 <= len(data):
        n = int.from_bytes(data[at : at + 2], "big") % 1600
        frag = data[at + 2 : at + 2 + n]
        at += 2 + n
        now += frag[-1] if frag else 1
        whole = r.add(frag, now)
        if whole is not None:
            assert 20 <= len(whole) <= 65535
            assert int.from_bytes(whole[2:4], "big") == len(whole)
            assert int.from_bytes(whole[6:8], "big") & 0x3FFF == 0
        stats = r.statistics()
        assert stats.memory >= 0
        assert stats.pending <= 8


def config(data: bytes) -> None:
    """lvs.cf text: a ConfigError or a model that prints and parses back equal."""
    text = data.decode("utf-8", errors="replace")
    try:
        cfg = parse_config(text, "fuzz.cf")
    except ConfigError:
        return
    again = parse_config(format_config(cfg), "formatted.cf")
    if again != cfg:
        raise AssertionError(f"round trip changed the model:\n{text!r}")


class _Target:
    def snapshot(self) -> dict[str, object]:
        return {}


_SERVER: ControlServer | None = None


def _server() -> ControlServer:
    global _SERVER
    if _SERVER is None:
        ipvs = IPVS(_fastpath_py.ConnTable(64))
        admin = Admin(ipvs, RateEstimator(), lambda: 0, (900, 120, 300), 60)
        path = Path(tempfile.mkdtemp(prefix="lvsd-fuzz-")) / "s"
        _SERVER = ControlServer(path, _Target(), commands=admin.commands())
    return _SERVER


_KEYS = [
    "proto", "addr", "port", "fwmark", "scheduler", "flags", "persistent", "netmask",
    "daddr", "dport", "weight", "u_threshold", "l_threshold", "tcp", "tcpfin", "udp",
    "vaddr", "vport", "protocol",
]  # fmt: skip


def _value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> object:
    kind = fdp.ConsumeIntInRange(0, 7)
    if kind == 0:
        return fdp.ConsumeInt(8)
    if kind == 1:
        return fdp.ConsumeUnicodeNoSurrogates(24)
    if kind == 2:
        return fdp.PickValueInList(["10.0.0.1", "192.168.1.10", "tcp", "udp", "rr", "wlc"])
    if kind == 3:
        return fdp.ConsumeBool()
    if kind == 4:
        return None
    if kind == 5:
        return fdp.ConsumeRegularFloat()
    if kind == 6 and depth < 3:
        return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    if depth < 3:
        return {fdp.PickValueInList(_KEYS): _value(fdp, depth + 1)}
    return 0


def control(data: bytes) -> None:
    """A request line: an answer (a refusal at worst), never an exception; the answer
    must encode as JSON. Half the inputs are raw lines; the other half requests with a
    known command and typed, mistyped or missing arguments."""
    server = _server()
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        line = fdp.ConsumeBytes(len(data)).split(b"\n", 1)[0]
    else:
        req: dict[str, object] = {"cmd": fdp.PickValueInList(sorted(server._commands))}
        for _ in range(fdp.ConsumeIntInRange(0, 8)):
            req[fdp.PickValueInList(_KEYS)] = _value(fdp)
        line = json.dumps(req).encode()
    answer = server._answer(line)
    if isinstance(answer, Sliced):
        list(answer.items)
    else:
        json.dumps(answer)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "fastpath": fastpath,
    "reassembly": reassembly,
    "config": config,
    "control": control,
}


def seeds(name: str) -> list[bytes]:
    """A starting corpus: the golden packets, a real lvs.cf, real requests."""
    if name == "fastpath":
        return [bytes([int(v.vnet)]) + v.before for v in VECTORS]
    if name == "config":
        root = Path(__file__).resolve().parents[1]
        return [p.read_bytes() for p in sorted((root / "examples").glob("*.cf"))]
    if name == "control":
        return [
            b'{"cmd": "list"}',
            b'{"cmd": "add_service", "protocol": "tcp", "vaddr": "10.0.0.1", "vport": 80}',
            b'{"cmd": "add_dest", "protocol": "tcp", "vaddr": "10.0.0.1", "vport": 80, '
            b'"daddr": "192.168.1.10", "dport": 80, "weight": 1}',
            b'{"cmd": "connections"}',
            b'{"cmd": "set_timeouts", "tcp": 1, "tcpfin": 2, "udp": 3}',
        ]
    return [b"\x00\x1c" + bytes(28)]


def main() -> None:
    """NAME [libFuzzer flags] [FILE...]: fuzz NAME from its corpus, or replay FILEs."""
    name, rest = sys.argv[1], sys.argv[2:]
    if not any(not a.startswith("-") for a in rest):
        corpus = Path(os.environ.get("LVSD_FUZZ_CORPUS", "build/fuzz-corpus")) / name
        corpus.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seeds(name)):
            (corpus / f"seed-{i}").write_bytes(seed)
        rest.append(str(corpus))
    atheris.Setup([sys.argv[0], *rest], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
