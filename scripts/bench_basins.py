"""Basins of attraction: cost and accuracy of :func:`surrogates.critical.flow.basins`.

The quartic x⁴ + y⁴ − 4xy + 1 on [−2, 2]² has two minima, ±(1, 1), and the point symmetry
(x, y) → (−x, −y) exchanges their basins: each drains exactly 50 % of the box. Measured, in
one run with ``--threads`` torch threads:

* **time**: wall and process-CPU seconds of ``s.basins(points=n)`` on the protocol's fitted
  surrogate (2000 uniform samples, ``numpy.random.default_rng(1)``, default train config) and
  on the exact function, medians of ``--repeats``; next to it the baseline in the same run,
  ``s.critical_points()`` (the search every basins call starts with);
* **accuracy**: each minimum's fraction minus the exact 0.5, with the reported standard error;
* **RQMC against plain Monte Carlo**: the standard error of the same estimate from the same
  number of i.i.d. uniform starts (8 replicates, spread over them), flows and matching identical;
* **integrator tolerance**: labels at the basins defaults (step_tol 1e-3, max_step 0.25) and
  at the flow's defaults (1e-4, 0.05) that differ from a tight reference (1e-7, 0.01) on the same
  Sobol starts, for the surrogate, the exact quartic and a cosine landscape (four basins, half
  of its box draining out).

Usage::

    python scripts/bench_basins.py                       # ~3 min on 2 shared cores
    python scripts/bench_basins.py --points 1024 4096 --repeats 3 --overrides debug=fast
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def waves(X: torch.Tensor) -> torch.Tensor:
    """cos 3x + cos 3y + 0.3xy on [−3, 3]²: four interior minima, half of the box draining out of it."""
    return torch.cos(3 * X[:, 0]) + torch.cos(3 * X[:, 1]) + 0.3 * X[:, 0] * X[:, 1]


def timed(call: Callable[[], Any], repeats: int) -> tuple[Any, float, float]:
    """(last result, median wall s, median process-CPU s) of ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return result, statistics.median(walls), statistics.median(cpus)


def plain_monte_carlo(f: Any, lower: np.ndarray, upper: np.ndarray, minima: list, points: int, seed: int,
                      replicates: int = 8, match_tol: float = 0.01) -> list[dict[str, float]]:
    """Each minimum's fraction from i.i.d. uniform starts: mean and stderr over replicates."""
    from surrogates.critical.flow import gradient_flow

    rng = np.random.default_rng(seed)
    starts = rng.uniform(lower, upper, (replicates * math.ceil(points / replicates), len(lower)))
    flow = gradient_flow(f, starts, lower, upper, step_tol=1e-3, max_step=0.25, keep_paths=False)
    width = upper - lower
    centres = (np.array([p.x for p in minima]) - lower) / width
    distances = np.linalg.norm(((flow.ends - lower) / width)[:, None, :] - centres[None], axis=-1)
    labels = np.where((flow.reasons == "critical") & (distances.min(1) <= match_tol * math.sqrt(len(lower))),
                      distances.argmin(1), -1)
    per = labels.reshape(replicates, -1)
    out = []
    for k in range(len(minima)):
        shares = (per == k).mean(axis=1)
        out.append({"fraction": float(shares.mean()), "stderr": float(shares.std(ddof=1) / math.sqrt(replicates))})
    return out


def fit_quartic(overrides: list[str]) -> Any:
    import surrogates
    from surrogates.fitting.functions import get_function

    function = get_function("quartic")
    X = np.random.default_rng(1).uniform(function.lower, function.upper, (2000, 2))
    return surrogates.fit(X, function.value(X), overrides=["trainer.enable_progress_bar=false", "logger=none", *overrides])


