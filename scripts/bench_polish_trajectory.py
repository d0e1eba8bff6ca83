"""How the L-BFGS polish converges: objective and derivative errors every 25 iterations, and
where each polish tolerance would stop it.

The default fit tests convergence every quarter epoch (25 of ``polish_iterations=100``
iterations, :data:`surrogates.fitting.module.CHECKS_PER_EPOCH`). This script runs the same
polish — the same L-BFGS calls of 25 iterations on the same samples, the same seed — as epochs
of 25 iterations with one call each and ``polish_tolerance=0 polish_patience=0``, so it never
stops early, and keeps the network after every call. The trajectory is the one every default
fit sees up to its stop, so for each tolerance the table shows where the default rule (the gain
over the last 100 iterations below the tolerance, :meth:`PolishSelection.converged`) stops:
iterations, polish seconds and the derivative errors (median relative, the protocol's 500 test
points) of the network it would keep. The validation selection (``polish_patience``) is off
here; on noisy data it may stop the polish earlier still. Each row also has the RMS standardised
validation error (what the selection compares) and the evidence's noise estimate (standardised):
on noisy data both sit at the noise level from about 125 iterations on, while the derivative
errors may still move by up to 40 % down or 50 % up (bench_polish_trajectory_heldout.txt).

Samples and errors come from ``scripts/bench_accuracy.py`` (the protocol's samples) as in
``scripts/bench_fit_speed.py``, or with ``--heldout SEED`` from ``scripts/bench_heldout.py``'s
functions of that seed; one thread.

Usage::

    python scripts/bench_polish_trajectory.py                           # the bench_fit_speed cases (~10 min)
    python scripts/bench_polish_trajectory.py --cases rosenbrock --noise 0 --iterations 600
    python scripts/bench_polish_trajectory.py --heldout 2026 --noise 0.01    # held-out functions (~3 min)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

_SCRIPTS = str(Path(__file__).resolve().parent)
if _SCRIPTS not in sys.path:
    sys.path.insert(0, _SCRIPTS)
import bench_accuracy as accuracy  # noqa: E402
import bench_fit_speed as speed  # noqa: E402

import surrogates.fitting.module as fitting_module  # noqa: E402
from surrogates.fitting.metrics import derivative_errors, protocol_test_points  # noqa: E402
from surrogates.fitting.selection import PolishSelection  # noqa: E402

#: Iterations per report: the default's quarter epoch.
REPORT_EVERY = 25
#: The default's window, ``polish_iterations``.
WINDOW = 100
TOLERANCES = (0.05, 0.1, 0.15, 0.2, 0.3)


class RecordingModule(fitting_module.SurrogateModule):
    """The library's module, keeping a copy of the network after every polish epoch."""

    snapshots: list[dict[str, Any]] = []

    def training_step(self, batch, batch_idx):
        objective = super().training_step(batch, batch_idx)
        if self.current_epoch < self.adam_epochs:
            return objective
        RecordingModule.snapshots.append({
            "iterations": self.polish_selection.iterations,
            "nats": self.polish_selection.trajectory[-1][1],
            "polish_seconds": self.phase_seconds["polish"],
            "validation_rms": self._validation_rms(),
            "noise_std": self.standardised_noise_std,
            "state": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
        })
        return objective

    def _validation_rms(self) -> float:
        """RMS standardised validation error, the quantity the validation selection compares."""
        return math.sqrt(float(self._polish_validation_errors().mean()))


def trajectory(case: str, noise: float, iterations: int, samples: accuracy.Samples | None = None) -> dict[str, Any]:
    """The polish of one fit, every :data:`REPORT_EVERY` iterations; ``samples``: given arrays
    (a held-out function) instead of the bench_fit_speed case's protocol samples."""
    if samples is None:
        spec = speed.CASES[case]
        samples = accuracy.draw_samples(spec["data"], noise, spec["n"])
        data = [] if spec["data"] in accuracy.PROTOCOL_N else [f"data={spec['data']}"]
        name = spec["data"]
    else:
        data, name = [], case
    epochs = iterations // REPORT_EVERY
    overrides = [*data, "model._target_=bench_polish_trajectory.RecordingModule", f"model.polish_iterations={REPORT_EVERY}",
                 f"model.polish_epochs={epochs}", f"trainer.max_epochs={100 + epochs}",
                 "model.polish_tolerance=0", "model.polish_patience=0"]
    RecordingModule.snapshots = []
    fitted = accuracy.fit_surrogates(samples, name, overrides)
    adam_seconds = fitted.model.info["summary"]["time"]["adam_seconds"]
    start = fitted.model.info["summary"]["polish_trajectory"][0]
    test_points = protocol_test_points(samples.function.lower, samples.function.upper)
    net = fitted.model.model
    reports = [{"iterations": 0, "nats": start[1], "polish_seconds": 0.0}]
    for snapshot in RecordingModule.snapshots:
        net.load_state_dict(snapshot.pop("state"))
        errors = derivative_errors(fitted.model, samples.function, test_points)
        snapshot.update(gradient=errors["gradient"]["median"], hessian=errors["hessian"]["median"])
        reports.append(snapshot)
    stops = {}
    for tolerance in TOLERANCES:
        chosen = reports[-1]
        for k in range(1, len(reports)):
            window = PolishSelection(trajectory=[[r["iterations"], r["nats"]] for r in reports[:k + 1]])
            if window.converged(tolerance, WINDOW):
                chosen = reports[k]
                break
        stops[tolerance] = {key: chosen[key] for key in ("iterations", "polish_seconds", "gradient", "hessian")}
    return {"case": case, "noise": noise, "adam_seconds": adam_seconds, "reports": reports, "stops": stops}


