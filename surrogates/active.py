"""Active sampling: spend a simulator's sample budget where the surrogate's Hessian is least sure.

For a black box that is expensive to call, uniform samples waste evaluations where the
function is simple. :func:`fit_active` fits an ensemble, scores a pool of candidate points by
the ensemble's disagreement on the Hessian,

    s(x) = ‖ std_k Ĥ_k(x) ‖_F   (entry-wise std over the K members, Frobenius norm, all outputs),

evaluates the function at the highest-scoring candidates, refits, and repeats until the budget
is spent. Candidates are picked greedily with an exclusion radius so that one batch does not
pile into a single hot spot (the disagreement is smooth, its top candidates are neighbours).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy.spatial import cKDTree

from surrogates.api import fit
from surrogates.data import DataError, evaluate_callable, sample_box
from surrogates.surrogate import Surrogate


@dataclass
class ActiveRound:
    """One fit of the active loop.

    Attributes:
        samples: Samples the ensemble was fitted to.
        fit_seconds: Wall time of the ensemble fit.
        median_score: Median Hessian disagreement s(x) over the candidate pool (None after
            the last fit, which scores nothing).
        chosen_score: Median s(x) of the candidates picked for the next round.
    """

    samples: int
    fit_seconds: float
    median_score: float | None = None
    chosen_score: float | None = None


@dataclass
class ActiveResult:
    """What :func:`fit_active` returns: the final ensemble, every sample taken, and the rounds."""

    surrogate: Surrogate
    X: np.ndarray
    y: np.ndarray
    rounds: list[ActiveRound] = field(default_factory=list)


def hessian_disagreement(surrogate: Surrogate, X: np.ndarray) -> np.ndarray:
    """s(x) = ‖std_k Ĥ_k(x)‖_F at each of the (N, d) points ``X`` (all outputs together).

    Raises:
        ValueError: If ``surrogate`` is a single network (no spread to measure).
    """
    if surrogate.ensemble_size < 2:
        raise ValueError("Hessian disagreement needs an ensemble: fit with ensemble.size >= 2")
    _, std = surrogate.hessian(np.asarray(X, dtype=np.float64), return_std=True)
    return np.sqrt((std.reshape(len(X), -1) ** 2).sum(axis=1))


def pick_spread_out(unit_candidates: np.ndarray, scores: np.ndarray, unit_samples: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` high-score candidates, greedily, none closer than a radius to another.

    The radius is half the median distance from a candidate to its nearest existing sample
    (coordinates scaled to the unit box), so a batch covers about as many distinct regions as
    the existing design has points there; if the radius excludes too much it is halved.
    """
    if count > len(unit_candidates):
        raise ValueError(f"cannot pick {count} points from {len(unit_candidates)} candidates")
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

    Round 0 fits ``initial`` Sobol samples; each of ``rounds`` rounds then scores
    ``candidates_per_pick × batch`` fresh Sobol candidates by :func:`hessian_disagreement`,
    evaluates ``function`` at ``batch`` of the highest-scoring ones (:func:`pick_spread_out`)
    and refits on everything. Total evaluations: ``initial + rounds × batch``.

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
        seed: Seeds the Sobol scrambles and the fits.
        output_dir: Optional folder; round r's fit goes to ``output_dir/round<r>``.
        log: Called with one line per round (None: silent).

    Returns:
        :class:`ActiveResult` with the final ensemble, all samples, and per-round records.
    """
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    for name, value, least in (("initial", initial, 1), ("batch", batch, 1), ("rounds", rounds, 0),
                               ("ensemble_size", ensemble_size, 2), ("candidates_per_pick", candidates_per_pick, 1)):
        if int(value) != value or value < least:
            raise ValueError(f"fit_active: {name} must be an integer >= {least}, got {value!r}")
    rng = np.random.default_rng(seed)
    X = sample_box(initial, lower, upper, "sobol", rng)
    y = evaluate_callable(function, X)
    width = upper - lower
    history: list[ActiveRound] = []
    for round_index in range(rounds + 1):
        started = time.perf_counter()
        surrogate = fit(
            X, y,
            overrides=[f"ensemble.size={ensemble_size}", f"seed={seed}", *overrides],
            output_dir=None if output_dir is None else Path(output_dir) / f"round{round_index}",
            lower=lower, upper=upper,
        )
        record = ActiveRound(samples=len(X), fit_seconds=time.perf_counter() - started)
        history.append(record)
        if round_index == rounds:
            message = ""
        else:
            candidates = sample_box(candidates_per_pick * batch, lower, upper, "sobol", rng)
            scores = hessian_disagreement(surrogate, candidates)
            chosen = pick_spread_out((candidates - lower) / width, scores, (X - lower) / width, batch)
            record.median_score, record.chosen_score = float(np.median(scores)), float(np.median(scores[chosen]))
            X_new = candidates[chosen]
            y_new = evaluate_callable(function, X_new)
            if y_new.shape[1:] != y.shape[1:]:
                raise DataError(f"the black box returned outputs of shape {y_new.shape[1:]} in round {round_index + 1}, {y.shape[1:]} before")
            X, y = np.concatenate([X, X_new]), np.concatenate([y, y_new])
            message = (f"; Hessian disagreement median {record.median_score:.3g} over {len(candidates)} "
                       f"candidates, {record.chosen_score:.3g} at the {batch} picked")
        if log is not None:
            log(f"active round {round_index}/{rounds}: fitted {ensemble_size} members to {record.samples} samples "
                f"in {record.fit_seconds:.1f} s{message}")
    return ActiveResult(surrogate=surrogate, X=X, y=y, rounds=history)
