"""``lvsd run``: the director daemon."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from pathlib import Path
from typing import Any

import uvloop

from director import logsetup
from director.config import load_config
from director.daemon import limits
from director.daemon.director import Director
from director.errors import DirectorError

log = logging.getLogger(__name__)


def add_command(sub: Any) -> None:
    p = sub.add_parser("run", help="run the director daemon")
    p.add_argument("-c", "--config", default="/etc/lvs.cf", help="the lvs.cf to serve")
    p.add_argument("--tun", default="lvs0", help="name of the TUN device (default lvs0)")
    p.add_argument(
        "--takeover",
        action="store_true",
        help="take over from the lvsd serving this configuration's control socket: its "
        "TUNs, listeners, connections and health state; it exits once this one serves",
    )
    p.set_defaults(func=run_daemon)


def run_daemon(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config, serve=True)
        logsetup.setup(cfg.debug_level, verbose=getattr(args, "verbose", False))
        for warning in cfg.warnings:
            log.warning("%s", warning)
        limits.raise_nofile_limit()
        director = Director(
            cfg,
            tun=args.tun,
            config_path=Path(args.config),
            take_over=getattr(args, "takeover", False),
        )
        # What start-up built lives as long as the daemon: out of the collector's sight,
        # so that a full collection (which holds the packet loop) walks only what a
        # scrape or a listing made since.
        gc.freeze()
        uvloop.run(director.run())
    except DirectorError as e:
        print(f"lvsd: {e}", file=sys.stderr)
        return 1
    return 0
