"""The operator's console: a live status page and its actions, on the metrics listener.

``http://<metrics_address>/`` serves a self-contained page (``console_assets/``: HTML,
CSS and script, no external URL) that polls ``/console/state`` every two seconds: every
virtual service with its scheduler and flags, every real server with its weight, its
health and the probe's reason, active and inactive connections and rates with sparklines
over the last minutes (sampled here every ``SAMPLE_S`` seconds, ``HISTORY`` samples
kept), failover (role, peer, sync lag, heartbeat loss), drops by reason, the fast path
and the table's fill. The state is built at most once per ``STATE_CACHE_S`` whatever the
number of open pages, so pollers cost the packet loop one listing a second at most.

Actions (drain, set a weight, take a real out or put it back, zero counters, reload) are
``POST /console/action`` with a JSON body and go through the control socket's own
handlers (``Admin.commands()``), as ``lvsadm`` does; reload is the daemon's SIGHUP path.
They are off unless lvs.cf names a ``console_token_file``; then a request must carry the
token in the ``X-LVSD-Token`` header (never a cookie, so a browser cannot send it on a
forged request), a JSON content type (a cross-site form cannot send one without a
preflight, which is never answered), and, when the browser says where it comes from, an
``Origin`` equal to this listener's and ``Sec-Fetch-Site: same-origin``. Every action
and every refusal is logged with the client's address. Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from director.errors import ConfigError, DirectorError
from director.ops.scrape import Observed

log = logging.getLogger(__name__)

SAMPLE_S = 2.0
HISTORY = 300  # ten minutes of samples
STATE_CACHE_S = 1.0
MAX_BODY = 4096
TOKEN_HEADER = b"x-lvsd-token"
ROLE_NAMES = {0: "INIT", 1: "BACKUP", 2: "MASTER", 3: "FAULT"}
ACTIONS = ("drain", "weight", "out", "back", "zero", "reload")
ASSETS = {
    b"/": ("console.html", b"text/html; charset=utf-8"),
    b"/console.css": ("console.css", b"text/css; charset=utf-8"),
    b"/console.js": ("console.js", b"text/javascript; charset=utf-8"),
}
# The page loads only its own files and talks only to this listener.
_SECURITY_HEADERS = (
    b"Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "
    b"img-src 'self'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; "
    b"base-uri 'none'\r\n"
    b"X-Content-Type-Options: nosniff\r\n"
    b"Referrer-Policy: no-referrer\r\n"
    b"Cache-Control: no-store\r\n"
)
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    409: b"Conflict",
    413: b"Payload Too Large",
    415: b"Unsupported Media Type",
}


class Refused(Exception):
    """An action the console will not run: HTTP status and the reason shown to the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def read_token(path: Path | None) -> bytes | None:
    """The token in ``path`` (surrounding whitespace stripped), None without a path.

    Raises ConfigError naming the file when it is unreadable or shorter than 16 bytes.
    """
    if path is None:
        return None
    try:
        token = path.read_bytes().strip()
    except OSError as e:
        raise ConfigError(f"console_token_file {path}: {e.strerror}") from None
    if len(token) < 16:
        raise ConfigError(f"console_token_file {path}: the token must be 16 bytes or more")
    return token


def assets() -> dict[str, bytes]:
    """Every file the console serves, by name (the package data ``console_assets/``)."""
    root = resources.files("director.ops") / "console_assets"
    return {name: (root / name).read_bytes() for name, _ in ASSETS.values()}


