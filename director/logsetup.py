"""lvsd's log lines: structured ``key=value`` records on stderr, which the journal collects.

One line per record: ``level=info logger=director.ops.admin msg="TCP 10.0.1.5:80: dest
192.168.1.12:80 added (weight 1)"``. Under systemd (``JOURNAL_STREAM`` set) the time
is left to the journal and each line is prefixed with its syslog priority
(``<6>``), which journald turns into the record's priority. lvs.cf's
``debug_level`` sets the level: NONE gives INFO (state changes only), LOW and
above DEBUG. Nothing is logged per packet.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

# sd-daemon.h priorities by logging level.
_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def _quote(text: str) -> str:
    if text and not any(c in text for c in ' "=\\\n'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class StructuredFormatter(logging.Formatter):
    """``[<prio>]time=... level=... logger=... msg=...``: one line, logfmt quoting."""

    def __init__(self, *, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        fields = []
        if not self.journal:
            # Milliseconds: a failover is read from the order and spacing of its lines.
            stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            fields.append(f"time={stamp}.{int(record.msecs):03d}")
        fields.append(f"level={record.levelname.lower()}")
        fields.append(f"logger={record.name}")
        fields.append(f"msg={_quote(record.getMessage())}")
        if record.exc_info:
            fields.append(f"exc={_quote(self.formatException(record.exc_info))}")
        line = " ".join(fields)
        if self.journal:
            prio = _SYSLOG_PRIORITY.get(record.levelno, 6)
            return f"<{prio}>{line}"
        return line


def level_for(debug_level: int) -> int:
    """lvs.cf ``debug_level`` (0 NONE .. 3 HIGH, or up to 255) as a logging level."""
    return logging.INFO if debug_level <= 0 else logging.DEBUG


def setup(debug_level: int = 0, stream: TextIO | None = None, *, verbose: bool = False) -> None:
    """Route every ``director`` and leaf logger through one structured stderr handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(StructuredFormatter(journal="JOURNAL_STREAM" in os.environ))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else level_for(debug_level))


def set_debug_level(debug_level: int) -> None:
    """Change the level at run time (a reload with a new ``debug_level``)."""
    level = level_for(debug_level)
    logging.getLogger().setLevel(level)
    logging.getLogger(__name__).info("log level %s", logging.getLevelName(level).lower())
