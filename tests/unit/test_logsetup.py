"""Log lines: logfmt fields, a millisecond timestamp, journal priorities."""

from __future__ import annotations

import logging
import re

from director.logsetup import StructuredFormatter


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("director.daemon.pulse", logging.INFO, __file__, 1, msg, (), None)


def test_a_line_carries_its_time_to_the_millisecond() -> None:
    line = StructuredFormatter(journal=False).format(_record("failover: BACKUP -> MASTER"))
    assert re.fullmatch(
        r"time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} level=info "
        r'logger=director\.daemon\.pulse msg="failover: BACKUP -> MASTER"',
        line,
    ), line


def test_under_the_journal_the_time_is_the_journals() -> None:
    line = StructuredFormatter(journal=True).format(_record("x"))
    assert line == "<6>level=info logger=director.daemon.pulse msg=x"