def _headers(head: bytes) -> tuple[bytes, bytes, dict[bytes, bytes]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split()
    method = parts[0] if parts else b""
    path = parts[1].split(b"?", 1)[0] if len(parts) >= 2 else b""
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return method, path, headers


class Console:
    """Serves the page, its state and its actions for one director.

    ``director`` is read as metrics reads it; ``commands`` are the control socket's
    handlers (``Admin.commands()``); ``reload`` re-reads lvs.cf as SIGHUP does;
    ``token`` enables the actions (None: read-only).
    """

    def __init__(
        self,
        director: Observed,
        commands: Mapping[str, Callable[[Mapping[str, Any]], object]],
        reload: Callable[[], None],
        token: bytes | None = None,
    ) -> None:
        self._director = director
        self._commands = commands
        self._reload = reload
        self._token = token
        self._assets = assets()
        self._history: dict[str, deque[tuple[float, int, int, int, int]]] = {}
        self._notes: dict[str, str] = {}
        self._log: deque[dict[str, object]] = deque(maxlen=20)
        self._state: tuple[float, bytes] = (-STATE_CACHE_S, b"")
        self._t0 = time.monotonic()

    # --- sampling --------------------------------------------------------------------

    async def sample_forever(self) -> None:
        """Record each service's connections and rates every ``SAMPLE_S`` (a TaskGroup task)."""
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_S)

    def sample(self) -> None:
        t = round(time.monotonic() - self._t0, 1)
        listing = self._director.admin.listing(raw=True)
        seen = set()
        for s in listing["services"]:  # type: ignore[attr-defined]
            name = _service_name(s)
            seen.add(name)
            active = sum(int(d["active"]) for d in s["dests"])
            inactive = sum(int(d["inactive"]) for d in s["dests"])
            rates = s["rates"]
            point = (t, active, inactive, int(rates["cps"]), int(rates["inbps"] + rates["outbps"]))
            self._history.setdefault(name, deque(maxlen=HISTORY)).append(point)
        for name in set(self._history) - seen:
            del self._history[name]

    # --- the state -------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        """Everything the page shows, as plain data (see docs/console.md)."""
        d = self._director
        listing = d.admin.listing(raw=False)
        health: dict[tuple[str, str], Any] = {}
        for t in d.nanny.health():
            health[(str(t.key), f"{t.addr}:{t.port}")] = t
        services = []
        for s in listing["services"]:  # type: ignore[attr-defined]
            name = _service_name(s)
            dests = []
            listed = set()
            for dest in s["dests"]:
                listed.add(dest["addr"])
                h = health.get((name, dest["addr"]))
                dests.append(self._dest(name, dest, h))
            for (svc_name, addr), h in health.items():
                if svc_name == name and addr not in listed:
                    dests.append(self._dest(name, None, h, addr))
            services.append(
                {
                    "name": name,
                    "proto": s["proto"],
                    "addr": s["addr"],
                    "fwmark": s["fwmark"],
                    "scheduler": s["scheduler"],
                    "flags": s["flags"],
                    "persistent": s["persistent"],
                    "active": sum(int(x["active"]) for x in s["dests"]),
                    "inactive": sum(int(x["inactive"]) for x in s["dests"]),
                    "conns": s["conns"],
                    "rates": s["rates"],
                    "dests": dests,
                    "history": list(self._history.get(name, ())),
                }
            )
        stats = d.statistics()
        drops = dict(stats.drops)
        drops["no_service"] = drops.get("no_service", 0) + stats.no_service
        drops["no_destination"] = drops.get("no_destination", 0) + stats.no_dest
        return {
            "uptime": round(time.monotonic() - self._t0, 1),
            "sample_s": SAMPLE_S,
            "fastpath": stats.implementation,
            "connections": stats.connections,
            "max_connections": stats.max_connections,
            "drops": dict(sorted(drops.items())),
            "services": services,
            "failover": self._failover(),
            "actions": self._token is not None,
            "log": list(self._log),
        }

    def _dest(
        self, svc: str, dest: Mapping[str, Any] | None, h: Any, addr: str = ""
    ) -> dict[str, object]:
        addr = dest["addr"] if dest is not None else addr
        out: dict[str, object] = {
            "addr": addr,
            "listed": dest is not None,
            "weight": None if dest is None else dest["weight"],
            "active": 0 if dest is None else dest["active"],
            "inactive": 0 if dest is None else dest["inactive"],
            "conns": 0 if dest is None else dest["conns"],
            "cps": 0 if dest is None else dest["rates"]["cps"],
            "health": "unknown" if h is None else h.state.health,
            "in_service": dest is not None if h is None else h.state.in_service,
            "probe": "" if h is None else h.probe,
            "reason": "" if h is None else h.state.last_result,
            "configured_weight": None if h is None else h.state.weight,
            "note": self._notes.get(f"{svc} {addr}", ""),
        }
        return out

    def _failover(self) -> dict[str, object] | None:
        pulse = self._director.pulse
        if pulse is None:
            return None
        st = pulse.statistics()
        p = st.peer
        cfg = self._director.cfg
        peer = cfg.backup if p.primary else cfg.primary
        return {
            "node": "primary" if p.primary else "backup",
            "role": ROLE_NAMES.get(p.role, str(p.role)),
            "peer": None if peer is None else str(peer),
            "peer_role": ROLE_NAMES.get(p.peer_role, str(p.peer_role)),
            "peer_alive": p.peer_alive,
            "heartbeats_sent": p.heartbeats_sent,
            "heartbeats_accepted": p.accepted,
            "heartbeats_lost": p.lost,
            "rtt_ms": p.rtt_ms,
            "sync_lag_ms": st.sync_lag_ms,
            "claimed": st.claimed,
            "table_synced": p.table_synced,
            "shadow_connections": st.shadow_conns,
        }

    def _state_body(self) -> bytes:
        now = time.monotonic()
        at, body = self._state
        if now - at >= STATE_CACHE_S or not body:
            body = json.dumps(self.state(), separators=(",", ":")).encode()
            self._state = (now, body)
        return body

    # --- actions ---------------------------------------------------------------------

    def check(self, headers: Mapping[bytes, bytes]) -> None:
        """Refuse a request that is not a same-origin, token-bearing JSON request."""
        if self._token is None:
            raise Refused(403, "actions are off: lvs.cf names no console_token_file")
        site = headers.get(b"sec-fetch-site")
        if site is not None and site != b"same-origin":
            raise Refused(403, f"cross-site request refused (Sec-Fetch-Site: {site.decode()})")
        origin = headers.get(b"origin")
        host = headers.get(b"host", b"")
        if origin is not None and origin != b"http://" + host:
            raise Refused(403, f"cross-origin request refused (Origin: {origin.decode()})")
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype != b"application/json":
            raise Refused(415, "an action is a JSON request (Content-Type: application/json)")
        token = headers.get(TOKEN_HEADER)
        if token is None or not hmac.compare_digest(token, self._token):
            raise Refused(401, f"no valid token in the {TOKEN_HEADER.decode()} header")

    def act(self, req: Mapping[str, Any], origin: str) -> str:
        """Run one action (already authorized); the text the page shows. Raises Refused."""
        action = req.get("action")
        if action not in ACTIONS:
            raise Refused(400, f"action: expected one of {', '.join(ACTIONS)}, got {action!r}")
        if action == "reload":
            log.info("console: reload from %s", origin)
            self._reload()
            return "reloaded lvs.cf"
        svc = _service_request(req)
        if not svc and action != "zero":
            raise Refused(400, f"{action}: names no service")
        name = str(req.get("service"))
        if action == "zero":
            self._run("zero", svc)
            what = f"zeroed the counters of {name}" if svc else "zeroed all counters"
        else:
            daddr, _, dport = str(req.get("real", "")).rpartition(":")
            dest = {**svc, "daddr": daddr, "dport": int(dport) if dport.isdigit() else None}
            if action == "drain":
                self._run("edit_dest", {**dest, "weight": 0})
                what = f"drained {daddr}:{dport} of {name} (weight 0)"
            elif action == "weight":
                self._run("edit_dest", {**dest, "weight": req.get("weight")})
                what = f"set {daddr}:{dport} of {name} to weight {req.get('weight')}"
            elif action == "out":
                self._run("del_dest", dest)
                what = f"took {daddr}:{dport} out of {name}"
            else:
                self._run("add_dest", {**dest, "weight": req.get("weight", 1)})
                what = f"put {daddr}:{dport} back in {name} at weight {req.get('weight', 1)}"
            self._notes[f"{name} {daddr}:{dport}"] = f"{action} from the console ({origin})"
        log.info("console: %s from %s", what, origin)
        self._log.appendleft({"at": round(time.monotonic() - self._t0, 1), "what": what})
        self._state = (-STATE_CACHE_S, b"")
        return what

    def _run(self, cmd: str, req: Mapping[str, Any]) -> None:
        try:
            self._commands[cmd]({"cmd": cmd, **req})
        except DirectorError as e:
            raise Refused(409, str(e)) from None

    # --- HTTP ------------------------------------------------------------------------

    async def route(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer the request whose head is ``head`` if it is the console's; False if not."""
        method, path, headers = _headers(head)
        if path in ASSETS and method in (b"GET", b"HEAD"):
            name, ctype = ASSETS[path]
            _respond(writer, 200, ctype, self._assets[name], method == b"HEAD")
        elif path == b"/console/state" and method in (b"GET", b"HEAD"):
            _respond(writer, 200, b"application/json", self._state_body(), method == b"HEAD")
        elif path == b"/console/action":
            peer = writer.get_extra_info("peername")
            origin = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
            status, text = await self._action(method, headers, reader, origin)
            body = json.dumps({"ok": status == 200, "message": text}).encode() + b"\n"
            _respond(writer, status, b"application/json", body)
        else:
            return False
        await writer.drain()
        return True

    async def _action(
        self,
        method: bytes,
        headers: Mapping[bytes, bytes],
        reader: asyncio.StreamReader,
        origin: str,
    ) -> tuple[int, str]:
        try:
            if method != b"POST":
                raise Refused(405, "POST only")
            self.check(headers)
            length = headers.get(b"content-length", b"0")
            if not length.isdigit() or int(length) > MAX_BODY:
                raise Refused(413, f"a body of at most {MAX_BODY} bytes")
            raw = await reader.readexactly(int(length))
            try:
                req = json.loads(raw)
            except ValueError as e:
                raise Refused(400, f"bad JSON: {e}") from None
            if not isinstance(req, dict):
                raise Refused(400, "the body is a JSON object")
            return 200, self.act(req, origin)
        except Refused as e:
            log.warning("console: refused a request from %s: %s", origin, e.reason)
            return e.status, e.reason


def _service_name(s: Mapping[str, Any]) -> str:
    # As healthcheck.specs.ServiceKey prints it, so health and listing entries match.
    if s.get("fwmark"):
        return f"FWM {s['fwmark']}"
    return f"{s['proto']} {s['addr']}"


def _service_request(req: Mapping[str, Any]) -> dict[str, object]:
    """The control protocol's service fields from the page's ``service`` name
    ("TCP 10.0.1.5:80" or "FWM 7")."""
    text = str(req.get("service") or "")
    if not text:
        return {}
    proto, _, where = text.partition(" ")
    if proto == "FWM":
        return {"proto": "tcp", "fwmark": int(where) if where.isdigit() else -1}
    addr, _, port = where.rpartition(":")
    return {"proto": proto.lower(), "addr": addr, "port": int(port) if port.isdigit() else -1}


def _respond(
    writer: asyncio.StreamWriter, status: int, ctype: bytes, body: bytes, head_only: bool = False
) -> None:
    writer.write(
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%sConnection: close\r\n\r\n"
        % (status, _REASONS.get(status, b"Error"), ctype, len(body), _SECURITY_HEADERS)
        + (b"" if head_only else body)
    )
