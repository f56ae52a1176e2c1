"""Headless Chromium in a lab node, driven over the DevTools protocol on a pipe.

Debian's ``chromium`` runs inside the node's namespace (``ip netns exec``) with
``--remote-debugging-pipe``: commands go in on its fd 3 and answers come out of its
fd 4, NUL-terminated JSON, so the test drives a browser that sees the lab's addresses
while the test itself stays in the root namespace. Every read is bounded by a deadline;
``close()`` asks the browser to quit, then kills it by PID.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from lab.cluster import Lab

CHROMIUM = "/usr/bin/chromium"
REPLY_TIMEOUT_S = 30.0


class BrowserError(Exception):
    """The browser answered with an error, a script threw, or it did not answer in time."""


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (./bootstrap install adds it)")


class Chromium:
    """One headless browser with one page, in ``node`` of ``lab``."""

    def __init__(self, lab: Lab, node: str, width: int = 1280, height: int = 900) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="lvsd-chromium-"))
        to_browser, self._in = os.pipe()
        self._out, from_browser = os.pipe()
        argv = [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",  # as root
            "--remote-debugging-pipe",
            f"--user-data-dir={self.dir / 'profile'}",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        shell = f'exec "$@" 3<&{to_browser} 4>&{from_browser}'
        self.log_path = self.dir / "chromium.log"
        with self.log_path.open("wb") as log:
            self.proc = lab.popen(
                node,
                ["bash", "-c", shell, "bash", *argv],  # dash takes single-digit fds only
                pass_fds=(to_browser, from_browser),
                start_new_session=True,  # the browser's helpers share its process group
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        os.close(to_browser)
        os.close(from_browser)
        self._next_id = 0
        self._buffer = b""
        self._session: str | None = None
        try:
            target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
            self._session = attached["sessionId"]
            self.send("Page.enable")
            self.send("Runtime.enable")
        except BaseException:
            self.close()
            raise

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One DevTools command (on the page once attached); its result."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self._session is not None and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self._session
        os.write(self._in, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise BrowserError(f"{method}: {reply['error']}")
                    result: dict[str, Any] = reply.get("result", {})
                    return result
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"{method}: no answer within {REPLY_TIMEOUT_S}s")
            ready, _, _ = select.select([self._out], [], [], left)
            if ready:
                chunk = os.read(self._out, 1 << 16)
                if not chunk:
                    raise BrowserError(f"{method}: the browser exited: {self.log()[-2000:]}")
                self._buffer += chunk

    def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` in the page (a promise is awaited)."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url: str, within: float = 30.0) -> None:
        """Open ``url`` and wait, bounded, until its document is loaded."""
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'", within)

    def wait_for(self, expression: str, within: float, poll: float = 0.1) -> float:
        """Poll until ``expression`` is truthy in the page; how long it took. Fails after
        ``within`` seconds."""
        start = time.monotonic()
        while True:
            try:
                if self.evaluate(expression):
                    return time.monotonic() - start
            except BrowserError:
                pass  # a navigation in progress has no context yet
            if time.monotonic() - start > within:
                raise BrowserError(f"not within {within}s: {expression}")
            time.sleep(poll)

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    def screenshot(self, path: Path) -> Path:
        """The whole page as a PNG at ``path``."""
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        try:
            self._session = None
            self.send("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        # Its helpers (zygote, renderer) are in the session the browser led.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        os.close(self._in)
        os.close(self._out)
        shutil.rmtree(self.dir / "profile", ignore_errors=True)
