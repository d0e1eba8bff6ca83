"""Benchmark vector calculus and integrals: their cost against the Jacobian, and QMC against plain MC.

Part 1 — determinants, divergence and curl of a square tanh MLP (R^d → R^d, depth 4, width
128, float64 like the package's surrogates, N = 4096 points) at d ∈ {2, 3, 10, 30}, each
against the Jacobian it is computed from, twice: on the package MLP (layer-wise Jacobian)
and on the same network as an opaque callable (generic batched autograd). The divergence
is timed by both of its routes (trace of the Jacobian, d forward-mode sweeps); the table
shows every quantity's time as a multiple of the Jacobian's in the same interleaved rounds.

Part 2 — ``calculus.integrate`` by randomised QMC (16 scrambled Sobol' replicates) against
plain Monte Carlo (``sampler="random"``, the same 16-replicate structure and the same region
maps) on smooth integrands with closed-form integrals:

* ``oscillatory-2d``: Genz's oscillatory cos(2π·0.3 + a·x) on [0, 1]², a = (1.5, 2.5);
* ``gaussian-disk``: exp(−‖x‖²) over the disk of radius 1.5 (the ball's polar map),
  exactly π(1 − e^(−2.25));
* ``oscillatory-6d``: cos(2π·0.3 + a·x) on [0, 1]⁶, a = (0.6, 0.8, 1.0, 1.2, 1.4, 1.6).

For a sweep of point counts N (powers of two), the median standard error over seeds for
each sampler; the points needed to reach the target relative standard error (default
1e-3·|I|), read off the curves by log-log interpolation (plain MC extrapolated with its
exact N^(−1/2) law when the sweep ends first — marked), their ratio (target: ≥ 10), the
fraction of ±2·stderr intervals that contain the exact integral, and integrate's
throughput on an MLP integrand.

With one thread the clock is process CPU time (robust to other processes on a shared
machine); with more it is wall time.

Usage::

    python scripts/bench_calculus.py                       # full run, 1 thread, a few minutes
    python scripts/bench_calculus.py --quick --out /tmp/b.json   # smoke run, seconds
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from surrogates import calculus
from surrogates.calculus import vector
from surrogates.io import write_json
from surrogates.model import MLP

N_POINTS = 4096
WIDTH, DEPTH = 128, 4
REPLICATES = 16
QMC_TARGET_RATIO = 10.0
RESULTS = Path(__file__).resolve().parent / "results" / "bench_calculus.json"

Route = Callable[[torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------ part 1: cost


def make_field(d: int) -> MLP:
    torch.manual_seed(0)
    model = MLP(d, d, width=WIDTH, depth=DEPTH, activation="tanh", dtype="float64")
    model.set_normalisation(torch.zeros(d), torch.full((d,), 2.0), torch.zeros(d), torch.ones(d))
    return model


def vector_routes(f: Callable) -> dict[str, Route]:
    return {
        "jacobian": lambda X: calculus.jacobian(f, X),
        "det": lambda X: calculus.jacobian_determinant(f, X),
        "log_det": lambda X: calculus.log_abs_det_jacobian(f, X),
        "divergence": lambda X: calculus.divergence(f, X),
        "divergence_forward": lambda X: calculus.divergence(f, X, method="forward"),
        "curl": lambda X: calculus.curl(f, X),
    }


def clock_for(threads: int) -> tuple[Callable[[], float], str]:
    if threads == 1:
        return time.process_time, "process CPU time"
    return time.perf_counter, "wall time"


def interleaved_medians(routes: dict[str, Route], X: torch.Tensor, reps: int, clock: Callable[[], float]) -> dict[str, float]:
    """Median seconds per route over ``reps`` rounds, the routes timed in turn each round."""
    for route in routes.values():
        route(X[:8])  # warm-up: lazy initialisation, autograd caches
    samples: dict[str, list[float]] = {name: [] for name in routes}
    for _ in range(reps):
        for name, route in routes.items():
            start = clock()
            route(X)
            samples[name].append(clock() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def bench_vector(dims: list[int], n: int, reps: int, clock: Callable[[], float]) -> list[dict]:
    rows = []
    for d in dims:
        model = make_field(d)
        X = torch.randn(n, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        for callable_kind, f in (("package MLP", model), ("opaque callable", lambda Z, m=model: m(Z))):
            routes = vector_routes(f)
            # the routes must agree with the Jacobian they come from before their times mean anything
            J = routes["jacobian"](X[:64])
            checks = {
                "det": torch.linalg.det(J), "log_det": torch.linalg.slogdet(J).logabsdet,
                "divergence": J.diagonal(dim1=1, dim2=2).sum(1),
                "divergence_forward": J.diagonal(dim1=1, dim2=2).sum(1),
                "curl": vector.curl_from_jacobian(J),
            }
            for name, expected in checks.items():
                torch.testing.assert_close(routes[name](X[:64]), expected, rtol=1e-9, atol=1e-12)
            times = interleaved_medians(routes, X, reps, clock)
            row = dict(d=d, f=callable_kind, n=n, seconds=times,
                       over_jacobian={k: t / times["jacobian"] for k, t in times.items() if k != "jacobian"})
            rows.append(row)
            print(format_vector_row(row), flush=True)
    return rows


VECTOR_COLUMNS = ("det", "log_det", "divergence", "divergence_forward", "curl")


def vector_header() -> str:
    return f"{'d':>3} {'f':<16} {'jacobian s':>10} " + " ".join(f"{c:>18}" for c in VECTOR_COLUMNS)


def format_vector_row(row: dict) -> str:
    ratios = " ".join(f"{row['over_jacobian'][c]:>17.2f}x" for c in VECTOR_COLUMNS)
    return f"{row['d']:>3} {row['f']:<16} {row['seconds']['jacobian']:>10.4f} {ratios}"


# ------------------------------------------------------------ part 2: integrals


def oscillatory(a: list[float], phase: float = 2 * math.pi * 0.3) -> tuple[Callable, float]:
    """Genz's oscillatory integrand on the unit cube and its exact integral
    Re[e^{iφ} Π_j (e^{i a_j} − 1)/(i a_j)]."""
    weights = torch.tensor(a, dtype=torch.float64)
    exact = complex(math.cos(phase), math.sin(phase))
    for a_j in a:
        exact *= (complex(math.cos(a_j), math.sin(a_j)) - 1) / complex(0, a_j)
    return (lambda X: torch.cos(phase + X @ weights.to(X))), exact.real


def integrands() -> dict[str, tuple[Callable, calculus.Region, float]]:
    osc2, exact2 = oscillatory([1.5, 2.5])
    osc6, exact6 = oscillatory([0.6, 0.8, 1.0, 1.2, 1.4, 1.6])
    radius = 1.5
    return {
        "oscillatory-2d": (osc2, calculus.Box([0, 0], [1, 1]), exact2),
        "gaussian-disk": (lambda X: torch.exp(-(X**2).sum(1)), calculus.Ball([0, 0], radius),
                          math.pi * (1 - math.exp(-radius**2))),
        "oscillatory-6d": (osc6, calculus.Box([0] * 6, [1] * 6), exact6),
    }


def points_needed(counts: list[int], stderrs: list[float], target: float) -> tuple[float, bool]:
    """N at which the median stderr curve reaches ``target`` (log-log interpolation), and
    whether it was extrapolated past the sweep's end with the Monte Carlo law stderr ∝ N^(−1/2)."""
    if stderrs[0] <= target:
        return float(counts[0]), False
    for (n0, s0), (n1, s1) in zip(zip(counts, stderrs), zip(counts[1:], stderrs[1:])):
        if s1 <= target:
            slope = (math.log(s1) - math.log(s0)) / (math.log(n1) - math.log(n0))
            return math.exp(math.log(n0) + (math.log(target) - math.log(s0)) / slope), False
    return counts[-1] * (stderrs[-1] / target) ** 2, True


