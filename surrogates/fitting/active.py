"""Active sampling: spend a simulator's samples where the surrogate's derivatives are least sure.

For a black box that is expensive to call, uniform samples waste evaluations where the
function is simple. :func:`fit_active` fits an ensemble, scores a pool of candidate points by
the ensemble's disagreement on the Hessian,

    s(x) = ‖ std_k Ĥ_k(x) ‖_F   (entry-wise std over the K members, Frobenius norm, all outputs),

evaluates the function at the highest-scoring candidates, refits, and repeats until the budget
is spent. Candidates are picked greedily with an exclusion radius so that one batch does not
pile into a single hot spot (the disagreement is smooth, its top candidates are neighbours).

Zooming in on critical points with local fits is :func:`surrogates.critical.refine_critical_points`.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf
from scipy.spatial import cKDTree

from surrogates.config import compose_config
from surrogates.errors import DataError, InputError
from surrogates.fitting.sampling import sample_box
from surrogates.fitting.sources import ArraySource, CallableSource
from surrogates.fitting.train import SUMMARY_FILE, train
from surrogates.io import write_json
from surrogates.surrogate import Surrogate


@dataclass
class ActiveRound:
    """One fit of the active loop.

    Attributes:
        surrogate: The ensemble fitted in this round.
        samples: Samples the ensemble was fitted to.
        fit_seconds: Wall time of the ensemble fit.
        median_score: Median Hessian disagreement s(x) over the candidate pool (None after
            the last fit, which scores nothing).
        chosen_score: Median s(x) of the candidates picked for the next round.
    """

    surrogate: Surrogate
    samples: int
    fit_seconds: float
    median_score: float | None = None
    chosen_score: float | None = None


@dataclass
class ActiveResult:
    """The final ensemble, every sample taken ((N, d) inputs; outputs (N,) for a scalar
    function, else (N, m); gradient samples (N, m, d) when the source gives them), each
    round's record, and the last fit's summary."""

    surrogate: Surrogate
    X: np.ndarray
    y: np.ndarray
    rounds: list[ActiveRound]
    summary: dict[str, Any] = field(default_factory=dict)
    gradients: np.ndarray | None = None


def hessian_disagreement(surrogate: Surrogate, X: np.ndarray) -> np.ndarray:
    """s(x) = ‖std_k Ĥ_k(x)‖_F at each of the (N, d) points ``X`` (all outputs together).

    Raises:
        InputError: If ``surrogate`` is a single network (no spread to measure).
    """
    if surrogate.ensemble_size < 2:
        raise InputError("Hessian disagreement needs an ensemble: fit with ensemble.size >= 2")
    _, std = surrogate.hessian(np.asarray(X, dtype=np.float64), return_std=True)
    return np.sqrt((std.reshape(len(X), -1) ** 2).sum(axis=1))


def pick_spread_out(unit_candidates: np.ndarray, scores: np.ndarray, unit_samples: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` high-score candidates, greedily, none closer than a radius to another.

    The radius is half the median distance from a candidate to its nearest existing sample
    (coordinates scaled to the unit box), so a batch covers about as many distinct regions as
    the existing design has points there; if the radius excludes too much it is halved.
    """
    if count > len(unit_candidates):
        raise InputError(f"cannot pick {count} points from {len(unit_candidates)} candidates")
    spacing, _ = cKDTree(unit_samples).query(unit_candidates)
    radius = 0.5 * float(np.median(spacing))
    tree = cKDTree(unit_candidates)
    order = np.argsort(-scores, kind="stable")
    while True:
        available = np.ones(len(unit_candidates), dtype=bool)
        chosen: list[int] = []
        for index in order:
            if available[index]:
                chosen.append(int(index))
                if len(chosen) == count:
                    return np.asarray(chosen)
                available[tree.query_ball_point(unit_candidates[index], radius)] = False
        radius *= 0.5


