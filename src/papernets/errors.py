"""The errors a user can fix: a bad name, value, file or flag.

Every one of them derives from ``PapernetsError``; the command line prints its message as one line and exits
with code 2 (``--debug`` shows the traceback). A message names the bad value and what would be accepted.
Failures while running (a diverged loss, a crashed kernel) are not ``PapernetsError`` and exit with code 1.
"""

from __future__ import annotations

__all__ = [
    "PapernetsError", "ConfigError", "UsageError", "UnknownModelError", "ModelConfigError", "DatasetError",
    "CheckpointError",
]


class PapernetsError(ValueError):
    """A user error: bad input that the user can fix (exit code 2)."""


class ConfigError(PapernetsError):
    """A bad configuration value or key; the message says what is accepted."""


class UsageError(PapernetsError):
    """A bad command-line value."""


class UnknownModelError(PapernetsError):
    """A model name that is not registered (the message lists close matches)."""


class ModelConfigError(PapernetsError):
    """A model argument that the model cannot accept (e.g. an image below its minimum size)."""


class DatasetError(PapernetsError):
    """A dataset that cannot be found or read; the message says where it looked and how to get it."""


class CheckpointError(PapernetsError):
    """A checkpoint that cannot be read, or that does not fit what it is used for."""
