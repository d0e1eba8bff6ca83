"""Are the trace estimators' standard errors right? Coverage of +-2 sigma over many seeds, on networks with exact traces.

For each network the exact trace of its loss Hessian is known: a dense float64 Hessian for the
small ones, the structural formula of ``bench_landscape.exact_mlp_trace`` (checked there against a
dense Hessian) for the 85k-parameter MLP. The estimators run on the network's own float32
:class:`~surrogates.landscape.HessianOperator`, as a user would, once per seed:

* ``hutchinson`` with 10 and 100 probes;
* ``hutchpp`` with 30 and 99 products;
* the implied trace of ``spectral_density`` with 8 probes x 12 steps, and with 32 x 12 deflated
  by a top-5 Lanczos basis (``keep_basis=True``, the CLI's setting; its products are counted).

A standard error is calibrated when ``|estimate - trace| <= 2 stderr`` in about 95.4 % of seeds
(target 93-97 %). Each row reports that coverage with the current standard errors and with the
ones the package computed before this benchmark existed ("legacy": the sample standard deviation
of the per-probe quadratic forms over sqrt(probes), for the density its ratio-estimator form),
both from the same probes, plus a Wilson 95 % interval for the coverage, the mean reported stderr
over the actual spread of the estimates (1 = right on average), and products per run.

    python scripts/bench_trace_calibration.py --threads 1 --seeds 200 --big-seeds 100
    python scripts/bench_trace_calibration.py --networks mlp-123 --seeds 100 --out /tmp/calibration
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from surrogates.io import write_json
from surrogates.landscape import (
    HessianOperator,
    bundled_example,
    dense_matrix,
    hutchinson,
    hutchpp,
    lanczos,
    spectral_density,
    teacher_classification,
)

RESULTS = Path(__file__).resolve().parent / "results"
_SCRIPTS = str(Path(__file__).resolve().parent)
BIG = "mlp-85k"


# ----------------------------------------------------------------------------- networks
def digits_cnn(steps: int = 150, seed: int = 0):
    """A 994-parameter tanh CNN on scikit-learn's 8x8 digits (1797 images), full-batch Adam."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
    Y = torch.tensor(digits.target)
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.Tanh(), nn.Conv2d(8, 8, 3, stride=2), nn.Tanh(), nn.Flatten(), nn.Linear(8 * 2 * 2, 10)
    )
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss_fn(model(X), Y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model, loss_fn, X, Y


def network(name: str):
    """(model, loss, X, Y, exact trace, how the trace was computed)."""
    if name == "mlp-123":
        ex = teacher_classification(n_samples=256, d_in=6, hidden=(12,), n_classes=3, steps=300, lr=1e-2)
        model, loss_fn, X, Y = ex.model, ex.loss_fn, ex.X, ex.Y
    elif name == "bundled-916":
        ex = bundled_example()
        model, loss_fn, X, Y = ex.model, ex.loss_fn, ex.X, ex.Y
    elif name == "digits-cnn-994":
        model, loss_fn, X, Y = digits_cnn()
    elif name == BIG:
        if _SCRIPTS not in sys.path:
            sys.path.insert(0, _SCRIPTS)
        from bench_landscape import _self_check, exact_mlp_trace

        _self_check()
        ex = teacher_classification()
        return ex.model, ex.loss_fn, ex.X, ex.Y, exact_mlp_trace(ex.model, ex.X, ex.Y), "exact_mlp_trace (structural, float64)"
    else:
        raise SystemExit(f"unknown network {name!r}")
    op64 = HessianOperator(model, loss_fn, (X, Y), dtype=torch.float64)
    trace = float(torch.trace(dense_matrix(op64)))
    return model, loss_fn, X, Y, trace, f"dense float64 Hessian ({op64.n} products)"


# ----------------------------------------------------------------------------- estimators
def legacy_density_stderr(dens) -> float:
    """The density's stderr as computed before: std(c (t - R)) / mean(c) / sqrt(P), from the same probes."""
    c = np.asarray(dens.probe_weights)
    first = np.array([float(np.sum(w * x)) for w, x in zip(dens.weights, dens.nodes)])  # u^T H u per probe
    t = (dens.n - len(dens.deflated)) * first
    ratio = float(np.sum(c * t) / np.sum(c))
    return float(np.std(c * (t - ratio), ddof=1) / np.mean(c) / np.sqrt(len(c)))


def estimators() -> dict[str, Callable[[HessianOperator, int], tuple[float, float, float]]]:
    """name -> f(op, seed) = (estimate, stderr, legacy stderr)."""

    def hutch(s):
        def run(op, seed):
            r = hutchinson(op, s, seed=seed)
            return r.value, r.stderr, float(np.std(r.samples, ddof=1) / np.sqrt(len(r.samples)))
        return run

    def pp(m):
        def run(op, seed):
            r = hutchpp(op, m, seed=seed)
            return r.value, r.stderr, float(np.std(r.samples, ddof=1) / np.sqrt(len(r.samples)))
        return run

    def density(probes, deflate):
        def run(op, seed):
            basis = lanczos(op, 5, "LA", keep_basis=True, seed=10**6 + seed, warn=False) if deflate else None
            d = spectral_density(op, probes, 12, seed=seed, deflate=basis)
            return d.trace, d.trace_stderr, legacy_density_stderr(d)
        return run

    return {
        "hutchinson 10": hutch(10),
        "hutchinson 100": hutch(100),
        "hutch++ 30": pp(30),
        "hutch++ 99": pp(99),
        "density 8x12": density(8, False),
        "density 32x12 deflated": density(32, True),
    }


BIG_ESTIMATORS = ("hutchinson 100", "hutch++ 99", "density 32x12 deflated")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def calibrate(name: str, seeds: int, only: tuple[str, ...] | None = None, log=print) -> dict[str, Any]:
    """Coverage of +-2 stderr for every estimator on one network, over ``seeds`` seeds."""
    t0 = time.perf_counter()
    model, loss_fn, X, Y, trace, how = network(name)
    op = HessianOperator(model, loss_fn, (X, Y))
    log(f"{name}: n={op.n}, N={len(X)}, exact trace {trace:.10g} ({how}; setup {time.perf_counter() - t0:.0f} s)")
    out: dict[str, Any] = {"n": op.n, "num_samples": len(X), "trace": trace, "trace_method": how, "estimators": {}}
    for label, run in estimators().items():
        if only is not None and label not in only:
            continue
        t = time.perf_counter()
        start = op.num_products
        est, se, legacy = np.empty(seeds), np.empty(seeds), np.empty(seeds)
        for s in range(seeds):
            est[s], se[s], legacy[s] = run(op, s)
        err = np.abs(est - trace)
        hits, hits_legacy = int(np.sum(err <= 2 * se)), int(np.sum(err <= 2 * legacy))
        row = {
            "seeds": seeds,
            "products_per_run": (op.num_products - start) / seeds,
            "coverage": hits / seeds,
            "coverage_interval": wilson(hits, seeds),
            "coverage_legacy": hits_legacy / seeds,
            "coverage_legacy_interval": wilson(hits_legacy, seeds),
            "stderr_over_spread": float(np.mean(se) / np.std(est, ddof=1)),
            "legacy_stderr_over_spread": float(np.mean(legacy) / np.std(est, ddof=1)),
            "spread": float(np.std(est, ddof=1)),
            "mean_stderr": float(np.mean(se)),
            "bias_over_stderr": float((np.mean(est) - trace) / (np.std(est, ddof=1) / math.sqrt(seeds))),
            "max_abs_z": float(np.max(err / se)),
            "seconds": time.perf_counter() - t,
        }
        out["estimators"][label] = row
        log(f"  {label:<24} coverage {row['coverage']:.3f} (legacy {row['coverage_legacy']:.3f}), "
            f"stderr/spread {row['stderr_over_spread']:.2f} (legacy {row['legacy_stderr_over_spread']:.2f}), "
            f"{row['products_per_run']:.0f} products, {row['seconds']:.0f} s")
    return out


def table(results: dict[str, Any]) -> list[str]:
    header = (f"{'network':<17}{'estimator':<25}{'seeds':>6}{'products':>9}{'coverage':>10}{'95% interval':>15}"
              f"{'legacy':>8}{'se/spread':>10}{'legacy':>8}{'spread':>10}")
    lines = [header, "-" * len(header)]
    for name, net in results.items():
        for label, r in net["estimators"].items():
            lo, hi = r["coverage_interval"]
            lines.append(f"{name:<17}{label:<25}{r['seeds']:>6d}{r['products_per_run']:>9.0f}{r['coverage']:>10.3f}"
                         f"{f'{lo:.3f}-{hi:.3f}':>15}{r['coverage_legacy']:>8.3f}{r['stderr_over_spread']:>10.2f}"
                         f"{r['legacy_stderr_over_spread']:>8.2f}{r['spread']:>10.3g}")
    lines.append("coverage: fraction of seeds with |estimate - exact trace| <= 2 stderr (target 0.93-0.97); legacy: the "
                 "sample-spread stderr of the same runs; se/spread: mean stderr / std of the estimates over seeds")
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--networks", default=f"mlp-123,bundled-916,digits-cnn-994,{BIG}")
    ap.add_argument("--seeds", type=int, default=200, help="seeds per estimator on the small networks")
    ap.add_argument("--big-seeds", type=int, default=100, help=f"seeds per estimator on {BIG}")
    ap.add_argument("--reuse", default=None, help="JSON of an earlier run: take the networks it has from it")
    ap.add_argument("--out", default=str(RESULTS / "bench_trace_calibration"), help="output path without suffix")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "python": sys.version.split()[0], "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    print(f"machine: {machine}")
    earlier = {}
    if args.reuse:
        import json

        earlier = json.loads(Path(args.reuse).read_text())["networks"]
    results: dict[str, Any] = {}
    for name in args.networks.split(","):
        if name in earlier:
            results[name] = earlier[name]
            print(f"{name}: reused from {args.reuse}")
            continue
        big = name == BIG
        results[name] = calibrate(name, args.big_seeds if big else args.seeds, BIG_ESTIMATORS if big else None)
    lines = table(results)
    lines.append(f"threads={torch.get_num_threads()}; {machine['processor']}, {machine['cpu_count']} cores")
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    result = {"machine": machine, "networks": results, "table": lines}
    write_json(out.with_suffix(".json"), result)
    print(f"wrote {out.with_suffix('.txt')} and {out.with_suffix('.json')}")
    return result


if __name__ == "__main__":
    main()
