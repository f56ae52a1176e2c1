"""The operator's console in a real browser: headless Chromium on the lab's director.

    client 10.0.1.100 --br-pub-- [director: lvsd, console on 127.0.0.1:9561 + chromium]
      (loadgen)                    VIP 10.0.1.5 --br-priv-- real1 .10, real2 .11, real3 .12

Chromium runs in the director's namespace (the console listens on its loopback) and is
driven over the DevTools protocol (``tests/netns/browser.py``). The client keeps
traffic flowing through the VIP throughout. Screenshots are kept under a temporary
directory whose path the test prints. Every wait is a bounded poll of the DOM or of
``lvsadm -L -n``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from director.config import parse_config
from director.tools.demo import LabDirector
from lab.cluster import Lab, namespace_pids
from tests.netns.browser import Chromium, require_chromium
from tests.netns.conftest import LabFactory

pytestmark = pytest.mark.netns

VIP = "10.0.1.5"
REALS = {"real1": "192.168.1.10", "real2": "192.168.1.11", "real3": "192.168.1.12"}
SERVICES = (f"TCP {VIP}:80", f"TCP {VIP}:8080")
TIMEOUT, INTERVAL = 2, 2
CONSOLE = "http://127.0.0.1:9561/"
TOKEN = "console-token-of-the-lab-0123456789"
# A scheme's URL, or a protocol-relative one in an attribute or a CSS url().
EXTERNAL = re.compile(
    rb"(?i)\b[a-z][a-z0-9+.-]*://|(?:src|href|action)\s*=\s*['\"]?//|url\(\s*['\"]?//"
)
LVSADM = (sys.executable, "-m", "director.ops.lvsadm")
LOADGEN = (sys.executable, "-m", "lab.loadgen", "--timeout", "2")
_artefacts: list[Path] = []


def artefacts() -> Path:
    """The directory of this run's screenshots, made at the first one."""
    if not _artefacts:
        _artefacts.append(Path(tempfile.mkdtemp(prefix="lvsd-console-screens-")))
    return _artefacts[0]


def config(token_file: Path | None = None) -> str:
    reals = "".join(
        f"    server {name} {{\n        address = {addr}\n        port = 80\n"
        f"        weight = {w}\n    }}\n"
        for w, (name, addr) in enumerate(REALS.items(), start=1)
    )
    token = f"console_token_file = {token_file}\n" if token_file else ""
    virtuals = "".join(
        f"virtual {name} {{\n    address = {VIP}\n    port = {port}\n    scheduler = wrr\n"
        f"    timeout = {TIMEOUT}\n    probe_interval = {INTERVAL}\n    reentry = 4\n"
        f"    http_path = /stats\n{reals}}}\n"
        for name, port in (("web", 80), ("alt", 8080))
    )
    return (
        f"primary = 10.0.1.1\nnetwork = nat\nnat_router = 192.168.1.254 eth1:1\n{token}{virtuals}"
    )


def lvsadm_weights(director: LabDirector, service: str = SERVICES[0]) -> dict[str, int]:
    """real:port -> weight as ``lvsadm -L -n`` prints them under ``service``."""
    done = subprocess.run(
        [*LVSADM, "--socket", str(director.socket_path), "-L", "-n"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    lines = done.stdout.splitlines()
    proto, addr = service.split()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == [proto, addr])
    out = {}
    for line in lines[start + 1 :]:
        if not line.startswith("  ->"):
            break
        out[line.split()[1]] = int(line.split()[3])
    return out


def stop_http(lab: Lab, real: str) -> None:
    """Kill ``real``'s lab HTTP server (the health probe's target)."""
    for pid in namespace_pids(lab.ns(real)):
        if b"lab.server" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)


