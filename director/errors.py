"""lvsd's exceptions: for bugs and start-up failures, never for ordinary packet outcomes."""

from __future__ import annotations


class DirectorError(Exception):
    """Base of every error the director raises on purpose."""


class ConfigError(DirectorError):
    """A configuration that cannot be used; the message names file:line, keyword and value."""


class TunError(DirectorError):
    """The TUN device or the network plumbing around it could not be set up."""
