"""User-facing errors.

A :class:`ClbenchError` is a mistake the user can fix (an unknown name, a missing data
file, a malformed override). The CLI prints its message as one line and exits with status 2;
anything else is a bug and keeps its traceback.

    >>> raise ClbenchError("unknown stream 'split-fmnst'; did you mean 'split-fmnist'?")
    Traceback (most recent call last):
    clbench.errors.ClbenchError: unknown stream 'split-fmnst'; did you mean 'split-fmnist'?
"""
from __future__ import annotations


class ClbenchError(Exception):
    """An error caused by user input; its message names the problem and the fix."""


class DataError(ClbenchError):
    """A dataset is missing, truncated or malformed."""
