"""The ``lvsd`` command: the daemon and its tools, one sub-command per module.

Each sub-command lives in the module that owns it and registers itself through
``add_command(subparsers)``, which sets ``func`` (args -> exit status).

Only the module of the command being run is imported: ``lvsd check`` must not pay for
the daemon's imports (uvloop, pyroute2, prometheus_client), nor the daemon for the lab's.
``lvsd --help`` (or a line naming no command) imports them all, to describe them all.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

COMMAND_MODULES: dict[str, str] = {
    "check": "director.tools.check",
    "lab": "lab.router",  # lab.cluster's command, plus the scale-out shape
    "run": "director.daemon.run",
    "demo": "director.tools.demo",
    "simulate": "director.tools.simulate",
    "agent": "director.tools.agent",
    "save": "director.ops.save",
    "snapshot": "director.daemon.snapshot",
}
"""Sub-command name -> the module whose ``add_command`` defines it, in ``--help`` order."""


def _modules_for(argv: Sequence[str]) -> list[ModuleType]:
    """The command modules to import for ``argv``: the named command's, else every one."""
    named = [a for a in argv if not a.startswith("-")][:1]
    names = named if named and named[0] in COMMAND_MODULES else list(COMMAND_MODULES)
    return [importlib.import_module(COMMAND_MODULES[n]) for n in names]


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lvsd", description="A userspace IPVS director (VS-NAT, nanny, pulse)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _modules_for(argv):
        module.add_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
