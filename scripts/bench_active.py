"""Active sampling against uniform sampling: Hessian error per black-box evaluation.

A protocol function (default mixed10) plays the black box. Two arms, same ensemble and
configuration:

* ``active`` — :func:`surrogates.fitting.active.fit_active`: ``--initial`` Sobol samples, then
  ``--rounds`` rounds adding ``--batch`` samples where the ensemble's Hessian disagreement is
  largest;
* ``uniform`` — scrambled Sobol designs of the same sizes (and the extra ``--uniform-extra``
  sizes, to see how many uniform samples the active arm's error is worth).

Errors of the ensemble mean (median over test points, :mod:`surrogates.fitting.metrics`) on two test
sets: the protocol's 500 points in the central 80 % of the box (in 10-D only 11 % of its
volume) and 500 points uniform over the whole box. Fits run in ``--jobs`` worker processes
(the active arm is one chain, the uniform sizes are independent), each with ``--threads``
threads; times are wall clock per fit.

Usage::

    python scripts/bench_active.py                       # mixed10, 1000 + 3 x 1000, K = 4 (~1 h on 2 cores)
    python scripts/bench_active.py --function quartic --initial 200 --batch 100 --rounds 2 \\
        --uniform-extra 800 --overrides trainer.max_epochs=230
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np


def _prepare_worker(threads: int) -> None:
    """Thread limits for this worker; Lightning's per-fit banners (accelerator lines, tips)
    would otherwise fill the report, one set per member and round."""
    import logging

    import torch

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)
    except ImportError:
        pass


def _errors(surrogate: Any, function: Any) -> dict[str, float]:
    """Per test set: the protocol's median relative Hessian error, and relative RMS errors
    sqrt(Σ‖ĝ − g‖² / Σ‖g‖²) and sqrt(Σ‖Ĥ − H‖²_F / Σ‖H‖²_F) — a whole-set measure that stays
    meaningful where the exact derivatives vanish (the median relative error does not)."""
    from surrogates.fitting.metrics import derivative_errors, protocol_test_points

    whole = np.random.default_rng(3).uniform(function.lower, function.upper, (500, function.dim))
    out = {}
    for label, X in (("central", protocol_test_points(function.lower, function.upper)), ("box", whole)):
        out[f"{label}_hessian_median"] = derivative_errors(surrogate, function, X)["hessian"]["median"]
        for name in ("gradient", "hessian"):
            exact = np.asarray(getattr(function, name)(X)).reshape(len(X), -1)
            error = np.asarray(getattr(surrogate, name)(X)).reshape(len(X), -1) - exact
            out[f"{label}_{name}_rms"] = float(np.sqrt((error**2).sum() / (exact**2).sum()))
    return out


def _source(args: argparse.Namespace, samples: int, seed: int) -> Any:
    """The protocol function as a black box: a Sobol design, noise of ``args.noise`` × the
    outputs' std over that design, and (for the active arm) more points at the same noise level."""
    from surrogates.fitting.sources import FunctionSource

    return FunctionSource(args.function, n_samples=samples, sampler="sobol", noise=args.noise, seed=seed)


