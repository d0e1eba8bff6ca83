"""Loss-landscape analysis of existing networks: curvature as a matrix-free operator.

Build a :class:`HessianOperator` for (model, loss, data) and hand it to free functions that
accept any :class:`SymmetricOperator`::

    from surrogates.landscape import HessianOperator, lanczos, hutchpp, spectral_density

    H = HessianOperator(model, torch.nn.CrossEntropyLoss(), loader)   # H @ v, H.to_scipy()
    top = lanczos(H, k=5, which="LA")          # "SA": most negative, "BE": both ends
    tr = hutchpp(H, num_products=99)           # trace with standard error
    rho = spectral_density(H, deflate=lanczos(H, 5, keep_basis=True))
    print(top.eigenvalues, tr.value, rho.trace, H.num_products)

The model is never modified (parameters, ``requires_grad``, ``.grad``, train/eval flags).
Data sharded across processes (``torch.distributed``, e.g. under Lightning's DDP): wrap each
process's operator, ``DistributedOperator(HessianOperator(model, loss, shard((X, Y))))``.
"""

from .character import CriticalCharacter, characterize
from .density import SpectralDensity, spectral_density
from .distributed import DistributedOperator, shard
from .example import Example, bundled_example, teacher_classification
from .exact import dense_matrix, exact_spectrum
from .lanczos import EigenResult, lanczos, refine
from .loading import apply_state_dict, load_archive, load_arrays, load_state_dict, load_surrogate
from .operator import DenseSymmetricOperator, HessianOperator, SymmetricOperator
from .slices import (
    Slice,
    accuracy,
    eigenvector_slice,
    filter_normalized_direction,
    interpolation_path,
    loss_slice,
    path_grid,
    random_slice,
    symmetric_grid,
)
from .trace import TraceEstimate, hutchinson, hutchpp

__all__ = [
    "SymmetricOperator",
    "HessianOperator",
    "DenseSymmetricOperator",
    "DistributedOperator",
    "shard",
    "lanczos",
    "refine",
    "EigenResult",
    "hutchinson",
    "hutchpp",
    "TraceEstimate",
    "spectral_density",
    "SpectralDensity",
    "dense_matrix",
    "exact_spectrum",
    "characterize",
    "CriticalCharacter",
    "random_slice",
    "eigenvector_slice",
    "interpolation_path",
    "loss_slice",
    "filter_normalized_direction",
    "symmetric_grid",
    "path_grid",
    "Slice",
    "accuracy",
    "load_state_dict",
    "apply_state_dict",
    "load_archive",
    "load_arrays",
    "load_surrogate",
    "Example",
    "bundled_example",
    "teacher_classification",
]
