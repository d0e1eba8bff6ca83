"""The smallest Hessian eigenvalue of the 85k-parameter benchmark MLP: Lanczos before and after, same run.

Model: ``surrogates.landscape.teacher_classification()`` (tanh MLP 64-256-256-10, 85 002
parameters, 2048 samples, 200 full-batch Adam steps), float32 Hessian of the mean cross-entropy.
Reference: ``scipy.sparse.linalg.eigsh(which="SA")`` on the float64 operator (independent code).

For each start seed:

* **before** — the Lanczos of ``main`` at f42a61b, reproduced below as ``legacy_lanczos`` without
  its deflation and breakdown branches, which this network never takes (two Gram-Schmidt
  passes every step, a full tridiagonal eigendecomposition every step, stop when
  ``r <= tol * max|theta|``);
* **after** — :func:`surrogates.landscape.lanczos` (one recurrence with DGKS
  reorthogonalisation, only the wanted Ritz pairs per step, stop when ``r <= tol * spread``),
  at the default tolerance and at ``tol=1e-4`` and ``1e-3``, each with its bracket
  ``lambda_min in [lower_bound, theta_min]`` (probability >= 0.99);
* **any Krylov method** — from the same start, the first step at which the smallest Ritz
  value is within ``tol * spread`` of the reference: no method that only multiplies by H
  (shifts, polynomial filters, restarts) can know lambda_min to that accuracy sooner, because
  its vectors lie in the same Krylov space, whose smallest Ritz value is the minimum of the
  Rayleigh quotient over it.

Products and wall/CPU seconds are medians over the seeds; every run builds a fresh operator.

    python scripts/bench_lanczos_bottom.py --threads 1 --seeds 0,1,2,3,4
    python scripts/bench_lanczos_bottom.py --reuse-reference scripts/results/bench_lanczos_bottom.json  # skip eigsh
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from scipy.sparse.linalg import eigsh

from surrogates.io import write_json
from surrogates.landscape import HessianOperator, lanczos, teacher_classification
from surrogates.landscape._util import make_generator
from surrogates.landscape.krylov import LanczosRecurrence, random_unit

RESULTS = Path(__file__).resolve().parent / "results"


def legacy_lanczos(op, k: int, max_iter: int, tol: float, seed: int) -> dict[str, Any]:
    """``lanczos(op, k, "SA")`` as on main at f42a61b (no deflation, no restarts needed here)."""
    n = op.shape[0]
    gen = make_generator(seed)

    def orth(w, basis):
        for _ in range(2):
            w = w - basis @ (basis.T @ w)
        return w

    q = torch.randn(n, generator=gen, dtype=torch.float64)
    q = q / torch.linalg.vector_norm(q)
    Q = torch.zeros(max_iter, n, dtype=torch.float64).T
    alpha, beta = np.zeros(max_iter), np.zeros(max_iter)
    start = op.num_products
    for j in range(max_iter):
        Q[:, j] = q
        w = op @ q
        alpha[j] = float(q @ w)
        w = w - alpha[j] * q
        if j > 0:
            w = w - beta[j - 1] * Q[:, j - 1]
        w = orth(w, Q[:, : j + 1])
        b = float(torch.linalg.vector_norm(w))
        m = j + 1
        theta, S = eigh_tridiagonal(alpha[:m], beta[: m - 1]) if m > 1 else (alpha[:1].copy(), np.ones((1, 1)))
        scale = max(float(np.max(np.abs(theta))), 1e-300)
        beta[j] = b
        q = w / b
        if m >= max(k, 2 * k):
            res = beta[j] * np.abs(S[m - 1, :k])
            if np.all(res <= tol * scale):
                break
    res = beta[m - 1] * np.abs(S[m - 1, :k])
    return {"eigenvalue": float(theta[0]), "products": op.num_products - start, "converged": bool(np.all(res <= tol * scale))}


def krylov_floor(op, seed: int, steps: int, reference: float, tols: list[float]) -> dict[str, int | None]:
    """First step at which the smallest Ritz value from ``seed``'s start is within tol * spread of the reference."""
    gen = make_generator(seed)
    rec = LanczosRecurrence(op, steps, random_unit(op.shape[0], gen, op.device), restart=gen)
    first: dict[str, int | None] = {f"{t:g}": None for t in tols}
    while rec.step() and any(v is None for v in first.values()):
        if rec.m < 2:
            continue
        theta = eigh_tridiagonal(rec.alpha, rec.beta[: rec.m - 1], eigvals_only=True)
        for t in tols:
            if first[f"{t:g}"] is None and theta[0] - reference <= t * (theta[-1] - theta[0]):
                first[f"{t:g}"] = rec.m
    return first


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def reference_bottom(ex) -> tuple[float, int, float]:
    op64 = HessianOperator(ex.model, ex.loss_fn, (ex.X, ex.Y), dtype=torch.float64)
    t = time.perf_counter()
    lam = eigsh(op64.to_scipy(), k=1, which="SA", tol=1e-8, ncv=128, return_eigenvectors=False)
    return float(lam[0]), op64.num_products, time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", default="0,1,2,3,4", help="start-vector seeds (comma-separated)")
    ap.add_argument("--max-iter", type=int, default=400, help="product budget of every run")
    ap.add_argument("--reference", type=float, default=None, help="skip eigsh and use this lambda_min")
    ap.add_argument("--reuse-reference", default=None, help="skip eigsh and take the reference from this earlier JSON")
    ap.add_argument("--out", default=str(RESULTS / "bench_lanczos_bottom"), help="output path without suffix")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    machine = {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "python": sys.version.split()[0], "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    ex = teacher_classification()
    data = (ex.X, ex.Y)
    if args.reuse_reference:
        import json

        reference = json.loads(Path(args.reuse_reference).read_text())["reference"]
        reference["reused_from"] = args.reuse_reference
    elif args.reference is not None:
        reference = {"lambda_min": args.reference, "eigsh_products": 0, "seconds": 0.0, "source": "command line"}
    else:
        lam, products, seconds = reference_bottom(ex)
        reference = {"lambda_min": lam, "eigsh_products": products, "seconds": seconds}
    ref = float(reference["lambda_min"])
    print(f"model {ex.info['sizes']} ({ex.info['num_params']} parameters); reference lambda_min = {ref:.9g} "
          f"(float64 eigsh, {reference['eigsh_products']} products, {reference['seconds']:.0f} s); threads={torch.get_num_threads()}")

    tol32 = 1e-5  # default_tol(float32), the tolerance of both "before" and "after"
    tols = [tol32, 1e-4, 1e-3]
    rows: dict[str, list[dict[str, Any]]] = {"before": [], **{f"after tol={t:g}": [] for t in tols}, "after max_iter=100": []}
    floors = []
    for seed in seeds:
        op = HessianOperator(ex.model, ex.loss_fn, data)
        out, wall, cpu = timed(lambda: legacy_lanczos(op, 1, args.max_iter, tol32, seed))
        rows["before"].append({**out, "wall_s": wall, "cpu_s": cpu, "rel_error": abs(out["eigenvalue"] - ref) / abs(ref)})
        runs = [(f"after tol={t:g}", t, args.max_iter) for t in tols] + [("after max_iter=100", tol32, 100)]
        for name, t, budget in runs:
            op = HessianOperator(ex.model, ex.loss_fn, data)
            res, wall, cpu = timed(lambda: lanczos(op, 1, "SA", max_iter=budget, tol=t, seed=seed, warn=False))
            lam = float(res.eigenvalues[0])
            rows[name].append({
                "eigenvalue": lam, "products": res.num_products, "converged": res.all_converged,
                "wall_s": wall, "cpu_s": cpu, "rel_error": abs(lam - ref) / abs(ref),
                "residual": float(res.residuals[0]), "spread": res.scale, "lower_bound": res.lower_bound,
                "bracket_holds": bool(res.lower_bound <= ref <= lam + 1e-7 * res.scale),
            })
        floors.append(krylov_floor(HessianOperator(ex.model, ex.loss_fn, data), seed, args.max_iter, ref, tols))
        print(f"seed {seed}: before {rows['before'][-1]['products']} products, after {rows[f'after tol={tol32:g}'][-1]['products']}, "
              f"Krylov floor {floors[-1]}")

    def med(name, key):
        vals = [r[key] for r in rows[name]]
        return statistics.median(vals)

    header = f"{'run':<22}{'products':>9}{'wall s':>8}{'cpu s':>8}{'rel err':>10}{'converged':>11}{'bracket width':>15}"
    lines = [header, "-" * len(header)]
    for name in rows:
        conv = sum(r["converged"] for r in rows[name])
        width = "—" if name == "before" else f"{statistics.median([(r['eigenvalue'] - r['lower_bound']) / abs(ref) for r in rows[name]]):.1%}"
        lines.append(f"{name:<22}{med(name, 'products'):>9.0f}{med(name, 'wall_s'):>8.1f}{med(name, 'cpu_s'):>8.1f}"
                     f"{med(name, 'rel_error'):>10.1e}{f'{conv}/{len(seeds)}':>11}{width:>15}")
    for t in tols:
        vals = [f[f"{t:g}"] for f in floors]
        known = [v for v in vals if v is not None]
        lines.append(f"any Krylov method: lambda_min within {t:g}*spread after {statistics.median(known) if known else '>' + str(args.max_iter):>5} "
                     f"products (median; per seed {vals})")
    lines.append(f"medians over seeds {seeds}; rel err = |theta_min - lambda_min| / |lambda_min|; bracket width = "
                 "(theta_min - lower_bound) / |lambda_min| at confidence 0.99; threads=" + str(torch.get_num_threads()))
    print("\n".join(lines))
    result = {"machine": machine, "model": ex.info, "reference": reference,
              "seeds": seeds, "max_iter": args.max_iter, "runs": rows, "krylov_floor": floors, "table": lines}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    write_json(out.with_suffix(".json"), result)
    print(f"wrote {out.with_suffix('.txt')} and {out.with_suffix('.json')}")
    return result


if __name__ == "__main__":
    main()