def run_active(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The active chain; every round's ensemble is scored, so the curve has one row per size."""
    import tempfile
    import warnings

    from surrogates.config import compose_config
    from surrogates.fitting.active import active_train

    _prepare_worker(args.threads)
    cfg = compose_config("train", ["data=arrays", f"ensemble.size={args.ensemble}", f"seed={args.seed}", *_overrides(args)])
    source = _source(args, args.initial, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-active-") as scratch:
        result = active_train(cfg, source, scratch, rounds=args.rounds, batch=args.batch,
                              log=lambda line: print("  " + line, flush=True))
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for record in result.rounds:
            errors = _errors(record.surrogate, source.function)
            rows.append({"arm": "active", "samples": record.samples, "fit_seconds": record.fit_seconds, **errors})
    return rows


def run_uniform(args: argparse.Namespace, samples: int) -> list[dict[str, Any]]:
    import warnings

    from surrogates.fitting.fit import fit

    _prepare_worker(args.threads)
    source = _source(args, samples, args.seed + 1)
    design = source.load()
    started = time.perf_counter()
    surrogate = fit(
        design.X, design.y[:, 0] if design.scalar_output else design.y,
        overrides=[f"ensemble.size={args.ensemble}", f"seed={args.seed}", *_overrides(args)],
        lower=source.lower, upper=source.upper,
    )
    seconds = time.perf_counter() - started
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = {"arm": "uniform", "samples": samples, "fit_seconds": seconds, **_errors(surrogate, source.function)}
    print(f"  uniform {samples:6d} samples: Hessian RMS {row['box_hessian_rms']:.3%} (box) in {seconds:.0f} s", flush=True)
    return [row]


def _overrides(args: argparse.Namespace) -> list[str]:
    return ["logger=none", "trainer.enable_progress_bar=false", *args.overrides]


def uniform_samples_for(error: float, uniform: list[dict[str, Any]], key: str) -> float | None:
    """Uniform sample count reaching ``error``, by log-log interpolation of the uniform curve
    (None when the curve never gets there)."""
    curve = sorted((r["samples"], r[key]) for r in uniform)
    if curve and curve[0][1] <= error:
        return float(curve[0][0])
    for (n0, e0), (n1, e1) in zip(curve, curve[1:]):
        if e0 >= error >= e1 and e0 != e1:
            t = math.log(e0 / error) / math.log(e0 / e1)
            return math.exp(math.log(n0) + t * math.log(n1 / n0))
    return None


#: (column key, header, what the interpolation line calls it)
COLUMNS = (
    ("central_hessian_median", "Hess med. central", "median relative Hessian error, central 80 %"),
    ("central_gradient_rms", "grad RMS central", None),
    ("central_hessian_rms", "Hess RMS central", "relative RMS Hessian error, central 80 %"),
    ("box_gradient_rms", "grad RMS box", None),
    ("box_hessian_rms", "Hess RMS box", "relative RMS Hessian error, whole box"),
)


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.3g}%"


def format_report(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'arm':8s} {'samples':>7s} " + " ".join(f"{header:>17s}" for _, header, _ in COLUMNS) + f" {'fit s':>7s}"]
    for r in sorted(rows, key=lambda r: (r["samples"], r["arm"])):
        lines.append(f"{r['arm']:8s} {r['samples']:7d} " + " ".join(f"{_pct(r[key]):>17s}" for key, _, _ in COLUMNS)
                     + f" {r['fit_seconds']:7.0f}")
    uniform = [r for r in rows if r["arm"] == "uniform"]
    smallest = min(r["samples"] for r in uniform)
    for key, _, label in COLUMNS:
        if label is None:
            continue
        lines.append(f"{label}: uniform samples needed for the error of each active round")
        for active in sorted((r for r in rows if r["arm"] == "active" and r["samples"] > smallest), key=lambda r: r["samples"]):
            needed = uniform_samples_for(active[key], uniform, key)
            if needed is None:
                verdict = "not reached by any uniform size run"
            elif needed == smallest:
                verdict = f"reached already at {smallest} (active sampling did not pay)"
            else:
                verdict = f"~{needed:.0f} ({needed / active['samples']:.2f}x)"
            lines.append(f"  active {active['samples']:6d} samples, {_pct(active[key])}: {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--function", default="mixed10")
    parser.add_argument("--noise", type=float, default=0.0, help="noise std as a fraction of f's std over each first design (default 0)")
    parser.add_argument("--initial", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ensemble", type=int, default=4, help="members K per fit, both arms (default 4)")
    parser.add_argument("--uniform-extra", default="6000,8000", help="extra uniform sizes (comma list)")
    parser.add_argument("--overrides", nargs="*", default=[], help="Hydra overrides for every fit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (default 1)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--out", default="bench_active.json")
    args = parser.parse_args(argv)

    sizes = [args.initial + r * args.batch for r in range(1, args.rounds + 1)]
    sizes += [int(s) for s in args.uniform_extra.split(",") if s]
    print(f"bench_active: {args.function}, noise {args.noise:g}, K = {args.ensemble}, {args.jobs} workers x "
          f"{args.threads} thread(s), {os.cpu_count()} cores, {platform.platform()}", flush=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        # the active chain's round 0 is the uniform arm's smallest size (the same Sobol design size)
        futures = [pool.submit(run_active, args)] + [pool.submit(run_uniform, args, n) for n in sorted(set(sizes), reverse=True)]
        rows = [row for future in futures for row in future.result()]
    rows += [{**r, "arm": "uniform"} for r in rows if r["arm"] == "active" and r["samples"] == args.initial]
    report = format_report(rows)
    print(report)
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    with open(args.out, "w") as handle:
        json.dump({"settings": vars(args), "rows": rows, "report": report}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
