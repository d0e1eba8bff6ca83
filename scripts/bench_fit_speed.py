"""Fit time of the default `surrogates` fit against scikit-learn's GP, with both methods' derivative errors.

Target: the default surrogate fits in no more time than the GP and with gradient and Hessian
errors no larger than the GP's, on the same samples. Built on ``scripts/bench_accuracy.py``,
whose pieces it imports rather than copies:

* samples — :func:`bench_accuracy.draw_samples` (protocol ``shared/protocol.md``: inputs
  uniform from ``default_rng(1)``, noise of std 0.01 · std(f) drawn after them), drawn ONCE per
  (case, noise) and handed, identical, to both methods and to every repetition;
* the surrogate — :func:`bench_accuracy.fit_surrogates`: ``compose_config("train",
  ["data=<case>", *--overrides])`` (whatever ``configs/train.yaml`` composes to now, model and
  trainer included) fitted by :func:`surrogates.fitting.train.train`, the path ``surrogates-train``
  takes, with the data source swapped for the shared arrays; it holds out
  ``data.val_fraction`` of the samples for validation;
* the GP — :func:`bench_accuracy.fit_gp`: GaussianProcessRegressor with C·RBF(ARD) + White,
  normalised targets, hyperparameters by marginal likelihood, fitted on at most
  ``--gp-max-samples`` (3000) samples — all of them for the 2-D cases, the first 3000 of
  mixed10's 20000; derivatives of its posterior mean in closed form;
* errors — :func:`bench_accuracy.evaluate` (:func:`surrogates.fitting.metrics.derivative_errors` at the
  protocol's 500 test points): median relative gradient and Hessian (Frobenius) errors;
* threads — :func:`bench_accuracy.set_threads` (``torch.set_num_threads`` + threadpoolctl
  limits for numpy/scipy BLAS, so the GP obeys them too); machine description, JSON encoding,
  override splitting and log silencing likewise.

Cases: quartic, sincos and rosenbrock (the repo's ``data=rosenbrock``, 2-D) with 2000 samples,
exact and 1 % noise; mixed10 with 20000 samples and 1 % noise. Every case runs on one thread
(wall clock and process CPU time, the latter robust to other jobs on a shared machine);
mixed10 runs again on ``--threads`` threads (default: every core). Fit times are medians over
``--repeats`` fits (the methods alternate). For each surrogate fit the training summary's
breakdown of its time (Adam and L-BFGS-polish seconds, polish evaluations, …) is printed when
the summary has one.

Usage::

    python scripts/bench_fit_speed.py                               # every case (~10-20 min)
    python scripts/bench_fit_speed.py --cases quartic --noise 0     # one case (~1 min)
    python scripts/bench_fit_speed.py --cases quartic,sincos --repeats 3
    python scripts/bench_fit_speed.py --overrides model=fast --no-gp
    python scripts/bench_fit_speed.py --cases mixed10 --threads 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from surrogates.fitting.metrics import protocol_test_points

_SCRIPTS = str(Path(__file__).resolve().parent)
if _SCRIPTS not in sys.path:  # bench_accuracy sits next to this file, also when a test loads it by path
    sys.path.insert(0, _SCRIPTS)
import bench_accuracy as accuracy  # noqa: E402

#: case → data config name, samples, protocol noise levels, whether it also runs on many threads.
CASES: dict[str, dict[str, Any]] = {
    "quartic": {"data": "quartic", "n": accuracy.PROTOCOL_N["quartic"], "noise": (0.0, 0.01), "multithread": False},
    "sincos": {"data": "sincos", "n": accuracy.PROTOCOL_N["sincos"], "noise": (0.0, 0.01), "multithread": False},
    "rosenbrock": {"data": "rosenbrock", "n": 2000, "noise": (0.0, 0.01), "multithread": False},
    "mixed10": {"data": "mixed10", "n": accuracy.PROTOCOL_N["mixed10"], "noise": (0.01,), "multithread": True},
}
#: Where a surrogate fit's time went, as the training summary reports it (top level or under "time").
BREAKDOWN_KEYS = (
    "fit_seconds", "epochs", "adam_epochs", "adam_seconds",
    "polish_epochs", "polish_evaluations", "polish_seconds", "polish_stop", "polish_kept_epoch",
)


# --------------------------------------------------------------------------- measuring


def time_breakdown(summary: dict[str, Any] | None) -> dict[str, Any]:
    """The summary's time breakdown: whichever of :data:`BREAKDOWN_KEYS` it has."""
    if not summary:
        return {}
    flat = {**summary, **(summary.get("time") or {})}
    return {key: flat[key] for key in BREAKDOWN_KEYS if key in flat and flat[key] is not None}


