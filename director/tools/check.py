"""``lvsd check``: validate an lvs.cf and print it normalized.

Refuses everything ``lvsd run`` refuses before it touches the host: the parser's rules
(capacity limits included) and what ``load_config(..., serve=True)`` adds for a daemon.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from director.config import format_config, load_config
from director.errors import ConfigError


def add_command(sub: Any) -> None:
    p = sub.add_parser("check", help="validate an lvs.cf and print the normalized configuration")
    p.add_argument("-c", "--config", default="/etc/lvs.cf", help="the lvs.cf to read")
    p.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Exit 1 with the reason for any file ``lvsd run`` refuses before it looks at the
    host (the same validation); warnings go to standard error, the file to standard output."""
    try:
        cfg = load_config(args.config, serve=True)
    except ConfigError as e:
        print(f"lvsd: {e}", file=sys.stderr)
        return 1
    for warning in cfg.warnings:
        print(f"lvsd: warning: {warning}", file=sys.stderr)
    sys.stdout.write(format_config(cfg))
    return 0
