"""The ``lvsd`` command: the daemon and its tools, one sub-command per module.

Each sub-command lives in the module that owns it and registers itself through
``add_command(subparsers)``, which sets ``func`` (args -> exit status).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from director.daemon import run
from director.ops import save
from director.tools import agent, check, demo, simulate
from lab import cluster as lab

COMMAND_MODULES = (check, lab, run, demo, simulate, agent, save)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lvsd", description="A userspace IPVS director (VS-NAT, nanny, pulse)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
