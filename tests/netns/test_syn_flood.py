"""A spoofed SYN flood against a small table: clients that complete their handshakes get in.

    client 10.0.1.100 --br-pub-- [director: lvsd, max_connections 2000] --br-priv-- real1..3
      + flooder: raw SYNs from 10.0.1.10-99/150-249, random ports, to VIP 10.0.1.5:80

The flooder sends spoofed SYNs at up to FLOOD_RATE a second for FLOOD_S seconds (paced, one
process, as fast as this machine lets it up to that rate; the rate reached is printed).
Meanwhile a legitimate client in the same node makes one HTTP request at a time through
the VIP, ten a second, for FLOOD_S + 10 seconds. At least 95% of its requests started
during the flood must succeed, and all of those started from 5 s after it ended. Every
half-open entry of the flood is evicted in turn by the next spoofed SYN; the client's
entries leave SYN_RECV within a round trip and are never evicted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from director.config import parse_config
from director.tools.demo import LabDirector
from lab.cluster import Lab
from tests.netns.test_nanny import config

pytestmark = pytest.mark.netns

VIP = "10.0.1.5"
FLOOD_RATE = int(os.environ.get("LVSD_TEST_FLOOD_RATE", "40000"))
FLOOD_S = 15
AFTER_S = 10

FLOODER = """
import json, random, socket, struct, sys, time
rate, seconds, vip = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]

def csum(data):
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

vaddr = socket.inet_aton(vip)
hosts = [h for h in range(10, 250) if not 100 <= h < 150]
rnd = random.Random(7)
packets = []
for i in range(60000):
    saddr = bytes([10, 0, 1, hosts[i % len(hosts)]])
    sport = 1024 + rnd.randrange(60000)
    tcp = bytearray(struct.pack("!HHIIBBHHH", sport, 80, rnd.getrandbits(32), 0, 5 << 4, 2,
                                64240, 0, 0))
    struct.pack_into("!H", tcp, 16, csum(saddr + vaddr + struct.pack("!BBH", 0, 6, 20) + tcp))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xFFFF, 0, 64, 6, 0, saddr,
                               vaddr))
    struct.pack_into("!H", ip, 10, csum(bytes(ip)))
    packets.append(bytes(ip + tcp))
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
print("ready", flush=True)
sys.stdin.readline()
n, errors, start = len(packets), 0, time.monotonic()
sent = 0
while (elapsed := time.monotonic() - start) < seconds:
    due = min(int(elapsed * rate) + 1, int(seconds * rate))
    while sent < due:
        try:
            s.sendto(packets[sent % n], (vip, 0))
        except OSError:
            errors += 1
        sent += 1
    time.sleep(0.0005)
elapsed = time.monotonic() - start
print(json.dumps({"sent": sent, "seconds": round(elapsed, 2), "rate": round(sent / elapsed),
                  "errors": errors}), flush=True)
"""

CLIENT = """
import json, socket, sys, time
vip, seconds = sys.argv[1], float(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
start = time.monotonic()
results = []
while (at := time.monotonic() - start) < seconds:
    ok = False
    try:
        with socket.create_connection((vip, 80), timeout=5) as c:
            c.settimeout(5)
            c.sendall(b"GET / HTTP/1.0\\r\\nHost: vip\\r\\n\\r\\n")
            data = b""
            while chunk := c.recv(65536):
                data += chunk
            ok = data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200")
    except OSError:
        pass
    results.append((round(at, 3), ok, round(time.monotonic() - start - at, 3)))
    time.sleep(max(0.0, at + 0.1 - (time.monotonic() - start)))
print(json.dumps(results), flush=True)
"""


def test_a_spoofed_syn_flood_does_not_lock_out_a_client_that_completes_handshakes(
    lab: Lab,
) -> None:
    cfg = parse_config("max_connections = 2000\n" + config(), "lvs.cf")
    with LabDirector(lab, cfg) as director:
        pipe = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
        flooder = lab.popen(
            "client",
            [sys.executable, "-c", FLOODER, str(FLOOD_RATE), str(FLOOD_S), VIP],
            **pipe,
        )
        client = lab.popen(
            "client", [sys.executable, "-c", CLIENT, VIP, str(FLOOD_S + AFTER_S)], **pipe
        )
        try:
            for proc in (flooder, client):
                assert proc.stdout is not None
                assert proc.stdout.readline() == "ready\n"
            for proc in (flooder, client):
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            flood = json.loads(flooder.communicate(timeout=FLOOD_S + 60)[0])
            results = json.loads(client.communicate(timeout=FLOOD_S + AFTER_S + 60)[0])
        finally:
            for proc in (flooder, client):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        status = director.status()
    during = [ok for at, ok, _ in results if at < FLOOD_S]
    after = [ok for at, ok, _ in results if at >= FLOOD_S + 5]
    report = {
        "flood": flood,
        "during": f"{sum(during)}/{len(during)}",
        "after": f"{sum(after)}/{len(after)}",
        "evicted": status["evicted_half_open"],
        "table_full": status["table_full"],
        "max_handshake_s": max(took for _, _, took in results),
    }
    print(f"syn flood: {json.dumps(report)}")
    assert flood["sent"] > 0
    assert during
    assert after
    assert sum(during) >= 0.95 * len(during), report
    assert all(after), report
    assert status["evicted_half_open"] > 0, report
