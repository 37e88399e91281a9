"""The errors grokscope raises for things a user can fix, in one hierarchy.

Every user-facing problem is a `GrokscopeError` whose message is one line naming the
problem; the CLI catches the base class once, prints the line and exits with code 2.
"""

from __future__ import annotations


class GrokscopeError(Exception):
    """Base class of grokscope's user-facing errors (one-line messages)."""


class ConfigError(GrokscopeError, ValueError):
    """A configuration, argument or input-folder problem."""


class CheckpointError(GrokscopeError, RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or does not fit the run's model."""


class SkippedCheckpointWarning(UserWarning):
    """A checkpoint could not be read and was left out of an analysis (the message names it)."""