def bench_integral(name: str, f: Callable, region: calculus.Region, exact: float, counts: list[int],
                   seeds: int, target_rel: float) -> dict:
    sweep = []
    for n in counts:
        entry = {"points": n}
        for sampler in calculus.SAMPLERS:
            results = [calculus.integrate(f, region, points=n, seed=s, replicates=REPLICATES, sampler=sampler)
                       for s in range(seeds)]
            errors = [r.value - exact for r in results]
            entry[sampler] = dict(
                stderr_median=statistics.median(r.stderr for r in results),
                rms_error=math.sqrt(statistics.fmean(e * e for e in errors)),
                covered=sum(abs(e) <= 2 * r.stderr for e, r in zip(errors, results)),
                runs=len(results),
            )
        sweep.append(entry)
    target = target_rel * abs(exact)
    needed = {}
    for sampler in calculus.SAMPLERS:
        n, extrapolated = points_needed(counts, [e[sampler]["stderr_median"] for e in sweep], target)
        needed[sampler] = dict(points=n, extrapolated=extrapolated)
    ratio = needed["random"]["points"] / needed["sobol"]["points"]
    covered = {s: sum(e[s]["covered"] for e in sweep) / sum(e[s]["runs"] for e in sweep) for s in calculus.SAMPLERS}
    return dict(integrand=name, region=repr(region), dim=region.dim, exact=exact, target_stderr=target,
                sweep=sweep, needed=needed, mc_over_qmc=ratio, coverage_2sigma=covered,
                target_met=ratio >= QMC_TARGET_RATIO)


