"""The lab's exceptions."""

from __future__ import annotations


class LabError(Exception):
    """The namespace lab could not be built, entered or removed."""