def format_case(result: dict[str, Any]) -> str:
    lines = [f"{result['case']} noise={result['noise']:g}  (Adam phase {result['adam_seconds']:.1f} s)",
             f"  {'iterations':>10} {'polish s':>9} {'nats/row':>10} {'gain/100 it':>11} {'val rms':>9} {'noise':>9} "
             f"{'grad med%':>10} {'hess med%':>10}"]
    reports = result["reports"]
    by_iterations = {r["iterations"]: r for r in reports}
    for r in reports[1:]:
        back = by_iterations.get(r["iterations"] - WINDOW)
        gain = f"{back['nats'] - r['nats']:>11.3f}" if back else f"{'':>11}"
        lines.append(f"  {r['iterations']:>10} {r['polish_seconds']:>9.2f} {r['nats']:>10.4f} {gain} "
                     f"{r['validation_rms']:>9.4g} {r['noise_std']:>9.4g} "
                     f"{100 * r['gradient']:>10.3g} {100 * r['hessian']:>10.3g}")
    lines.append(f"  where polish_tolerance stops it (gain over the last {WINDOW} iterations below it):")
    for tolerance, stop in result["stops"].items():
        lines.append(f"    {tolerance:>5g}: {stop['iterations']:>5} iterations, polish {stop['polish_seconds']:6.2f} s, "
                     f"grad {100 * stop['gradient']:.3g}%  hess {100 * stop['hessian']:.3g}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="quartic,sincos,rosenbrock,mixed10")
    parser.add_argument("--noise", default=None, help="comma list of noise levels (default: each case's own)")
    parser.add_argument("--iterations", type=int, default=800, help="polish iterations per run (default 800; mixed10: 300)")
    parser.add_argument("--heldout", type=int, default=None, metavar="SEED",
                        help="the first --functions functions of bench_heldout.py's family of this seed instead of --cases")
    parser.add_argument("--functions", type=int, default=6, help="with --heldout: how many functions (default 6)")
    parser.add_argument("--out", default="bench_polish_trajectory.json")
    args = parser.parse_args(argv)
    # Hydra imports model._target_ by this name; run as a script, this module is __main__
    sys.modules.setdefault("bench_polish_trajectory", sys.modules[__name__])
    limits = accuracy.set_threads(1)
    print(f"bench_polish_trajectory: threads torch={limits['torch']} blas={limits['blas']}, "
          f"{accuracy.machine()['platform']}", flush=True)
    if args.heldout is not None:
        import bench_heldout as heldout

        levels = [float(v) for v in (args.noise or "0,0.01").split(",")]
        runs = [(function.name, noise, args.iterations, heldout.draw_samples(function, n, noise, data_seed))
                for function, n, data_seed in heldout.draw_family(args.functions, args.heldout) for noise in levels]
    else:
        runs = [(case, noise, min(args.iterations, 300) if case == "mixed10" else args.iterations, None)
                for case in args.cases.split(",")
                for noise in ([float(v) for v in args.noise.split(",")] if args.noise else speed.CASES[case]["noise"])]
    results = []
    # one L-BFGS call of 25 iterations per (recorded) epoch: the default's quarter-epoch calls;
    # restored after, for a caller in the same process
    checks_per_epoch, fitting_module.CHECKS_PER_EPOCH = fitting_module.CHECKS_PER_EPOCH, 1
    try:
        for case, noise, iterations, samples in runs:
            result = trajectory(case, noise, iterations, samples)
            results.append(result)
            print(format_case(result), flush=True)
    finally:
        fitting_module.CHECKS_PER_EPOCH = checks_per_epoch
    Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