SAMPLER_LABELS = {"sobol": "QMC", "sobol-lms": "QMC-LMS", "random": "MC"}


def format_sweep(result: dict) -> list[str]:
    head = " ".join(f"{SAMPLER_LABELS[s] + ' stderr':>15} {SAMPLER_LABELS[s] + ' rms err':>15}" for s in calculus.SAMPLERS)
    lines = [f"{result['integrand']} over {result['region']}: exact {result['exact']:.12g}", f"  {'N':>8} {head}"]
    for e in result["sweep"]:
        cells = " ".join(f"{e[s]['stderr_median']:>15.3e} {e[s]['rms_error']:>15.3e}" for s in calculus.SAMPLERS)
        lines.append(f"  {e['points']:>8} {cells}")
    return lines


def needed_header() -> str:
    covers = " ".join(f"{SAMPLER_LABELS[s] + ' cov':>11}" for s in calculus.SAMPLERS)
    return (f"{'integrand':<16} {'d':>2} {'target':>10} {'QMC points':>13} {'MC points':>13} {'MC/QMC':>10} "
            f"{'>=10x':>6} {covers}")


def format_needed(result: dict) -> str:
    qmc, mc = result["needed"]["sobol"], result["needed"]["random"]
    mark = lambda n: f"{n['points']:>12.4g}{'*' if n['extrapolated'] else ' '}"  # noqa: E731
    covers = " ".join(f"{result['coverage_2sigma'][s]:>11.3f}" for s in calculus.SAMPLERS)
    return (f"{result['integrand']:<16} {result['dim']:>2} {result['target_stderr']:>10.2e} {mark(qmc)} {mark(mc)} "
            f"{result['mc_over_qmc']:>9.1f}x {'yes' if result['target_met'] else 'NO':>6} {covers}")


def bench_throughput(n: int, reps: int, clock: Callable[[], float]) -> list[dict]:
    """Points per second of integrate on a 6-D tanh MLP integrand (4×128), both samplers,
    against evaluating the MLP alone at as many points."""
    torch.manual_seed(0)
    model = MLP(6, 1, width=WIDTH, depth=DEPTH, activation="tanh", dtype="float64")
    box = calculus.Box([-1] * 6, [1] * 6)
    X = torch.rand(n, 6, dtype=torch.float64)
    routes = {
        "sobol": lambda _: calculus.integrate(model, box, points=n, sampler="sobol"),
        "random": lambda _: calculus.integrate(model, box, points=n, sampler="random"),
        "forward only": lambda P: calculus.value(model, P),
    }
    times = interleaved_medians(routes, X, reps, clock)
    return [dict(route=k, points=n, seconds=t, points_per_second=n / t) for k, t in times.items()]


