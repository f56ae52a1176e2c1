"""The scheduling package's exceptions: raised when binding (bad names, flags), never per packet."""

from __future__ import annotations


class SchedulerError(Exception):
    """Base of every error the scheduling package raises on purpose."""


class UnknownSchedulerError(SchedulerError, ValueError):
    """A scheduler name that is not one of ipvsadm's; the message lists the known names."""


class SchedulerFlagError(SchedulerError, ValueError):
    """A scheduler flag that is unknown or belongs to another scheduler (``sh-port`` on ``rr``)."""


class UpdateKindError(SchedulerError, ValueError):
    """An ``update()`` kind other than "init", "add", "del" or "upd"."""