def fit_once(method: str, case: str, samples, args: argparse.Namespace) -> tuple[Any, float, float]:
    """One timed fit (wall and process CPU seconds) of ``method`` on ``samples``."""
    wall, cpu = time.perf_counter(), time.process_time()
    if method == "surrogates":
        spec = CASES[case]
        # bench_accuracy composes data=<function> for protocol functions and data=arrays
        # otherwise; a later data=<case> override selects the repo's own data config (rosenbrock).
        data = [] if spec["data"] in accuracy.PROTOCOL_N else [f"data={spec['data']}"]
        fitted = accuracy.fit_surrogates(samples, spec["data"], [*data, *args.overrides])
    else:
        fitted = accuracy.fit_gp(samples, args.gp_max_samples, args.gp_restarts)
    return fitted, time.perf_counter() - wall, time.process_time() - cpu


def run_method(method: str, fits: list[dict[str, Any]], threads: int) -> dict[str, Any]:
    """A table row from one method's repeated fits: medians of times and of median errors."""
    row: dict[str, Any] = {"method": method, "threads": threads, "fits": fits}
    good = [f for f in fits if "error" not in f]
    if not good:
        row["error"] = fits[0]["error"] if fits else "no fits"
        return row
    row["fit_seconds"] = statistics.median(f["fit_seconds"] for f in good)
    row["fit_cpu_seconds"] = statistics.median(f["fit_cpu_seconds"] for f in good)
    for name in ("gradient", "hessian"):
        row[f"{name}_median"] = statistics.median(f["metrics"][name]["median"] for f in good)
    row.update(train_samples=good[0]["train_samples"], val_samples=good[0]["val_samples"], note=good[0]["note"])
    row["failed_fits"] = len(fits) - len(good)
    return row


def run_case(case: str, noise: float, threads: int, args: argparse.Namespace, samples,
             fit: Callable[..., tuple[Any, float, float]] = fit_once) -> dict[str, Any]:
    """Both methods ``args.repeats`` times (alternating) on the same samples at ``threads`` threads.

    ``fit(method, case, samples, args)`` makes one timed fit (default :func:`fit_once`, which
    knows the cases of :data:`CASES`; ``bench_heldout.py`` passes its own for functions outside them).
    """
    limits = accuracy.set_threads(threads)
    test_points = protocol_test_points(samples.function.lower, samples.function.upper)
    methods = ["surrogates"] if args.no_gp else ["surrogates", "gp"]
    fits: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for repeat in range(args.repeats):
        for method in methods:
            record: dict[str, Any] = {"repeat": repeat}
            try:
                fitted, wall, cpu = fit(method, case, samples, args)
                record.update(fit_seconds=wall, fit_cpu_seconds=cpu, train_samples=fitted.train_samples,
                              val_samples=fitted.val_samples, note=fitted.note, info=fitted.info)
                record["metrics"], record["query_seconds"], _ = accuracy.evaluate(fitted, samples, test_points)
                if method == "surrogates":
                    record["time_breakdown"] = time_breakdown(getattr(fitted.model, "info", {}).get("summary"))
                    if args.save_surrogates:
                        folder = Path(args.save_surrogates)
                        folder.mkdir(parents=True, exist_ok=True)
                        path = folder / f"{case}_noise{noise:g}_{threads}t_r{repeat}.safetensors"
                        record["surrogate_file"] = str(fitted.model.save(path))
            except Exception as err:  # one failing fit must not sink the table
                record["error"] = f"{type(err).__name__}: {err}"
                record["traceback"] = traceback.format_exc()
            fits[method].append(record)
            status = (f"fit {record['fit_seconds']:.1f} s, grad {100 * record['metrics']['gradient']['median']:.3g}% "
                      f"hess {100 * record['metrics']['hessian']['median']:.3g}%"
                      if "metrics" in record else f"ERROR {record['error']}")
            print(f"  {case} noise={noise:g} threads={threads} {method} #{repeat + 1}: {status}", flush=True)
    result: dict[str, Any] = {"case": case, "noise": noise, "threads": threads, "thread_limits": limits,
                              "n_samples": samples.n_samples, "in_dim": samples.in_dim,
                              "rows": [run_method(m, fits[m], threads) for m in methods]}
    result.update(compare(result["rows"]))
    return result


