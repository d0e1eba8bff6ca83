"""Dense references for small operators: the explicit matrix and its full spectrum.

For an ``n x n`` operator the dense matrix costs ``n`` products (one per unit vector
:math:`H e_j`) and ``n^2`` float64 numbers; ``eigvalsh`` then gives every eigenvalue to
machine precision. This is the reference every estimator is tested against, and the CLI uses
it automatically for networks with at most ``max_size`` parameters.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from ._util import with_progress
from .operator import SymmetricOperator


def dense_matrix(
    op: SymmetricOperator, *, max_size: int = 20_000, chunk_size: int = 32, progress: bool | None = None
) -> torch.Tensor:
    """The operator as an explicit symmetric float64 matrix, ``H[:, j] = op @ e_j``.

    The result is symmetrised, :math:`\\tfrac12(H + H^\\top)`, which only removes rounding.

    Args:
        op: Symmetric operator of size ``n``.
        max_size: Refuse larger operators (memory ``8 n^2`` bytes, ``n`` products).
        chunk_size: Unit vectors per call.
        progress: tqdm bar (``None``: only on a TTY).

    Raises:
        InputError: ``n > max_size``.
    """
    n = op.shape[0]
    if n > max_size:
        raise InputError(
            f"the operator has n={n} rows, more than max_size={max_size}; a dense matrix would need "
            f"{8 * n * n / 1e9:.1f} GB and {n} products. Use lanczos/hutchpp/spectral_density instead"
        )
    H = torch.empty(n, n, dtype=torch.float64)
    starts = range(0, n, chunk_size)
    for s in with_progress(starts, enabled=progress, total=len(starts), desc="dense Hessian"):
        e = min(s + chunk_size, n)
        E = torch.zeros(n, e - s, dtype=torch.float64)
        E[torch.arange(s, e), torch.arange(e - s)] = 1.0
        H[:, s:e] = (op @ E).to(torch.float64).cpu()
    return 0.5 * (H + H.T)


def exact_spectrum(op: SymmetricOperator, **kwargs) -> np.ndarray:
    """All eigenvalues of a small operator, ascending (``numpy.linalg.eigvalsh`` of :func:`dense_matrix`)."""
    return np.linalg.eigvalsh(dense_matrix(op, **kwargs).numpy())
