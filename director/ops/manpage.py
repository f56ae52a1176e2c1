"""Manual pages in roff (man(7)) generated from the commands' own option definitions.

``lvsd(8)`` comes from the argparse parser of ``director.cli`` (each sub-command and its
options, with their help texts) and ``lvsadm(8)`` from lvsadm's option table
(``_LONG`` and ``OPTION_HELP``), so a new option cannot be left out of its page.
``man/generate.py`` writes both into ``man/``, which the package installs under
``share/man/man8``; a unit test checks that the files there are what these functions
produce.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from director.ops import lvsadm

SOURCE = "lvsd 0.1.0"
MANUAL = "System Administration"


def _escape(text: str) -> str:
    """Text for roff: backslashes doubled, hyphens as minus signs, no leading dot."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + out if out.startswith((".", "'")) else out


def _bold(text: str) -> str:
    return f"\\fB{_escape(text)}\\fR"


def _header(name: str, summary: str) -> list[str]:
    return [
        f'.TH {name.upper()} 8 "" "{SOURCE}" "{MANUAL}"',
        ".SH NAME",
        f"{name} \\- {_escape(summary)}",
    ]


def _option(flags: Iterable[str], arg: str | None, text: str) -> list[str]:
    names = ", ".join(_bold(f) for f in flags)
    if arg:
        names += " \\fI" + _escape(arg) + "\\fR"
    return [".TP", names, _escape(text)]


def _actions(parser: argparse.ArgumentParser) -> list[str]:
    lines: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            arg = None
            if action.nargs != 0:
                arg = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
            lines += _option(action.option_strings, arg, action.help or "")
        else:
            name = action.metavar if isinstance(action.metavar, str) else action.dest
            lines += _option([name], None, action.help or "")
    return lines


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    """A subsection per sub-command of ``parser``, nested ones included (``lvsd lab up``)."""
    lines: list[str] = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help or "" for a in action._choices_actions}
        for name, sub in action.choices.items():
            lines += [f".SS {_escape(prefix)} {_escape(name)}", _escape(helps.get(name, ""))]
            if sub.description:
                lines += [".PP", _escape(sub.description)]
            lines += [".PP", _escape(" ".join(sub.format_usage().split())), *_actions(sub)]
            lines += _commands(sub, f"{prefix} {name}")
    return lines


def lvsd_page(parser: argparse.ArgumentParser) -> str:
    """``lvsd(8)`` from ``director.cli.build_parser()``: every sub-command, every option."""
    lines = _header("lvsd", parser.description or "")
    lines += [".SH SYNOPSIS", f"{_bold('lvsd')} [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]"]
    lines += [".SH DESCRIPTION", _escape(parser.description or "")]
    lines += [".SH OPTIONS", *_actions(parser)]
    lines += [".SH COMMANDS", *_commands(parser, "lvsd")]
    lines += [
        ".SH FILES",
        ".TP",
        _bold("/etc/lvs.cf"),
        "The configuration (see docs/configuration.md).",
        ".TP",
        _bold("/run/lvsd.sock"),
        "The control socket lvsadm talks to.",
        ".SH SEE ALSO",
        "\\fBlvsadm\\fR(8), \\fBipvsadm\\fR(8)",
    ]
    return "\n".join(lines) + "\n"


def lvsadm_options() -> list[tuple[list[str], str | None, str]]:
    """Each lvsadm option as (its spellings, its argument, what it does), commands first."""
    longs: dict[str, list[str]] = {}
    for long, key in lvsadm._LONG.items():
        longs.setdefault(key, []).append(f"--{long}")
    out = []
    for key, (arg, text) in lvsadm.OPTION_HELP.items():
        flags = [f"-{key}"] if len(key) == 1 else []
        if key == "L":
            flags.append("-l")
        flags += longs.get(key, [f"--{key}"])
        out.append((flags, arg, text))
    return out


def lvsadm_page() -> str:
    """``lvsadm(8)`` from lvsadm's option table."""
    lines = _header("lvsadm", "ipvsadm's command line for a running lvsd")
    lines += [".SH SYNOPSIS", ".nf"]
    usage = lvsadm.USAGE.format(p="lvsadm").split("Usage:\n", 1)[1].split("\n\n", 1)[0]
    lines += [_escape(line.strip()) for line in usage.splitlines()]
    lines += [".fi", ".SH DESCRIPTION"]
    doc = (lvsadm.__doc__ or "").split("\n\n", 1)[-1].replace("``", "")
    lines += [_escape(" ".join(doc.split()))]
    lines += [".SH OPTIONS"]
    for flags, arg, text in lvsadm_options():
        lines += _option(flags, arg, text)
    lines += [
        ".SH EXIT STATUS",
        "0 on success, 2 for a bad command line, 255 for a refused operation, "
        "1 for a listing that failed.",
        ".SH SEE ALSO",
        "\\fBlvsd\\fR(8), \\fBipvsadm\\fR(8)",
    ]
    return "\n".join(lines) + "\n"
