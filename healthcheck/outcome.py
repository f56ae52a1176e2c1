"""A probe's verdict and the expect rule every text-matching probe shares.

``Outcome(ok, reason)`` is a value, never an exception: refusal, timeout, a wrong answer
and garbage are ordinary results. ``expect_matches`` is Piranha's rule: ``"*"`` accepts
any answer, a regular expression (``use_regex``) is searched in the answer, plain text
must begin the answer (nanny compared the first ``len(expect)`` bytes).
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass

# nanny read regex answers into a 255-byte buffer; lvsd reads a little more.
REGEX_READ_LIMIT = 4096


# A probe that fails with one of these failed for the director's own reasons (out of
# descriptors, buffers or memory): it says nothing about the real server.
LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass(frozen=True, slots=True)
class Outcome:
    """``ok`` and why, in a few lower-case words (``connection refused``, ``HTTP 503``).

    ``internal`` marks a failure of the director itself (``LOCAL_ERRNOS``): the runner
    counts and logs it and never lets it judge the real server.
    """

    ok: bool
    reason: str
    internal: bool = False


def failure(e: BaseException) -> Outcome:
    """The outcome of a probe that raised ``e`` (an OSError or a timeout)."""
    internal = isinstance(e, OSError) and e.errno in LOCAL_ERRNOS
    return Outcome(False, describe_error(e), internal=internal)


def expect_matches(expect: str, answer: bytes, use_regex: bool) -> bool:
    """Whether ``answer`` satisfies ``expect`` (see the module docstring)."""
    if expect == "*":
        return len(answer) > 0
    text = answer.decode("latin-1")
    if use_regex:
        return re.search(expect, text) is not None
    return text.startswith(expect)


def enough(expect: str | None, answer: bytes, use_regex: bool) -> bool:
    """Whether a reader may stop: the answer can already be judged."""
    if expect is None or expect == "*":
        return len(answer) > 0
    if use_regex:
        return len(answer) >= REGEX_READ_LIMIT or expect_matches(expect, answer, True)
    return len(answer) >= len(expect.encode("latin-1"))


def describe_error(e: BaseException) -> str:
    """A short lower-case reason for a socket-level failure."""
    match e:
        case TimeoutError():
            return "timed out"
        case ConnectionRefusedError():
            return "connection refused"
        case ConnectionResetError():
            return "connection reset"
        case OSError() if e.strerror:
            return e.strerror.lower()
        case _:
            return type(e).__name__


def printable(data: bytes, limit: int = 40) -> str:
    """``data`` cut to ``limit`` bytes as a repr, for reasons in the log."""
    return repr(data[:limit].decode("latin-1"))