def wait_probed_up(director: LabDirector, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        health = director.status()["health"]
        if health and all(h["health"] == "up" for h in health):
            return
        assert time.monotonic() < deadline, f"not all up within {within}s: {health}"
        time.sleep(0.1)


@pytest.fixture
def traffic_lab(lab_factory: LabFactory) -> Iterator[tuple[Lab, subprocess.Popen[bytes]]]:
    """The lab, with the client sending requests to the VIP until the test ends."""
    lab = lab_factory(reals=3)
    load = lab.popen(
        "client",
        [
            *LOADGEN,
            f"http://{VIP}/",
            "--count",
            "200000",
            "--concurrency",
            "2",
            "--deadline",
            "240",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield lab, load
    finally:
        load.kill()
        load.wait(timeout=30)


def start(lab: Lab, token_file: Path | None = None) -> LabDirector:
    cfg = parse_config(config(token_file), "console-lvs.cf")
    director = LabDirector(lab, cfg).start()
    wait_probed_up(director, within=30)
    return director


@pytest.fixture
def browser_in(request: pytest.FixtureRequest) -> Iterator[list[Chromium]]:
    require_chromium()
    browsers: list[Chromium] = []
    yield browsers
    for b in browsers:
        b.close()


def open_console(lab: Lab, browsers: list[Chromium], width: int = 1280) -> Chromium:
    browser = Chromium(lab, "director", width=width)
    browsers.append(browser)
    browser.navigate(CONSOLE)
    return browser


ROWS = """[...document.querySelectorAll('tr[data-real]')].map(tr => ({
  service: tr.dataset.service, real: tr.dataset.real,
  weight: tr.querySelector('.weight').textContent,
  health: tr.querySelector('.health').textContent}))"""


def rows(browser: Chromium) -> list[dict[str, str]]:
    value: list[dict[str, str]] = browser.evaluate(ROWS)
    return value


def row(browser: Chromium, service: str, real: str) -> str:
    return f'document.querySelector(\'tr[data-service="{service}"][data-real="{real}"]\')'


def shot(browser: Chromium, name: str) -> Path:
    path = browser.screenshot(artefacts() / name)
    print(f"screenshot: {path}")
    return path


def test_the_page_shows_every_service_and_real_and_a_stopped_real_turns_down(
    traffic_lab: tuple[Lab, subprocess.Popen[bytes]], browser_in: list[Chromium]
) -> None:
    lab, load = traffic_lab
    director = start(lab)
    try:
        browser = open_console(lab, browser_in)
        every = len(SERVICES) * len(REALS)
        browser.wait_for(
            f"document.querySelectorAll('tr[data-real] .health.up').length === {every}", 30
        )
        seen = rows(browser)
        for service in SERVICES:
            weights = lvsadm_weights(director, service)
            assert browser.evaluate(
                f"!!document.querySelector('section[data-service=\"{service}\"] h3')"
            )
            for addr in REALS.values():
                [r] = [x for x in seen if x["service"] == service and x["real"] == f"{addr}:80"]
                assert r["weight"] == str(weights[f"{addr}:80"]), (service, r)
                assert r["health"] == "up", (service, r)
        text = browser.evaluate("document.body.innerText")
        assert "scheduler wrr" in text
        assert "Fast path" in text
        assert director.status()["fastpath"] in text
        # Traffic is flowing and the page shows it: the web service has counted connections.
        browser.wait_for(
            "document.querySelector('section[data-service=\"TCP 10.0.1.5:80\"] p.meta')"
            ".textContent.match(/(\\d+) connections/)[1] > 0",
            30,
        )
        assert load.poll() is None, "the client's load ended early"
        shot(browser, "console-all-up.png")

        stop_http(lab, "real2")
        stopped = time.monotonic()
        real2 = f"{REALS['real2']}:80"
        # nanny declares it down within timeout + interval of its stop (docs/nanny.md); the
        # page polls every two seconds, which is the probe interval here: it must show
        # the verdict within one interval of nanny's. Both are polled in one bounded loop.
        shown = f"{row(browser, SERVICES[0], real2)}.querySelector('.health').textContent"
        at_director = on_page = None
        deadline = stopped + 60
        while on_page is None or at_director is None:
            assert time.monotonic() < deadline, (at_director, on_page, browser.evaluate(shown))
            now = time.monotonic()
            if at_director is None and any(
                h["target"].endswith(real2) and h["health"] == "down"
                for h in director.status()["health"]
            ):
                at_director = now
            if on_page is None and browser.evaluate(f"{shown}.startsWith('down')"):
                on_page = now
            time.sleep(0.05)
        print(
            f"real2 stopped; nanny's verdict down after {at_director - stopped:.1f}s, the "
            f"page showed it after {on_page - stopped:.1f}s: {on_page - at_director:.1f}s "
            f"later (probe interval {INTERVAL}s, timeout {TIMEOUT}s, page poll 2s)"
        )
        # The page never shows down before lvsd decided it; within the interval is a figure
        # printed above, not asserted (a loaded machine delays a poll).
        assert on_page >= at_director - 0.1
        assert real2 not in lvsadm_weights(director) or lvsadm_weights(director)[real2] == 0
        shot(browser, "console-real2-down.png")

        # A narrow screen: the same page, laid out for a phone.
        browser.viewport(390, 844, mobile=True)
        browser.wait_for("document.body.dataset.updated > 0", 10)
        assert browser.evaluate("document.documentElement.scrollWidth <= 400")
        shot(browser, "console-narrow.png")

        # Read-only by default: the page offers no action, and one sent anyway is refused.
        assert browser.evaluate("document.getElementById('auth').hidden")
        assert not browser.evaluate("document.querySelector('button.drain')")
        real1 = f"{REALS['real1']}:80"
        before = lvsadm_weights(director)[real1]
        answer = browser.evaluate(
            "window.lvsdAction({action: 'drain', service: 'TCP 10.0.1.5:80', real: '"
            + real1
            + "'})"
        )
        assert answer["status"] == 403, answer
        assert "actions are off" in answer["message"], answer
        assert lvsadm_weights(director)[real1] == before

        # Nothing served names an outside address: the page loaded its own files only.
        resources = browser.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
        assert resources
        assert all(r.startswith(CONSOLE) for r in resources), resources
        for path in ("/", "/console.css", "/console.js", "/console/state"):
            conn = lab.http("director", "127.0.0.1", 9561)
            try:
                conn.request("GET", path)
                body = conn.getresponse().read()
            finally:
                conn.close()
            assert body, path
            assert not EXTERNAL.search(body), (path, EXTERNAL.search(body))
    finally:
        director.stop()


def test_with_a_token_the_page_drains_a_real_and_a_cross_site_post_is_refused(
    traffic_lab: tuple[Lab, subprocess.Popen[bytes]], browser_in: list[Chromium]
) -> None:
    lab, _load = traffic_lab
    token_file = Path(tempfile.mkdtemp(prefix="lvsd-console-token-")) / "console.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    director = start(lab, token_file)
    try:
        browser = open_console(lab, browser_in)
        real1, real2 = f"{REALS['real1']}:80", f"{REALS['real2']}:80"
        browser.wait_for("!document.getElementById('auth').hidden", 30)
        browser.wait_for(f"!!{row(browser, SERVICES[0], real1)}?.querySelector('button.drain')", 30)
        assert lvsadm_weights(director)[real1] == 1

        # Without the token the page's own request is refused, and nothing changes.
        browser.evaluate(
            f"{row(browser, SERVICES[0], real1)}.querySelector('button.drain').click()"
        )
        browser.wait_for("document.getElementById('message').textContent.startsWith('Refused')", 10)
        assert "token" in browser.evaluate("document.getElementById('message').textContent")
        assert lvsadm_weights(director)[real1] == 1

        # The operator types the token, then drains real1 with the keyboard.
        browser.evaluate(
            f"document.getElementById('token').value = {json.dumps(TOKEN)};"
            "document.getElementById('token-form').requestSubmit()"
        )
        browser.evaluate(
            f"{row(browser, SERVICES[0], real1)}.querySelector('button.drain').focus()"
        )
        browser.send(
            "Input.dispatchKeyEvent",
            {
                "type": "keyDown",
                "key": "Enter",
                "code": "Enter",
                "windowsVirtualKeyCode": 13,
                "text": "\r",
            },
        )
        browser.send(
            "Input.dispatchKeyEvent",
            {"type": "keyUp", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13},
        )
        browser.wait_for("document.getElementById('message').textContent.startsWith('Done')", 10)
        deadline = time.monotonic() + 10
        while lvsadm_weights(director)[real1] != 0:
            assert time.monotonic() < deadline, lvsadm_weights(director)
            time.sleep(0.1)
        browser.wait_for(
            f"{row(browser, SERVICES[0], real1)}.querySelector('.weight').textContent === '0'", 10
        )
        # The page re-rendered the row and kept the keyboard focus on the same button.
        assert browser.evaluate("document.activeElement.dataset.key") == (
            f"drain {real1} of {SERVICES[0]}"
        )
        assert "drained 192.168.1.10:80 of TCP 10.0.1.5:80" in director.log()
        assert "from 127.0.0.1:" in director.log()
        shot(browser, "console-drained.png")

        # A cross-site form post (the classic JSON-in-text/plain forgery) from another
        # origin is refused even though the token exists; real2 keeps its weight.
        form = (
            "<form method=post enctype=text/plain action='" + CONSOLE + "console/action'>"
            '<input name=\'{"action":"drain","service":"TCP 10.0.1.5:80",'
            f'"real":"{real2}","x":"\' value=\'"}}\'></form>'
            "<script>document.forms[0].submit()</script>"
        )
        browser.navigate("data:text/html," + form)
        browser.wait_for("location.href.startsWith('" + CONSOLE + "')", 10)
        browser.wait_for("document.readyState === 'complete'", 10)
        answer = browser.evaluate("document.body.innerText")
        assert "refused" in answer, answer
        assert lvsadm_weights(director)[real2] == 2
        assert "cross-site request refused" in director.log()
    finally:
        director.stop()