def compare(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Time ratio surrogate/GP and whether the target holds (time and both errors ≤ the GP's)."""
    by = {row["method"]: row for row in rows}
    surrogate, gp = by.get("surrogates"), by.get("gp")
    if surrogate is None or gp is None or "error" in surrogate or "error" in gp:
        return {"time_ratio": None, "cpu_ratio": None, "target": None, "target_failures": []}
    failures = [name for name, ok in (
        ("time", surrogate["fit_seconds"] <= gp["fit_seconds"]),
        ("gradient", surrogate["gradient_median"] <= gp["gradient_median"]),
        ("hessian", surrogate["hessian_median"] <= gp["hessian_median"]),
    ) if not ok]
    return {
        "time_ratio": surrogate["fit_seconds"] / gp["fit_seconds"],
        "cpu_ratio": surrogate["fit_cpu_seconds"] / gp["fit_cpu_seconds"],
        "target": not failures,
        "target_failures": failures,
    }


# --------------------------------------------------------------------------- output


def format_table(cases: list[dict[str, Any]]) -> str:
    header = (f"{'case':<10} {'noise':>5} {'thr':>3} {'method':<10} {'train/val':>11} {'fit s':>8} {'cpu s':>8} "
              f"{'ratio':>6} {'grad med%':>9} {'hess med%':>9}  target (surrogate time <= GP, both errors <= GP)")
    lines = [header, "-" * len(header)]
    for entry in cases:
        for row in entry["rows"]:
            head = f"{entry['case']:<10} {entry['noise']:>5g} {entry['threads']:>3} {row['method']:<10} "
            if "error" in row:
                lines.append(head + f"ERROR {row['error']}")
                continue
            cpu = f"{row['fit_cpu_seconds']:>8.1f}" if entry["threads"] == 1 else f"{'-':>8}"
            ratio, target = f"{'':>6}", ""
            if row["method"] == "surrogates":
                ratio = f"{entry['time_ratio']:>6.2f}" if entry["time_ratio"] is not None else f"{'n/a':>6}"
                if entry["target"] is None:
                    target = "n/a (no GP)"
                else:
                    target = "yes" if entry["target"] else "NO: " + ", ".join(entry["target_failures"]) + " worse"
            lines.append(head + f"{row['train_samples']:>5}/{row['val_samples']:<5} {row['fit_seconds']:>8.1f} {cpu} "
                         f"{ratio} {100 * row['gradient_median']:>9.3g} {100 * row['hessian_median']:>9.3g}  {target}")
    return "\n".join(lines)


def format_breakdowns(cases: list[dict[str, Any]]) -> str:
    """Where each surrogate fit's time went, from its training summary (lines only where it says)."""
    lines = []
    for entry in cases:
        for row in entry["rows"]:
            if row["method"] != "surrogates":
                continue
            for fit in row["fits"]:
                b = fit.get("time_breakdown")
                if not b:
                    continue
                parts = []
                if "fit_seconds" in b:
                    parts.append(f"trainer.fit {b['fit_seconds']:.1f} s"
                                 + (f" ({b['epochs']} epochs)" if "epochs" in b else "")
                                 + f", {fit['fit_seconds'] - b['fit_seconds']:.1f} s outside it")
                if "adam_seconds" in b:
                    parts.append(f"Adam {b['adam_seconds']:.1f} s" + (f" / {b['adam_epochs']} epochs" if "adam_epochs" in b else ""))
                if "polish_seconds" in b:
                    polish = f"polish {b['polish_seconds']:.1f} s"
                    details = [f"{b[k]} {label}" for k, label in (("polish_epochs", "epochs"), ("polish_evaluations", "evaluations"))
                               if k in b]
                    if "polish_stop" in b:
                        details.append(f"stop: {b['polish_stop']}")
                    if "polish_kept_epoch" in b:
                        details.append(f"kept epoch {b['polish_kept_epoch'] + 1}")
                    parts.append(polish + (f" ({', '.join(details)})" if details else ""))
                elif "polish_evaluations" in b:
                    parts.append(f"polish evaluations {b['polish_evaluations']}")
                label = f"{entry['case']} noise={entry['noise']:g} threads={entry['threads']}"
                if len(row["fits"]) > 1:
                    label += f" #{fit['repeat'] + 1}"
                lines.append(f"  {label}: wall {fit['fit_seconds']:.1f} s = " + "; ".join(parts))
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma list among {', '.join(CASES)} (default: all)")
    parser.add_argument("--noise", default=None,
                        help="comma list of noise fractions for every chosen case (default: each case's own: "
                        "0,0.01 for the 2-D cases, 0.01 for mixed10)")
    parser.add_argument("--repeats", type=int, default=1, help="fits per method and case; times are medians (default 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="thread count of mixed10's extra many-thread run (default: every core, "
                        f"{os.cpu_count()} here); every case also runs on 1 thread")
    parser.add_argument("--no-gp", action="store_true", help="skip the GP (surrogate times and errors only)")
    parser.add_argument("--overrides", action="append", default=[], metavar="OVERRIDE,OVERRIDE",
                        help="extra Hydra overrides for the surrogate fit, e.g. model=fast or "
                        "trainer.max_epochs=60,model.width=32 (repeatable)")
    parser.add_argument("--gp-max-samples", type=int, default=3000, help="GP fits at most this many samples (default 3000)")
    parser.add_argument("--gp-restarts", type=int, default=0, help="extra random restarts of the GP's hyperparameter search")
    parser.add_argument("--save-surrogates", default=None, metavar="DIR", help="also save every fitted surrogate in DIR")
    parser.add_argument("--out", default="bench_fit_speed.json", help="JSON output path (default bench_fit_speed.json)")
    args = parser.parse_args(argv)
    args.overrides = [o for text in args.overrides for o in accuracy._split_overrides(text)]
    args.case_list = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.case_list if c not in CASES]
    if unknown or not args.case_list:
        raise SystemExit(f"--cases: unknown or no case(s) {unknown}; known: {list(CASES)}")
    args.noise_list = None if args.noise is None else parse_noise(args.noise)
    if args.repeats < 1 or args.threads < 1 or args.gp_max_samples < 1:
        raise SystemExit("--repeats, --threads and --gp-max-samples must be positive")
    return args


def parse_noise(text: str) -> list[float]:
    """``--noise``: a comma list of non-negative noise fractions."""
    try:
        levels = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--noise must be a comma list of numbers, got {text!r}") from None
    if not levels or any(v < 0 for v in levels):
        raise SystemExit(f"--noise must list non-negative numbers, got {text!r}")
    return levels


def prepare(no_gp: bool) -> None:
    """Refuse a missing scikit-learn up front, and import the fit path before any clock starts
    (module import is not fit time)."""
    if not no_gp:
        try:
            import sklearn.gaussian_process  # noqa: F401
        except ImportError:
            raise SystemExit("scikit-learn is not installed (pip install scikit-learn), or pass --no-gp") from None
    import surrogates.fitting.fit  # noqa: F401
    import surrogates.fitting.train  # noqa: F401


def finish(result: dict[str, Any], out: Path) -> None:
    """Print where the surrogate fits' time went and write the JSON."""
    breakdowns = format_breakdowns(result["cases"])
    if breakdowns:
        print("\nwhere the surrogate fits' time went (training summary):")
        print(breakdowns)
    out.write_text(json.dumps(result, indent=1, default=accuracy._json_default))
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prepare(args.no_gp)

    runs = [(case, noise, threads)
            for case in args.case_list
            for noise in (args.noise_list if args.noise_list is not None else CASES[case]["noise"])
            for threads in ([1, args.threads] if CASES[case]["multithread"] and args.threads != 1 else [1])]
    limits = accuracy.set_threads(1)
    extra = sorted({t for _, _, t in runs if t != 1})
    machine = {**accuracy.machine(), "cpu_model": cpu_model()}
    print(f"bench_fit_speed: {machine['cpu_model']}, {machine['cpu_count']} cores, {machine['platform']}")
    print(f"  threads: torch={limits['torch']} blas={limits['blas']} for every case"
          + (f"; mixed10 also on {', '.join(map(str, extra))} threads" if extra else ""))
    print(f"  surrogates: default train config (data=<case>) + {args.overrides or 'no overrides'}; "
          + ("GP skipped (--no-gp)" if args.no_gp else f"GP: ARD RBF + white on at most {args.gp_max_samples} samples"))
    out = Path(args.out)
    result: dict[str, Any] = {
        "protocol": "shared/protocol.md",
        "target": "surrogate fit time <= GP fit time, and gradient and Hessian median errors <= the GP's",
        "machine": machine,
        "threads": {"one_thread": limits, "multithread": extra},
        "args": {k: v for k, v in vars(args).items()},
        "cases": [],
    }
    samples_cache: dict[tuple[str, float], Any] = {}
    for case, noise, threads in runs:
        key = (case, noise)
        if key not in samples_cache:  # drawn once: both methods, every repetition and thread count share them
            samples_cache = {key: accuracy.draw_samples(CASES[case]["data"], noise, CASES[case]["n"])}
        result["cases"].append(run_case(case, noise, threads, args, samples_cache[key]))
        out.write_text(json.dumps(result, indent=1, default=accuracy._json_default))
    accuracy.set_threads(1)
    print()
    print(format_table(result["cases"]))
    print(f"\nfit s = wall-clock median over {args.repeats} fit(s); cpu s = process CPU time (one-thread runs); "
          "ratio = surrogate/GP fit s; errors = median relative error over the 500 protocol test points "
          "(median over repeats); train/val = samples fitted / held out")
    finish(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
