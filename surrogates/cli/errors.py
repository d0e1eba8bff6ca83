"""How the commands report a user's mistake: one line naming the problem, exit status 2.

A bad file, a bad checkpoint or a bad config value is not a bug in the program, so the user
gets the message that names the place (file, row, column, key) — not a traceback wall.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.errors import InstantiationException
from omegaconf.errors import OmegaConfBaseException

from surrogates.data import DataError
from surrogates.surrogate import CheckpointError

USER_ERRORS = (DataError, CheckpointError, ValueError, FileNotFoundError, InstantiationException, OmegaConfBaseException)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn :data:`USER_ERRORS` raised inside the block into ``error: …`` on stderr and exit 2."""
    try:
        yield
    except USER_ERRORS as err:
        message = str(err).strip() or type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
