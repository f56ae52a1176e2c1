"""Load feedback: nanny's uptime parsing and weight formula, HAProxy's agent-check line.

``parse_uptime`` reads the one-minute load average out of ``uptime``/``rup``/``ruptime``
output as nanny's getRemoteLoad did (the text after the first "load...:" up to a comma
or a space). ``nanny_weight`` is nanny's adjustWeight: below a load of 1.0 the weight
grows by ``weight/2 × (1 − load)^(1/3)`` up to ``scale × weight``; above it shrinks by
``weight/2 × (load − 1)^(1/3)`` but never below the configured weight; a change smaller
than ``weight/4`` is not applied. ``parse_agent`` reads one agent-check reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_LOAD_RE = re.compile(r"load[^:]*:\s?([0-9.]+)[, ]")


def parse_uptime(text: str) -> float | None:
    """The one-minute load average in ``text``, or None when it has none (nanny: -1)."""
    m = _LOAD_RE.search(text + " ")
    if m is None:
        return None
    try:
        return float(m.group(1))
    except ValueError:
        return None


def nanny_weight(weight: int, last: int, load: float, scale: int = 10) -> int:
    """The weight nanny set after reading ``load`` (``last``: the weight in force).

    Returns ``last`` when the load is exactly 1.0 or the change is below ``weight / 4``.
    """
    factor = weight / 2
    if load == 1.0:
        return last
    if load < 1.0:
        new = min(int(last + factor * (1.0 - load) ** (1 / 3)), scale * weight)
    else:
        new = max(int(last - factor * (load - 1.0) ** (1 / 3)), weight)
    return new if abs(new - last) >= weight / 4 else last


class AgentAdmin(StrEnum):
    """The administrative state an agent may ask for."""

    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"


@dataclass(frozen=True, slots=True)
class AgentReply:
    """One parsed agent line; None fields were not mentioned and keep their last value.

    ``percent`` scales the configured weight; ``weight`` replaces it (lvsd's
    ``weight:N``); ``up`` False is ``down``/``failed``/``stopped``; ``admin`` is
    ``ready``/``drain``/``maint``. ``text`` is the line as received, for the log.
    """

    text: str
    percent: int | None = None
    weight: int | None = None
    up: bool | None = None
    admin: AgentAdmin | None = None


class AgentParseError(ValueError):
    """An agent line with nothing lvsd understands in it."""


_PERCENT_RE = re.compile(r"(\d{1,4})%")
_WEIGHT_RE = re.compile(r"weight:(\d{1,9})(%?)")


def parse_agent(line: str) -> AgentReply:
    """Parse an agent-check reply such as ``75%``, ``drain``, ``up 50%``, ``down#disk``.

    Words are separated by spaces, tabs or commas; text after ``#`` is a description.
    ``maxconn:N`` is accepted and ignored. Raises AgentParseError for a line that has no
    word lvsd understands (garbage), as HAProxy logs and ignores such a reply.
    """
    text = line.strip()
    body = text.split("#", 1)[0]
    percent: int | None = None
    weight: int | None = None
    up: bool | None = None
    admin: AgentAdmin | None = None
    understood = False
    for word in re.split(r"[\s,]+", body.lower()):
        if not word:
            continue
        if m := _PERCENT_RE.fullmatch(word):
            percent = int(m.group(1))
        elif m := _WEIGHT_RE.fullmatch(word):
            if m.group(2):
                percent = int(m.group(1))
            else:
                weight = int(m.group(1))
        elif word == "up":
            up = True
        elif word in ("down", "failed", "stopped"):
            up = False
        elif word in ("ready", "drain", "maint"):
            admin = AgentAdmin(word)
        elif word.startswith("maxconn:"):
            pass
        else:
            continue
        understood = True
    if not understood:
        raise AgentParseError(f"agent reply {text[:60]!r}: no state or weight in it")
    return AgentReply(text=text, percent=percent, weight=weight, up=up, admin=admin)
