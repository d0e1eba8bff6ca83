"""Benchmark: surrogates.landscape vs PyHessian on the issue-5 model, same process, same weights.

Model: tanh MLP 64-256-256-10 (85 002 parameters), 2048 standard-normal inputs, labels from a
fixed random linear teacher, 200 full-batch Adam steps, cross-entropy, float32, full batch.

For top-1, top-5, bottom-1, trace and density we report the median wall time over
``--reps`` repetitions (each builds a fresh operator, so graph construction is included),
Hessian-vector products, and the error against float64 references: ``scipy.sparse.linalg.eigsh``
on the float64 Hessian operator (eigenvalues) and an exact trace computed from the MLP's
structure (:func:`exact_mlp_trace`, checked against a dense Hessian at start-up). PyHessian
(optional, ``pip install pyhessian``) runs on a deep copy of the same model with its defaults.

    python scripts/bench_landscape.py --threads 1 --reps 3 --out bench_landscape.json
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np
import torch
from scipy.sparse.linalg import eigsh
from torch import nn
from torch.func import functional_call, hessian, vmap

from surrogates.io import write_json
from surrogates.landscape import (
    HessianOperator,
    exact_spectrum,
    hutchpp,
    lanczos,
    refine,
    spectral_density,
    teacher_classification,
)
from surrogates.landscape.example import tanh_mlp


# ----------------------------------------------------------------------------- exact trace
def exact_mlp_trace(model: nn.Sequential, X: torch.Tensor, Y: torch.Tensor, chunk: int = 128) -> float:
    """Exact trace of the mean cross-entropy Hessian of a Linear/Tanh MLP, in float64.

    For layer :math:`l` with input :math:`a` and pre-activation :math:`z = W a + b`,
    :math:`\\partial^2\\ell/\\partial W_{ij}^2 = a_j^2\\,[\\nabla_z^2\\ell]_{ii}` and
    :math:`\\partial^2\\ell/\\partial b_i^2 = [\\nabla_z^2\\ell]_{ii}`, so

    .. math:: \\operatorname{tr} H = \\frac1N\\sum_n\\sum_l (1 + \\lVert a_{l,n}\\rVert^2)\\,
              \\operatorname{tr}\\nabla^2_{z_l}\\ell_n ,

    with the per-sample pre-activation Hessians from ``vmap(hessian)`` of the rest of the net.
    """
    model = copy.deepcopy(model).double()
    layers = list(model)
    lin_idx = [i for i, m in enumerate(layers) if isinstance(m, nn.Linear)]
    X = X.double()
    total = 0.0
    for li in lin_idx:
        rest = nn.Sequential(*layers[li + 1 :])
        head = nn.Sequential(*layers[:li])

        def ell(z, y, rest=rest):
            out = rest(z[None])[0] if len(rest) else z
            return nn.functional.cross_entropy(out[None], y[None])

        for s in range(0, X.shape[0], chunk):
            xb, yb = X[s : s + chunk], Y[s : s + chunk]
            with torch.no_grad():
                a = head(xb) if len(head) else xb
                z = layers[li](a)
            Hz = vmap(hessian(ell))(z, yb)
            diag = torch.diagonal(Hz, dim1=1, dim2=2).sum(1)
            total += float(((1 + (a**2).sum(1)) * diag).sum().detach())
    return total / X.shape[0]


def _self_check() -> float:
    m = tanh_mlp([5, 7, 6, 3], seed=3, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(33, 5, generator=g, dtype=torch.float64)
    Y = torch.randint(0, 3, (33,), generator=g)
    op = HessianOperator(m, nn.CrossEntropyLoss(), (X, Y))
    dense = float(np.sum(exact_spectrum(op)))
    err = abs(exact_mlp_trace(m, X, Y) - dense) / abs(dense)
    if err > 1e-10:
        raise RuntimeError(f"exact_mlp_trace self-check failed: relative error {err:.2e}")
    return err


# ----------------------------------------------------------------------------- helpers
def timed(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def product_cost(ex, reps: int = 20) -> dict[str, float]:
    """Median time of one operator product vs one raw graph-reusing double backward."""
    op = HessianOperator(ex.model, ex.loss_fn, (ex.X, ex.Y))
    v = torch.randn(op.n, generator=torch.Generator().manual_seed(0))
    op @ v  # builds the cached graph
    t_op = []
    for _ in range(reps):
        t = time.perf_counter()
        op @ v
        t_op.append(time.perf_counter() - t)
    params = list(ex.model.parameters())
    leaves = [p.detach().requires_grad_() for p in params]
    names = [n for n, _ in ex.model.named_parameters()]
    loss = ex.loss_fn(functional_call(ex.model, dict(zip(names, leaves)), (ex.X,)), ex.Y)
    g = torch.autograd.grad(loss, leaves, create_graph=True)
    vs = [c.view_as(p) for c, p in zip(torch.split(v, [p.numel() for p in params]), params)]
    t_raw = []
    for _ in range(reps):
        t = time.perf_counter()
        torch.autograd.grad(g, leaves, vs, retain_graph=True)
        t_raw.append(time.perf_counter() - t)
    a, b = statistics.median(t_op), statistics.median(t_raw)
    return {"operator_product_s": a, "raw_double_backward_s": b, "ratio": a / b}


# ----------------------------------------------------------------------------- ours
def ours(ex, reps: int, ref: dict[str, Any]) -> dict[str, dict[str, Any]]:
    data = (ex.X, ex.Y)
    rows: dict[str, dict[str, Any]] = {}

    def op32():
        return HessianOperator(ex.model, ex.loss_fn, data)

    def top1():
        op = op32()
        return lanczos(op, 1, "LA"), op.num_products

    def top5_f32():
        op = op32()
        return lanczos(op, 5, "LA"), op.num_products

    def top5():
        op = op32()
        r = lanczos(op, 5, "LA")
        op64 = HessianOperator(ex.model, ex.loss_fn, data, dtype=torch.float64)
        r = refine(op64, r)
        return r, op.num_products + op64.num_products

    def bottom1():
        op = op32()
        return lanczos(op, 1, "SA", max_iter=400), op.num_products

    def trace():
        op = op32()
        return hutchpp(op, 99, seed=1), op.num_products

    def density():
        op = op32()
        top = lanczos(op, 5, "LA", keep_basis=True)
        d = spectral_density(op, 20, 16, seed=2, deflate=top)
        return d, op.num_products

    for name, fn in [("top-1", top1), ("top-5", top5), ("top-5 (float32 only)", top5_f32), ("bottom-1", bottom1), ("trace", trace), ("density", density)]:
        wall, (res, count) = timed(fn, reps)
        if name.startswith("top"):
            k = len(res.eigenvalues)
            err = rel(res.eigenvalues, ref["top5"][:k])
            extra = {"eigenvalues": res.eigenvalues.tolist(), "converged": res.all_converged}
        elif name == "bottom-1":
            err = rel(res.eigenvalues, ref["bottom1"])
            extra = {"eigenvalues": res.eigenvalues.tolist(), "converged": res.all_converged}
        elif name == "trace":
            err = rel(res.value, ref["trace"])
            extra = {"value": res.value, "stderr": res.stderr}
        else:
            err = rel(res.trace, ref["trace"])
            extra = {"implied_trace": res.trace, "stderr": res.trace_stderr, "slq_products": res.num_products}
        rows[name] = {"wall_s": wall, "hvps": count, "rel_error": err, **extra}
    return rows


# ----------------------------------------------------------------------------- PyHessian
def pyhessian_rows(ex, reps: int, ref: dict[str, Any]) -> dict[str, dict[str, Any]] | str:
    try:
        import pyhessian.hessian as ph
    except ImportError:
        return "PyHessian is not installed (pip install pyhessian); skipped"
    counter = {"n": 0}
    original = ph.hessian_vector_product

    def counting(gradsH, params, v):
        counter["n"] += 1
        return original(gradsH, params, v)

    ph.hessian_vector_product = counting
    rows: dict[str, dict[str, Any]] = {}
    try:
        def make():
            return ph.hessian(copy.deepcopy(ex.model), ex.loss_fn, data=(ex.X, ex.Y), cuda=False)

        cases = {
            "top-1": lambda: make().eigenvalues(top_n=1)[0],
            "top-5": lambda: make().eigenvalues(top_n=5)[0],
            "trace": lambda: float(np.mean(make().trace())),
            "density": lambda: make().density(),
        }
        for name, fn in cases.items():
            counts, times, out = [], [], None
            try:
                for _ in range(reps):
                    counter["n"] = 0
                    t = time.perf_counter()
                    out = fn()
                    times.append(time.perf_counter() - t)
                    counts.append(counter["n"])
            except Exception as err:  # report whatever PyHessian raises, keep benchmarking
                rows[name] = {"error": f"{type(err).__name__}: {str(err)[:160]}"}
                continue
            if name in ("top-1", "top-5"):
                vals = np.sort(np.asarray(out, dtype=np.float64))[::-1]
                err_v = rel(vals, ref["top5"][: len(vals)])
                extra = {"eigenvalues": vals.tolist()}
            elif name == "trace":
                err_v, extra = rel(out, ref["trace"]), {"value": out}
            else:
                eigs, weights = out
                implied = float(np.sum(np.asarray(eigs) * np.asarray(weights)) / len(eigs) * ex_n(ex))
                err_v, extra = rel(implied, ref["trace"]), {"implied_trace": implied}
            rows[name] = {"wall_s": statistics.median(times), "hvps": int(statistics.median(counts)), "rel_error": err_v, **extra}
    finally:
        ph.hessian_vector_product = original
    return rows


def ex_n(ex) -> int:
    return sum(p.numel() for p in ex.model.parameters())


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions; medians are reported (default 3)")
    ap.add_argument("--out", default="bench_landscape.json", help="JSON output path")
    ap.add_argument("--no-pyhessian", action="store_true", help="skip the PyHessian baseline")
    args = ap.parse_args(argv)
    if args.reps < 1:
        ap.error("--reps must be >= 1")
    torch.set_num_threads(args.threads)
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    print(f"machine: {machine}")
    check = _self_check()
    print(f"exact_mlp_trace self-check vs dense Hessian: relative error {check:.1e}")

    t = time.perf_counter()
    ex = teacher_classification()
    print(f"model: {ex.info}  (trained in {time.perf_counter() - t:.1f} s)")

    t = time.perf_counter()
    op64 = HessianOperator(ex.model, ex.loss_fn, (ex.X, ex.Y), dtype=torch.float64)
    lin = op64.to_scipy()
    top5 = np.sort(eigsh(lin, k=5, which="LA", tol=1e-12, return_eigenvectors=False))[::-1]
    n_top = op64.num_products
    # a wide Krylov space (ncv=300) keeps ARPACK's restarts few: the bottom of this spectrum is
    # a dense bulk near zero, where a narrow ncv needs thousands of products
    bottom1 = np.sort(eigsh(lin, k=1, which="SA", tol=1e-10, ncv=min(300, lin.shape[0] - 1), return_eigenvectors=False))
    n_bottom = op64.num_products - n_top
    exact_trace = exact_mlp_trace(ex.model, ex.X, ex.Y)
    ref = {"top5": top5, "bottom1": bottom1, "trace": exact_trace}
    ref_info = {
        "top5": top5.tolist(), "bottom1": bottom1.tolist(), "trace": exact_trace,
        "eigsh_products_top5": n_top, "eigsh_products_bottom1": n_bottom, "time_s": time.perf_counter() - t,
    }
    print(f"float64 references: {ref_info}")
    del op64, lin

    cost = product_cost(ex)
    mine = ours(ex, args.reps, ref)
    base = "skipped (--no-pyhessian)" if args.no_pyhessian else pyhessian_rows(ex, args.reps, ref)

    header = f"{'task':<22}{'wall s':>9}{'HVPs':>7}{'rel err':>10} | {'PyH s':>8}{'PyH HVPs':>9}{'PyH err':>10}{'time ratio':>11}"
    lines = [header, "-" * len(header)]
    for name, r in mine.items():
        b = base.get(name.split(" ")[0] if name.startswith("top-5") else name) if isinstance(base, dict) else None
        if b and "wall_s" in b:
            tail = f"{b['wall_s']:>8.2f}{b['hvps']:>9d}{b['rel_error']:>10.1e}{r['wall_s'] / b['wall_s']:>11.2f}"
        elif b:
            tail = f"  {b['error'][:60]}"
        else:
            tail = f"{'—':>8}{'—':>9}{'—':>10}{'—':>11}"
        lines.append(f"{name:<22}{r['wall_s']:>9.2f}{r['hvps']:>7d}{r['rel_error']:>10.1e} | {tail}")
    lines.append("")
    lines.append(
        f"one product: {cost['operator_product_s'] * 1e3:.1f} ms vs raw graph-reusing double backward "
        f"{cost['raw_double_backward_s'] * 1e3:.1f} ms (ratio {cost['ratio']:.2f}); threads={torch.get_num_threads()}, "
        f"medians of {args.reps} reps"
    )
    if isinstance(base, str):
        lines.append(base)
    print("\n".join(lines))
    result = {
        "machine": machine,
        "model": ex.info,
        "reference": ref_info,
        "product_cost": cost,
        "surrogates": mine,
        "pyhessian": base,
        "reps": args.reps,
        "table": lines,
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
