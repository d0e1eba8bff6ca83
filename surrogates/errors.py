"""The errors a user's input can cause, and the one warning.

Every error the package raises for something the *user* can fix — a data file, a config
value, an argument's shape, a checkpoint, an output folder — derives from
:class:`SurrogatesError`, and its message names the place (file, line, column, shape,
value). The command-line entry points print these as one ``error: …`` line; anything else
(a bug in the package, numpy or torch) keeps its traceback. Each class also derives from the
built-in exception a Python user would expect (``ValueError``, ``OSError``), so
``except ValueError`` keeps working.
"""

from __future__ import annotations


class SurrogatesError(Exception):
    """Base of every error caused by the user's input rather than by a bug."""


class InputError(SurrogatesError, ValueError):
    """An argument or config value that cannot be used: a shape, a range, an unknown name."""


class DataError(SurrogatesError, ValueError):
    """Training or query data that cannot be used as given; the message names the place."""


class CheckpointError(SurrogatesError, ValueError):
    """A surrogate file that is missing, unreadable or does not describe a surrogate."""


class ExtrapolationError(SurrogatesError, ValueError):
    """Query points outside the box of the training inputs, with ``extrapolation="error"``."""


class OutputError(SurrogatesError, OSError):
    """An output folder or file that cannot be written as asked; the message names the path."""


class ExtrapolationWarning(UserWarning):
    """Query points outside the box of the training inputs: the surrogate is extrapolating."""


__all__ = [
    "SurrogatesError",
    "InputError",
    "DataError",
    "CheckpointError",
    "ExtrapolationError",
    "OutputError",
    "ExtrapolationWarning",
]