def active_train(
    cfg: DictConfig,
    source: Any,
    output_dir: str | Path,
    rounds: int,
    batch: int,
    candidates_per_pick: int = 20,
    log: Callable[[str], None] | None = print,
) -> ActiveResult:
    """The active loop on a composed ``train`` config and a box source.

    Round 0 fits ``source.load()`` (its size, sampler and noise as configured); each of
    ``rounds`` rounds scores ``candidates_per_pick × batch`` Sobol candidates by
    :func:`hessian_disagreement`, asks ``source.evaluate`` for outputs at the ``batch`` picked
    by :func:`pick_spread_out`, and refits on everything. The last fit is written to
    ``output_dir`` itself, round r < rounds to ``output_dir/round<r>``.

    Args:
        cfg: A composed ``train`` config with ``ensemble.size`` ≥ 2; its data group's
            settings (validation fraction, batch size) apply to every round.
        source: A :class:`~surrogates.fitting.sources.CallableSource` or
            :class:`~surrogates.fitting.sources.FunctionSource` (anything with ``load``, ``evaluate``,
            ``lower``, ``upper``).
        output_dir: The run folder.
        rounds: Acquisition rounds.
        batch: Samples added per round.
        candidates_per_pick: Candidate pool size per sample added.
        log: Called with one line per round (None: silent).

    Returns:
        :class:`ActiveResult`; its summary is the last fit's plus an ``active`` list of rounds.
    """
    size = int(OmegaConf.select(cfg, "ensemble.size", default=1))
    for name, value, least in (("rounds", rounds, 0), ("batch", batch, 1), ("candidates_per_pick", candidates_per_pick, 1),
                               ("ensemble.size", size, 2)):
        if int(value) != value or value < least:
            raise InputError(f"active sampling: {name} must be an integer >= {least}, got {value!r}")
    if not (hasattr(source, "evaluate") and hasattr(source, "lower")):
        raise InputError(
            f"active sampling needs a data source it can call for new points (data=callable or a test function), "
            f"got {type(source).__name__}"
        )
    first = source.load()
    X, y, gradients = first.X, first.y, first.gradients
    lower, upper = np.asarray(source.lower, dtype=np.float64), np.asarray(source.upper, dtype=np.float64)
    width = upper - lower
    rng = np.random.default_rng([int(cfg.seed), 1])
    history: list[ActiveRound] = []
    output_dir = Path(output_dir)
    for round_index in range(rounds + 1):
        arrays = ArraySource(
            X, y[:, 0] if first.scalar_output else y,
            None if gradients is None else (gradients[:, 0] if first.scalar_output else gradients),
            input_names=first.input_names, output_names=first.output_names, lower=lower, upper=upper,
            function=first.function,
        )
        started = time.perf_counter()
        result = train(cfg, output_dir if round_index == rounds else output_dir / f"round{round_index}", source=arrays)
        record = ActiveRound(surrogate=result.surrogate, samples=len(X), fit_seconds=time.perf_counter() - started)
        history.append(record)
        message = ""
        if round_index < rounds:
            candidates = sample_box(candidates_per_pick * batch, lower, upper, "sobol", rng)
            scores = hessian_disagreement(result.surrogate, candidates)
            chosen = pick_spread_out((candidates - lower) / width, scores, (X - lower) / width, batch)
            record.median_score, record.chosen_score = float(np.median(scores)), float(np.median(scores[chosen]))
            y_new, gradients_new = source.evaluate(candidates[chosen])
            if y_new.shape[1:] != y.shape[1:]:
                raise DataError(
                    f"{first.origin} returned outputs of shape {y_new.shape[1:]} per point in round "
                    f"{round_index + 1}, {y.shape[1:]} before"
                )
            X, y = np.concatenate([X, candidates[chosen]]), np.concatenate([y, y_new])
            if gradients is not None:
                gradients = np.concatenate([gradients, gradients_new])
            message = (f"; Hessian disagreement median {record.median_score:.3g} over {len(candidates)} "
                       f"candidates, {record.chosen_score:.3g} at the {batch} picked")
        if log is not None:
            log(f"active round {round_index}/{rounds}: fitted {size} members to {record.samples} samples "
                f"in {record.fit_seconds:.1f} s{message}")
    result.summary["active"] = [
        {"samples": r.samples, "fit_seconds": round(r.fit_seconds, 3), "median_score": r.median_score,
         "chosen_score": r.chosen_score}
        for r in history
    ]
    if result.writes_files:
        write_json(output_dir / SUMMARY_FILE, result.summary)
    return ActiveResult(
        surrogate=result.surrogate, X=X, y=y[:, 0] if first.scalar_output else y, rounds=history,
        summary=result.summary, gradients=gradients,
    )


def fit_active(
    function: Callable[[np.ndarray], Any],
    lower: Sequence[float],
    upper: Sequence[float],
    initial: int = 500,
    batch: int = 500,
    rounds: int = 3,
    ensemble_size: int = 4,
    candidates_per_pick: int = 20,
    overrides: Sequence[str] = (),
    seed: int = 0,
    output_dir: str | Path | None = None,
    log: Callable[[str], None] | None = print,
) -> ActiveResult:
    """Fit a surrogate ensemble to a black box, sampling where its Hessian is least certain.

    ``initial`` Sobol samples first, then ``rounds`` rounds of ``batch`` samples each where
    the ensemble disagrees most about the Hessian (:func:`active_train`). Total evaluations
    of ``function``: ``initial + rounds × batch``.

    Args:
        function: The black box: (N, d) float64 numpy inputs → (N,) or (N, m) outputs.
        lower: (d,) lower corner of the box to sample.
        upper: (d,) upper corner.
        initial: Samples of the first, space-filling design.
        batch: Samples added per round.
        rounds: Acquisition rounds (0: a plain Sobol fit of ``initial`` samples).
        ensemble_size: K ≥ 2 members, whose spread scores the candidates; the final
            surrogate is this ensemble, so queries can ``return_std``.
        candidates_per_pick: Candidate pool size per sample added.
        overrides: Hydra overrides for every fit (as :func:`surrogates.fit`).
        seed: Seeds the designs and the fits.
        output_dir: Optional run folder (see :func:`active_train`); by default a temporary
            folder that is deleted afterwards.
        log: Called with one line per round (None: silent).

    Returns:
        :class:`ActiveResult` with the final ensemble, all samples, and per-round records.
    """
    if int(initial) != initial or initial < 1:
        raise InputError(f"fit_active: initial must be a positive integer, got {initial!r}")
    cfg = compose_config("train", ["data=arrays", f"ensemble.size={ensemble_size}", f"seed={seed}", *overrides])
    source = CallableSource(function, lower, upper, n_samples=initial, sampler="sobol", seed=seed)
    with contextlib.ExitStack() as stack:
        folder = output_dir if output_dir is not None else stack.enter_context(tempfile.TemporaryDirectory(prefix="surrogates-active-"))
        return active_train(cfg, source, folder, rounds, batch, candidates_per_pick, log)
