"""Benchmark batched exact derivatives of a tanh MLP: per-point loop vs generic autograd vs library.

For d ∈ {2, 10, 50}, N = 4096 points, float32 and float64, a tanh MLP of depth 4 and
width 128, it times forward, gradient, Jacobian (m = 4 outputs), Hessian and
Laplacian three ways:

* **loop**: what most users write — one ``torch.autograd`` call per point
  (``torch.autograd.functional.hessian`` etc.). Timed on a subset of points and
  extrapolated linearly to N (the cost per point is constant).
* **generic**: the fastest of several batched autograd routes, applied to the
  network as an opaque callable (so the library's MLP fast path cannot kick in).
  The winning route is named in the table.
* **library**: ``surrogates.calculus`` on the package MLP (layer-wise kernels for
  Jacobian/Hessian/Laplacian).

Every route is warmed up on a few points, then all routes of one quantity are timed
in interleaved rounds (so drifting machine load hits them alike); the table shows
medians. With one thread the clock is process CPU time (robust to other processes on
a shared machine); with more threads it is wall time. A second part measures peak
resident memory of the Hessian versus ``chunk_size`` in fresh subprocesses.

Usage::

    python scripts/bench_derivatives.py                 # full run, 1 thread, ~5 min
    python scripts/bench_derivatives.py --threads 2 --out results.json
    python scripts/bench_derivatives.py --quick         # smoke run, seconds
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.func import jacfwd, jacrev, vmap

from surrogates import calculus
from surrogates.io import write_json
from surrogates.model import MLP

N_POINTS = 4096
WIDTH, DEPTH = 128, 4
JACOBIAN_OUTPUTS = 4
QUANTITIES = ("forward", "gradient", "jacobian", "hessian", "laplacian")
#: Issue-3 targets, checked at 1 thread in float32: (quantity, d) → minimum speed-up
#: of the library over the best generic route (gradient: maximum slowdown vs plain
#: batched autograd.grad).
TARGETS = {
    ("hessian", 10): 1.3,
    ("hessian", 50): 1.3,
    ("laplacian", 10): 1.6,
    ("laplacian", 50): 2.0,
}
LOOP_TARGET = 100.0
GRADIENT_SLOWDOWN_LIMIT = 1.2

Route = Callable[[torch.Tensor], torch.Tensor]


def make_model(d: int, m: int, dtype: str) -> MLP:
    torch.manual_seed(0)
    model = MLP(d, m, width=WIDTH, depth=DEPTH, activation="tanh", dtype=dtype)
    model.set_normalisation(torch.zeros(d), torch.full((d,), 2.0), torch.zeros(m), torch.ones(m))
    return model


def make_points(d: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(N_POINTS, d, generator=torch.Generator().manual_seed(1), dtype=dtype)


# ------------------------------------------------------------------------ routes


def loop_routes(model: MLP, quantity: str) -> Route:
    """One autograd call per point."""

    def point_value(x: torch.Tensor) -> torch.Tensor:
        return model(x[None])[0]

    def point_scalar(x: torch.Tensor) -> torch.Tensor:
        return model(x[None])[0, 0]

    def gradient_at(x: torch.Tensor) -> torch.Tensor:
        x = x.clone().requires_grad_(True)
        return torch.autograd.grad(point_scalar(x), x)[0]

    per_point = {
        "forward": lambda x: point_value(x).detach(),
        "gradient": gradient_at,
        "jacobian": lambda x: torch.autograd.functional.jacobian(point_value, x),
        "hessian": lambda x: torch.autograd.functional.hessian(point_scalar, x),
        "laplacian": lambda x: torch.autograd.functional.hessian(point_scalar, x).trace(),
    }[quantity]
    return lambda X: torch.stack([per_point(x) for x in X])


def chunked(route: Route, size: int) -> Route:
    return lambda X: torch.cat([route(X[i : i + size]) for i in range(0, X.shape[0], size)])


def generic_routes(model: MLP, quantity: str) -> dict[str, Route]:
    """Batched autograd routes on the model as an opaque callable."""

    def opaque(X: torch.Tensor) -> torch.Tensor:
        return model(X)

    def point(x: torch.Tensor) -> torch.Tensor:
        return model(x[None])[0]

    def plain_gradient(X: torch.Tensor) -> torch.Tensor:
        X = X.detach().requires_grad_(True)
        return torch.autograd.grad(model(X).sum(), X)[0]

    def no_grad_forward(X: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(X)

    if quantity == "forward":
        return {"batched f(X)": no_grad_forward}
    if quantity == "gradient":
        return {"autograd.grad(f(X).sum())": plain_gradient}
    if quantity == "jacobian":
        return {
            "batch-sum reverse": lambda X: calculus.jacobian(opaque, X),
            "vmap(jacrev) c1024": chunked(vmap(jacrev(point)), 1024),
            "vmap(jacfwd) c1024": chunked(vmap(jacfwd(point)), 1024),
        }
    # Hessian and Laplacian (the generic Laplacian is the trace of a generic Hessian).
    operation = getattr(calculus, quantity)
    variants = [("batch-sum", 256), ("batch-sum", 1024), ("vmap-rev-rev", 1024)]
    if quantity == "hessian":
        variants.append(("vmap-rev-rev", 256))
    return {
        f"{method} c{size}": (lambda X, m=method, s=size: operation(opaque, X, method=m, chunk_size=s))
        for method, size in variants
    }


def library_route(model: MLP, quantity: str) -> Route:
    operation = calculus.value if quantity == "forward" else getattr(calculus, quantity)
    return lambda X: operation(model, X)


# ----------------------------------------------------------------------- timing


def clock_for(threads: int) -> tuple[Callable[[], float], str]:
    if threads == 1:
        return time.process_time, "process CPU time"
    return time.perf_counter, "wall time"


def interleaved_medians(
    routes: dict[str, tuple[Route, torch.Tensor]], reps: int, clock: Callable[[], float]
) -> dict[str, float]:
    """Median seconds per route; routes are timed in turn, ``reps`` rounds."""
    for route, X in routes.values():
        route(X[:8])  # warm-up: lazy initialisation, vmap/autograd caches
    samples: dict[str, list[float]] = {name: [] for name in routes}
    for _ in range(reps):
        for name, (route, X) in routes.items():
            start = clock()
            route(X)
            samples[name].append(clock() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def bench_case(
    d: int, dtype_name: str, reps: int, loop_reps: int, loop_points: int, clock: Callable[[], float]
) -> list[dict]:
    rows = []
    dtype = getattr(torch, dtype_name)
    X = make_points(d, dtype)
    for quantity in QUANTITIES:
        model = make_model(d, JACOBIAN_OUTPUTS if quantity == "jacobian" else 1, dtype_name)
        generic = generic_routes(model, quantity)
        routes = {f"generic:{name}": (route, X) for name, route in generic.items()}
        routes["library"] = (library_route(model, quantity), X)
        times = interleaved_medians(routes, reps, clock)
        loop_time = interleaved_medians(
            {"loop": (loop_routes(model, quantity), X[:loop_points])}, loop_reps, clock
        )["loop"] * (N_POINTS / loop_points)
        generic_times = {name.split(":", 1)[1]: t for name, t in times.items() if name.startswith("generic:")}
        best = min(generic_times, key=generic_times.get)
        rows.append(
            dict(
                dtype=dtype_name,
                d=d,
                quantity=quantity,
                loop_s=loop_time,
                generic_s=generic_times[best],
                generic_route=best,
                generic_all_s=generic_times,
                library_s=times["library"],
                generic_over_library=generic_times[best] / times["library"],
                loop_over_library=loop_time / times["library"],
            )
        )
        print(format_row(rows[-1]), flush=True)
    return rows


# ------------------------------------------------------------------------ memory


def _high_water_kib() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _memory_probe(job: tuple[str, int, str, int | None, int]) -> dict:
    """In a fresh process: peak RSS growth and wall time of one Hessian call."""
    route, d, dtype_name, chunk_size, threads = job
    torch.set_num_threads(threads)
    model = make_model(d, 1, dtype_name)
    X = make_points(d, getattr(torch, dtype_name))
    f = model if route == "library" else (lambda Z: model(Z))
    method = "auto" if route == "library" else "batch-sum"
    calculus.hessian(f, X[:64], method=method)  # warm-up
    # Writing 5 to clear_refs resets the high-water mark to the current RSS.
    Path("/proc/self/clear_refs").write_text("5")
    base = _high_water_kib()
    start = time.perf_counter()
    out = calculus.hessian(f, X, chunk_size=chunk_size, method=method)
    elapsed = time.perf_counter() - start
    return dict(
        route=route,
        d=d,
        dtype=dtype_name,
        chunk_size=chunk_size or "auto",
        peak_growth_mib=(_high_water_kib() - base) / 1024,
        result_mib=out.numel() * out.element_size() / 2**20,
        wall_s=elapsed,
    )


def memory_report(d: int, threads: int, chunk_sizes: list[int | None]) -> list[dict]:
    if not Path("/proc/self/clear_refs").exists():
        print("memory check skipped: needs Linux /proc/self/clear_refs")
        return []
    jobs = [("library", d, "float32", c, threads) for c in chunk_sizes]
    jobs += [("generic batch-sum", d, "float32", c, threads) for c in (256, N_POINTS)]
    context = multiprocessing.get_context("spawn")
    results = []
    for job in jobs:  # one process per job so peaks do not mask each other
        with context.Pool(1) as pool:
            results.append(pool.apply(_memory_probe, (job,)))
    return results


# ------------------------------------------------------------------------ output


HEADER = (
    f"{'dtype':<8} {'d':>3} {'quantity':<10} {'loop s':>9} {'generic s':>10} {'library s':>10} "
    f"{'gen/lib':>8} {'loop/lib':>9}  best generic route"
)


def format_row(row: dict) -> str:
    return (
        f"{row['dtype']:<8} {row['d']:>3} {row['quantity']:<10} {row['loop_s']:>9.3f} {row['generic_s']:>10.4f} "
        f"{row['library_s']:>10.4f} {row['generic_over_library']:>7.2f}x {row['loop_over_library']:>8.0f}x  "
        f"{row['generic_route']}"
    )


def check_targets(rows: list[dict]) -> list[dict]:
    by_key = {(r["dtype"], r["d"], r["quantity"]): r for r in rows}
    checks = []
    for (quantity, d), needed in TARGETS.items():
        row = by_key.get(("float32", d, quantity))
        if row:
            got = row["generic_over_library"]
            checks.append(dict(target=f"{quantity} d={d}: library ≥ {needed}x best generic", value=got, ok=got >= needed))
            if quantity == "hessian":
                loop = row["loop_over_library"]
                checks.append(dict(target=f"hessian d={d}: library ≥ {LOOP_TARGET:.0f}x loop", value=loop, ok=loop >= LOOP_TARGET))
    for d in sorted({r["d"] for r in rows}):
        row = by_key.get(("float32", d, "gradient"))
        if row:
            slowdown = 1.0 / row["generic_over_library"]
            checks.append(
                dict(
                    target=f"gradient d={d}: library ≤ {GRADIENT_SLOWDOWN_LIMIT}x plain autograd.grad",
                    value=slowdown,
                    ok=slowdown <= GRADIENT_SLOWDOWN_LIMIT,
                )
            )
    return checks


def machine_info(threads: int, clock_name: str) -> dict:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = match.group(1).strip() if match else cpu
    return dict(
        cpu=cpu,
        logical_cpus=os.cpu_count(),
        platform=platform.platform(),
        python=platform.python_version(),
        torch=torch.__version__,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        threads=threads,
        clock=clock_name,
        load_average=os.getloadavg() if hasattr(os, "getloadavg") else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--reps", type=int, default=5, help="timed rounds per route (default 5)")
    parser.add_argument("--loop-points", type=int, default=64, help="points timed for the per-point loop")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 10, 50])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--quick", action="store_true", help="smoke run: d=2,10, float32, 2 rounds, 8 loop points")
    parser.add_argument("--out", type=Path, default=Path("bench_derivatives.json"), help="JSON results file")
    args = parser.parse_args()
    if args.quick:
        args.dims, args.dtypes, args.reps, args.loop_points = [2, 10], ["float32"], 2, 8
    loop_reps = min(args.reps, 3)
    torch.set_num_threads(args.threads)
    clock, clock_name = clock_for(args.threads)
    info = machine_info(args.threads, clock_name)

    print(f"bench_derivatives: N = {N_POINTS}, tanh MLP {DEPTH}x{WIDTH}, Jacobian with m = {JACOBIAN_OUTPUTS} outputs")
    print(f"machine: {info['cpu']} ({info['logical_cpus']} logical CPUs, {info['cpu_capability']}), torch {info['torch']}")
    print(f"threads: {args.threads}; clock: {clock_name}; medians of {args.reps} interleaved rounds")
    print(
        f"loop: per-point torch.autograd calls timed on {args.loop_points} points ({loop_reps} rounds) "
        f"and extrapolated linearly to {N_POINTS}"
    )
    print(HEADER)
    rows = []
    for dtype_name in args.dtypes:
        for d in args.dims:
            rows.extend(bench_case(d, dtype_name, args.reps, loop_reps, args.loop_points, clock))

    memory_d = max(args.dims)
    chunk_sizes: list[int | None] = [64, 256, 1024, N_POINTS, None]
    if args.quick:
        chunk_sizes = [64, N_POINTS]
    print(f"\npeak memory of hessian(), float32, d = {memory_d}, fresh process per row (RSS high-water growth):")
    memory = memory_report(memory_d, args.threads, chunk_sizes)
    for entry in memory:
        print(
            f"  {entry['route']:<18} chunk_size={entry['chunk_size']!s:<5} peak +{entry['peak_growth_mib']:7.1f} MiB "
            f"(result itself {entry['result_mib']:.1f} MiB), wall {entry['wall_s']:.3f} s"
        )

    checks = check_targets(rows)
    if checks:
        print("\ntargets (float32):")
        for check in checks:
            print(f"  [{'met' if check['ok'] else 'MISSED'}] {check['target']}: {check['value']:.2f}")
    info["load_average_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    payload = dict(
        config=dict(
            n_points=N_POINTS, width=WIDTH, depth=DEPTH, jacobian_outputs=JACOBIAN_OUTPUTS, **{**vars(args), "out": str(args.out)}
        ),
        machine=info,
        results=rows,
        memory=memory,
        targets=checks,
    )
    write_json(args.out, payload)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