# ------------------------------------------------------------------------- main


def machine_info(threads: int, clock_name: str) -> dict:
    info = dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                logical_cpus=os.cpu_count(), python=platform.python_version(), torch=torch.__version__,
                threads=threads, clock=clock_name)
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--reps", type=int, default=7, help="timing rounds (median reported)")
    parser.add_argument("--dims", default="2,3,10,30", help="input = output dimensions of part 1")
    parser.add_argument("--seeds", type=int, default=9, help="seeds per point count in part 2 (median stderr)")
    parser.add_argument("--max-points", type=int, default=2**23, help="largest point count of the sweep")
    parser.add_argument("--target", type=float, default=1e-3, help="target standard error relative to |I|")
    parser.add_argument("--quick", action="store_true", help="smoke run: d = 2, 3, small sweeps")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file (the table goes next to it as .txt)")
    args = parser.parse_args(argv)
    try:
        args.dim_list = [int(d) for d in args.dims.split(",")]
    except ValueError:
        parser.error(f"--dims must be comma-separated integers, got {args.dims!r}")
    if min(args.threads, args.reps, args.seeds, args.max_points, *args.dim_list) < 1 or args.target <= 0:
        parser.error("--threads, --reps, --seeds, --max-points, --dims and --target must be positive")
    if args.quick:
        args.dim_list, args.reps, args.seeds, args.max_points = [2, 3], 2, 3, 2**11
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    clock, clock_name = clock_for(args.threads)
    info = machine_info(args.threads, clock_name)
    lines: list[str] = []

    def emit(line: str = "") -> None:
        lines.append(line)
        print(line, flush=True)

    emit(f"bench_calculus: {info['processor']}, {info['logical_cpus']} logical CPUs, {info['platform']}, torch {info['torch']}")
    emit(f"threads: {args.threads}; clock: {clock_name}; medians of {args.reps} interleaved rounds")
    emit()
    n_points = N_POINTS if not args.quick else 128
    emit(f"Part 1: cost relative to the Jacobian (N = {n_points}, tanh MLP "
         f"{DEPTH}x{WIDTH}, float64, R^d -> R^d)")
    emit(vector_header())
    vector_rows = bench_vector(args.dim_list, n_points, args.reps, clock)
    lines.extend(format_vector_row(r) for r in vector_rows)

    counts = [2**k for k in range(6, int(math.log2(args.max_points)) + 1)]
    emit()
    emit(f"Part 2: randomised QMC ({REPLICATES} scrambled Sobol' replicates) vs plain Monte Carlo, "
         f"median stderr over {args.seeds} seeds")
    integral_rows = []
    for name, (f, region, exact) in integrands().items():
        result = bench_integral(name, f, region, exact, counts, args.seeds, args.target)
        integral_rows.append(result)
        for line in format_sweep(result):
            emit(line)
    emit()
    emit(f"points to reach stderr = {args.target:g}·|I| (* = extrapolated with MC's N^-1/2 law past the sweep); "
         "coverage = fraction of ±2·stderr intervals holding the exact I, over the whole sweep")
    emit(needed_header())
    for result in integral_rows:
        emit(format_needed(result))

    throughput_n = 2**16 if not args.quick else 2**10
    throughput = bench_throughput(throughput_n, args.reps, clock)
    emit()
    emit(f"integrate throughput on a 6-D tanh MLP {DEPTH}x{WIDTH} integrand, {throughput_n} points:")
    for row in throughput:
        emit(f"  {row['route']:<13} {row['seconds']:.4f} s  {row['points_per_second']:.3g} points/s")

    payload = dict(machine=info, args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                   vector=vector_rows, integrals=integral_rows, throughput=throughput,
                   qmc_target=f"MC points / QMC points >= {QMC_TARGET_RATIO:g} at the target stderr",
                   all_targets_met=all(r["target_met"] for r in integral_rows))
    write_json(args.out, payload)
    args.out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.txt')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