def tolerance_study(cases: dict[str, tuple[Any, np.ndarray, np.ndarray]], points: int) -> list[dict[str, Any]]:
    from surrogates.critical.flow import basins
    from surrogates.critical.search import find_critical_points

    rows = []
    for name, (f, lower, upper) in cases.items():
        found = find_critical_points(f, lower, upper)
        reference, _, reference_cpu = timed(
            lambda: basins(f, lower, upper, minima=found, points=points, step_tol=1e-7, max_step=0.01), 1)
        for step_tol, max_step in ((1e-3, 0.25), (1e-4, 0.05), (1e-2, 0.25)):
            report, wall, cpu = timed(
                lambda: basins(f, lower, upper, minima=found, points=points, step_tol=step_tol, max_step=max_step), 1)
            rows.append({"case": name, "step_tol": step_tol, "max_step": max_step, "points": points,
                         "labels_differing": int((report.labels != reference.labels).sum()),
                         "cpu_seconds": cpu, "wall_seconds": wall, "reference_cpu_seconds": reference_cpu})
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--overrides", nargs="*", default=[], help="train overrides for the quartic surrogate")
    parser.add_argument("--tolerance-points", type=int, default=4096)
    parser.add_argument("--out", default=str(RESULTS / "bench_basins.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from surrogates.critical.flow import basins
    from surrogates.critical.search import find_critical_points
    from surrogates.fitting.functions import get_function

    function = get_function("quartic")
    started = time.perf_counter()
    surrogate = fit_quartic(args.overrides)
    fit_seconds = time.perf_counter() - started
    lines = [
        f"bench_basins: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        f"  torch threads={args.threads}; load average at start {os.getloadavg()[0]:.1f} (a shared machine: CPU s is the steadier figure)",
        f"  quartic surrogate: 2000 samples, overrides {args.overrides or 'none'}, fitted in {fit_seconds:.1f} s; "
        f"medians of {args.repeats} runs",
    ]
    rows = []
    for label, f, lower, upper, search in (
        ("surrogate", surrogate.model, surrogate.lower, surrogate.upper, surrogate.critical_points),
        ("exact", function.value, function.lower, function.upper,
         lambda: find_critical_points(function.value, function.lower, function.upper).points),
    ):
        minima_points, search_wall, search_cpu = timed(search, args.repeats)
        minima = [p for p in minima_points if p.kind == "minimum" and p.in_domain]
        for points in args.points:
            report, wall, cpu = timed(lambda: basins(f, lower, upper, points=points), args.repeats)
            mc = plain_monte_carlo(f, lower, upper, [b.point for b in report], points, seed=0)
            rows.append({
                "function": label, "points": points, "wall_seconds": wall, "cpu_seconds": cpu,
                "search_wall_seconds": search_wall, "search_cpu_seconds": search_cpu,
                "minima": len(report), "found_minima": len(minima),
                "fractions": [b.fraction for b in report], "stderrs": [b.stderr for b in report],
                "errors": [b.fraction - 0.5 for b in report],
                "outside_fraction": report.outside_fraction, "unassigned_fraction": report.unassigned_fraction,
                "mc_stderrs": [m["stderr"] for m in mc], "mc_errors": [m["fraction"] - 0.5 for m in mc],
            })

    header = (f"{'function':<10} {'points':>6} {'basins s':>9} {'cpu s':>7} {'search s':>9} {'cpu s':>7} "
              f"{'max |frac − 0.5|':>17} {'RQMC stderr':>12} {'MC stderr':>10} {'MC |err|':>9} {'out':>5} {'unas.':>6}")
    lines += ["", header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['function']:<10} {r['points']:>6} {r['wall_seconds']:>9.2f} {r['cpu_seconds']:>7.2f} "
            f"{r['search_wall_seconds']:>9.2f} {r['search_cpu_seconds']:>7.2f} "
            f"{max(abs(e) for e in r['errors']):>17.4f} {max(r['stderrs']):>12.4f} {max(r['mc_stderrs']):>10.4f} "
            f"{max(abs(e) for e in r['mc_errors']):>9.4f} {r['outside_fraction']:>5.3f} {r['unassigned_fraction']:>6.3f}"
        )

    study = tolerance_study({
        "surrogate": (surrogate.model, surrogate.lower, surrogate.upper),
        "exact": (function.value, function.lower, function.upper),
        "waves": (waves, np.array([-3.0, -3.0]), np.array([3.0, 3.0])),
    }, args.tolerance_points)
    lines += ["", f"labels differing from step_tol=1e-7, max_step=0.01 ({args.tolerance_points} Sobol starts each)",
              f"{'case':<10} {'step_tol':>8} {'max_step':>8} {'differing':>9} {'cpu s':>7} {'reference cpu s':>15}"]
    for r in study:
        lines.append(f"{r['case']:<10} {r['step_tol']:>8g} {r['max_step']:>8g} {r['labels_differing']:>9} {r['cpu_seconds']:>7.2f} {r['reference_cpu_seconds']:>15.2f}")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {"threads": args.threads, "overrides": args.overrides, "fit_seconds": fit_seconds, "rows": rows,
                "tolerance_study": study, "platform": platform.platform()}
    out.write_text(json.dumps(document, indent=2))
    out.with_suffix(".txt").write_text(text + "\n")
    return document


if __name__ == "__main__":
    main()
