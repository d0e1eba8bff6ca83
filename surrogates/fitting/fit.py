"""The one-call Python entry point: :func:`fit`."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Sequence

from surrogates.config import compose_config
from surrogates.fitting.sources import ArraySource
from surrogates.fitting.train import summary_headline, train
from surrogates.surrogate import Surrogate

log = logging.getLogger(__name__)


def fit(
    X: Any,
    y: Any,
    gradients: Any | None = None,
    overrides: Sequence[str] = (),
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    output_dir: str | Path | None = None,
    lower: Sequence[float] | None = None,
    upper: Sequence[float] | None = None,
    time_budget: float | None = None,
    progress: bool | None = None,
) -> Surrogate:
    """Fit a smooth MLP surrogate to samples, with the same configs as ``surrogates-train``.

    Args:
        X: Inputs (N, d), numpy or torch.
        y: Outputs (N,) or (N, m).
        gradients: Optional derivative samples dy/dx, (N, d) or (N, m, d); used by the
            gradient-matching loss (``model.gradient_weight``).
        overrides: Hydra overrides, e.g. ``["model.width=256", "trainer.max_epochs=500"]``.
        input_names: Optional d input names (default x0, x1, …).
        output_names: Optional m output names (default y0, …).
        output_dir: Where to keep the run's files (surrogate, summary, checkpoints, logs);
            by default they go to a temporary folder that is deleted afterwards.
        lower: Optional (d,) lower corner of the box the inputs come from: the surrogate's
            domain of trust (extrapolation warnings, critical-point search). Default: the
            inputs' bounding box.
        upper: Optional (d,) upper corner, given together with ``lower``.
        time_budget: Optional bound on the whole fit in seconds (``trainer.max_time``): the
            Adam phase hands over to the L-BFGS polish at half of it, the polish stops when it
            runs out, and the best state found so far is kept. Shared by an ensemble's members.
        progress: True shows Lightning's per-epoch progress bar, False hides it. None (the
            default) hides it too, unless ``overrides`` set ``trainer.enable_progress_bar``.
            Lightning's GPU/TPU banners and tips are never shown; when the fit ends, one line
            (model, data, time, epochs) is logged at INFO to the logger ``surrogates.fitting.fit``.

    Returns:
        The fitted :class:`~surrogates.surrogate.Surrogate`; ``s.info["summary"]`` holds the fit metrics.
    """
    budget = [] if time_budget is None else [f"trainer.max_time={float(time_budget)}"]
    quiet = ["trainer.enable_progress_bar=false"] if progress is None else []  # the overrides may still turn it on
    chosen = [] if progress is None else [f"trainer.enable_progress_bar={str(bool(progress)).lower()}"]
    cfg = compose_config("train", ["data=arrays", *quiet, *overrides, *budget, *chosen])
    source = ArraySource(X, y, gradients, input_names=input_names, output_names=output_names, lower=lower, upper=upper)
    if output_dir is not None:
        surrogate = train(cfg, output_dir=output_dir, source=source).surrogate
    else:
        with tempfile.TemporaryDirectory(prefix="surrogates-fit-") as scratch:
            surrogate = train(cfg, output_dir=scratch, source=source).surrogate
    log.info(summary_headline(surrogate.info["summary"]))
    return surrogate
