"""Loss-landscape analysis of existing networks: curvature as a matrix-free operator.

Build a :class:`HessianOperator` for (model, loss, data) and hand it to free functions that
accept any :class:`SymmetricOperator`::

    from surrogates.landscape import HessianOperator, lanczos, hutchpp, spectral_density

    H = HessianOperator(model, torch.nn.CrossEntropyLoss(), loader)   # H @ v, H.to_scipy()
    top = lanczos(H, k=5, which="LA")          # "SA": most negative, "BE": both ends
    tr = hutchpp(H, num_products=99)           # trace with standard error
    rho = spectral_density(H, deflate=lanczos(H, 5, keep_basis=True))
    print(top.eigenvalues, tr.value, rho.trace, H.num_products)

Other curvatures take the same arguments: ``GGNOperator`` (generalised Gauss-Newton),
``FisherOperator(kind="empirical" | "true")`` and ``KFACOperator`` (Kronecker-factored, with its
own ``eigenvalues()`` and damped ``inverse(damping)``)::

    G = GGNOperator(model, torch.nn.CrossEntropyLoss(), loader)
    K = KFACOperator(model, torch.nn.CrossEntropyLoss(), loader)
    cmp = compare_top_eigenvalues(K, G, k=5)   # cmp.approx, cmp.exact, cmp.ratio

The model is never modified (parameters, ``requires_grad``, ``.grad``, train/eval flags).
:func:`layer_spectra` gives the same per layer; :class:`CurvatureMonitor` (a Lightning callback,
imported on first use so that this package loads without Lightning) logs them while training.
Data sharded across processes (``torch.distributed``, e.g. under Lightning's DDP): wrap each
process's operator, ``DistributedOperator(HessianOperator(model, loss, shard((X, Y))))``.
"""

from .character import CriticalCharacter, characterize
from .density import SpectralDensity, spectral_density
from .distributed import DistributedOperator, shard
from .exact import dense_matrix, exact_spectrum
from .example import Example, bundled_example, teacher_classification
from .fisher import FisherOperator
from .ggn import GGNOperator
from .kfac import (
    EigenvalueComparison,
    KFACInverseOperator,
    KFACOperator,
    compare_top_eigenvalues,
)
from .lanczos import EigenResult, lanczos, refine
from .layers import LayerSpectra, LayerSpectrum, layer_spectra
from .loading import (
    apply_state_dict,
    load_archive,
    load_arrays,
    load_state_dict,
    load_surrogate,
)
from .operator import (
    DenseSymmetricOperator,
    HessianOperator,
    LossCurvatureOperator,
    SymmetricOperator,
)
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
    "LossCurvatureOperator",
    "GGNOperator",
    "FisherOperator",
    "KFACOperator",
    "KFACInverseOperator",
    "compare_top_eigenvalues",
    "EigenvalueComparison",
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
    "layer_spectra",
    "LayerSpectra",
    "LayerSpectrum",
    "CurvatureMonitor",
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


def __getattr__(name: str):
    # PEP 562: the Lightning callback loads Lightning, which the rest of the package never needs
    if name == "CurvatureMonitor":
        from .monitor import CurvatureMonitor

        return CurvatureMonitor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"CurvatureMonitor"})
