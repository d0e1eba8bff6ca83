"""Keeps Lightning's internal deprecation notices out of a user's output."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

#: Lightning 2.6 flattens batches with a torch pytree API that torch 2.13 deprecates. The notice
#: fires in every fit and predict and names nothing a user of this package can change.
PYTREE_DEPRECATION = r".*isinstance\(treespec, LeafSpec\).*"


@contextmanager
def lightning_internals_quiet() -> Iterator[None]:
    """Within the block, Lightning's own deprecation notices (:data:`PYTREE_DEPRECATION`) are not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PYTREE_DEPRECATION)
        yield
