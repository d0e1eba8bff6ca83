"""Fitting surrogates with Lightning, configured by Hydra — the fitting door.

* data: :mod:`~surrogates.fitting.sources` (analytic functions, callables, arrays and
  .npy/.npz/.csv files), :mod:`~surrogates.fitting.files` (parsing users' files),
  :mod:`~surrogates.fitting.sampling` (designs in a box), :mod:`~surrogates.fitting.samples`
  (the samples and their checks), :mod:`~surrogates.fitting.datamodule` (Lightning batching)
  and :mod:`~surrogates.fitting.functions` (the analytic test functions);
* the fit: :mod:`~surrogates.fitting.module` (the LightningModule: Adam, then an L-BFGS polish
  of a variable-projection objective), :mod:`~surrogates.fitting.evidence` (the polish's
  Bayesian evidence), :mod:`~surrogates.fitting.selection` (when the polish stops and which
  state is kept), :mod:`~surrogates.fitting.metrics` (fit and derivative errors);
* entry points: :func:`~surrogates.fitting.train.train` (a composed config → a run folder),
  :func:`~surrogates.fitting.fit.fit` (arrays → a :class:`~surrogates.surrogate.Surrogate`),
  :mod:`~surrogates.fitting.active` (active sampling of a black box);
* :mod:`~surrogates.fitting.predict`: derivative queries streamed through Lightning's predict
  loop (devices and strategies from the config).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from surrogates._lazy import lazy_exports

_EXPORTS = {
    "fit": "surrogates.fitting.fit",
    "train": "surrogates.fitting.train",
    "fit_active": "surrogates.fitting.active",
    "active_train": "surrogates.fitting.active",
    "query": "surrogates.fitting.predict",
}

if TYPE_CHECKING:
    from surrogates.fitting.active import active_train, fit_active
    from surrogates.fitting.fit import fit
    from surrogates.fitting.predict import query
    from surrogates.fitting.train import train

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = ["fit", "train", "fit_active", "active_train", "query"]
