"""Benchmark: the default ``surrogates-landscape`` run on the digits CNN, before and after, same session.

Network (issue 18's "digits CNN"): :func:`surrogates.landscape.example.digits_classification`, a
51 880-parameter tanh CNN (conv 16, conv 32, avg-pool, 90, 10) trained by 150 full-batch Adam
steps on scikit-learn's 1797 digits; float32, full batch. It is handed to the CLI as a Hydra
``torch.nn.Sequential`` config plus a state dict, so the baseline tree (which has no digits
example) runs the very same network.

Configurations, each a fresh ``python -m surrogates.cli.landscape`` process with one thread:

* ``before``: the baseline tree (``--baseline``, default the commit this work started from),
  its default config;
* ``before + allocator``: the same, with glibc told to keep freed memory
  (``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``, what ``keep_freed_memory`` sets), to
  separate the allocator's share from the configuration's;
* ``after``: this tree (``--candidate``: a commit instead of the working tree), its default config;
* ``after, old slice grids``: the same with the baseline's slice grids (21 x 21 and 41 points
  instead of 15 x 15 and 29), the price of keeping them;
* ``after + layers``: the same with the per-layer section on (``layers.enabled=true``).

Repetition ``r`` runs every configuration with ``seed=r`` (interleaved, so load drifts hit all
alike); times are medians over repetitions, wall clock and the child's CPU time (user + sys,
the fair measure on a shared machine). Each run's ``landscape.json`` gives per-stage times and
products. "Same figures" is checked number by number against ``before`` with the same seed:
eigenvalues (relative difference), trace (difference in units of the two standard errors), the
density plot (the total-variation distance between the broadened densities on one grid,
compared with the distance between ``before`` runs of different seeds: the old figure's own
noise) and the slices (relative difference of the losses, on the before grid's surface
interpolated by cubic splines where the grids differ).

    python scripts/bench_landscape_cli.py --reps 3      # writes scripts/results/bench_landscape_cli.{txt,json}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "f42a61b"  # main when issue 18's items 4, 5 and 7 were started

# the CNN of surrogates.landscape.example.digits_cnn, spelled as a Hydra config both trees understand
CNN = (
    "network.model={_target_:torch.nn.Sequential,_args_:["
    "{_target_:torch.nn.Conv2d,in_channels:1,out_channels:16,kernel_size:3,padding:1},{_target_:torch.nn.Tanh},"
    "{_target_:torch.nn.Conv2d,in_channels:16,out_channels:32,kernel_size:3,padding:1},{_target_:torch.nn.Tanh},"
    "{_target_:torch.nn.AvgPool2d,kernel_size:2},{_target_:torch.nn.Flatten},"
    "{_target_:torch.nn.Linear,in_features:512,out_features:90},{_target_:torch.nn.Tanh},"
    "{_target_:torch.nn.Linear,in_features:90,out_features:10}]}"
)
KEEP_FREED = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def prepare(work: Path, steps: int) -> tuple[Path, Path, dict[str, Any]]:
    """Train the digits CNN once (cached in ``work``); return state-dict path, data path, info."""
    import torch

    weights, data, info_file = (work / f"digits_cnn_{steps}{suffix}" for suffix in (".pt", ".npz", ".json"))
    if not (weights.exists() and data.exists() and info_file.exists()):
        from surrogates.landscape.example import digits_classification

        torch.set_num_threads(1)
        ex = digits_classification(steps=steps)
        torch.save(ex.model.state_dict(), weights)
        np.savez(data, x=ex.X.numpy(), y=ex.Y.numpy())
        info_file.write_text(json.dumps(ex.info))
    return weights, data, json.loads(info_file.read_text())


def export_tree(commit: str, work: Path) -> Path:
    """The package as of ``commit`` (``git archive``), with the configs link the package resolves."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", commit], check=True, capture_output=True,
                            text=True).stdout.strip()
    tree = work / f"tree-{commit}"
    if not (tree / "surrogates").exists():
        blob = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
        with tarfile.open(fileobj=BytesIO(blob)) as tar:
            tar.extractall(tree, filter="data")
        (tree / "surrogates" / "configs").symlink_to("../configs")
    return tree


def run_cli(tree: Path, overrides: list[str], out: Path, env_extra: dict[str, str]) -> dict[str, Any]:
    """One CLI process; wall and CPU seconds, and its landscape.json."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", **env_extra}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "surrogates.cli.landscape", *overrides, f"hydra.run.dir={out}"],
        env=env, cwd=tree, capture_output=True, text=True, check=False,  # -m puts the cwd first on sys.path
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"CLI failed ({tree}):\n{done.stderr[-3000:]}")
    summary = json.loads((out / "landscape.json").read_text())
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {"wall_s": wall, "cpu_s": user + system, "user_s": user, "sys_s": system, "summary": summary}


def density_on(summary: dict[str, Any], grid: np.ndarray, sigma: float) -> np.ndarray:
    """The run's density, broadened by ``sigma``, on ``grid`` (from its nodes and weights)."""
    nodes = np.asarray(summary["density"]["nodes"])
    weights = np.asarray(summary["density"]["weights"])
    g = grid[:, None]
    return (weights * np.exp(-0.5 * ((g - nodes) / sigma) ** 2)).sum(1) / (sigma * np.sqrt(2 * np.pi))


def density_distance(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Total-variation distance ½∫|ρa − ρb| of two runs' densities, broadened as the figure does (1 % of the support)."""
    lo = min(min(s["density"]["nodes"]) for s in (a, b))
    hi = max(max(s["density"]["nodes"]) for s in (a, b))
    sigma = 0.01 * (hi - lo)
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, 4001)
    diff = np.abs(density_on(a, grid, sigma) - density_on(b, grid, sigma))
    return float(0.5 * np.sum(diff) * (grid[1] - grid[0]))


def compare(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """Numbers behind the figures of ``after`` against ``before`` (same seed)."""
    sa, sb = after["spectrum"], before["spectrum"]
    ta, tb = after["trace"], before["trace"]
    top = np.abs(np.subtract(sa["top"], sb["top"])) / np.abs(sb["top"])
    bottom = np.abs(np.subtract(sa["bottom"], sb["bottom"])) / np.abs(sb["bottom"])
    slices = {name: slice_difference(after["slices"][name], before["slices"][name])
              for name in ("random_1d", "random_2d", "eigenvector_1d")}
    # an eigenvector has no sign (the baseline's was whatever Lanczos or the float64 polish gave):
    # the same curve may be drawn mirrored
    mirrored = {**before["slices"]["eigenvector_1d"], "loss": before["slices"]["eigenvector_1d"]["loss"][::-1]}
    slices["eigenvector_1d"] = min(slices["eigenvector_1d"], slice_difference(after["slices"]["eigenvector_1d"], mirrored))
    return {
        "slices_rel_diff_max": slices,
        "top_rel_diff_max": float(top.max()),
        "bottom_rel_diff_max": float(bottom.max()),
        "trace_diff_in_sigma": abs(ta["value"] - tb["value"]) / float(np.hypot(ta["stderr"], tb["stderr"])),
        "density_tv_distance": density_distance(after, before),
    }


def slice_difference(new: dict[str, Any], old: dict[str, Any]) -> float:
    """Max relative difference of ``new``'s losses from ``old``'s surface at ``new``'s grid points.

    Equal grids compare point by point; otherwise ``old`` is interpolated by cubic splines
    (the figures draw the surface between grid points too), so the number bounds how far the
    new figure's surface is from the old one.
    """
    from scipy.interpolate import RegularGridInterpolator

    a, b = np.asarray(new["loss"]), np.asarray(old["loss"])
    if [len(x) for x in new["axes"]] == [len(x) for x in old["axes"]]:
        return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    old_axes = [np.asarray(x) for x in old["axes"]]
    # the ends agree to rounding (an eigenvector slice's span comes from lambda_max): clip to the old grid
    new_axes = [np.clip(np.asarray(x), o[0], o[-1]) for x, o in zip(new["axes"], old_axes)]
    points = np.stack(np.meshgrid(*new_axes, indexing="ij"), axis=-1)
    surface = RegularGridInterpolator(old_axes, b, method="cubic")(points.reshape(-1, len(old_axes))).reshape(a.shape)
    return float(np.max(np.abs(a - surface)) / np.max(np.abs(b)))


def stage_table(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Per configuration: median seconds and products of each stage (from landscape.json)."""
    stages = ("setup_s", "gradient_s", "spectrum_s", "trace_s", "density_s", "layers_s", "slices_s")
    lines = [f"{'stage (median s / products)':<30}" + "".join(f"{name:>24}" for name in runs)]
    for stage in (*stages, "total_s"):
        cells = []
        for reps in runs.values():
            secs = statistics.median(r["summary"]["timings_s"].get(stage, 0.0) for r in reps)
            key = stage[:-2]
            hvps = reps[0]["summary"]["hvp_counts"].get(key)
            if stage == "slices_s":
                hvps = sum(v["num_evaluations"] for v in reps[0]["summary"]["slices"].values())
            cells.append(f"{secs:>9.1f} s" + (f" / {hvps:>5}" if hvps is not None else " " * 8))
        lines.append(f"{stage[:-2]:<30}" + "".join(f"{c:>24}" for c in cells))
    lines.append("(slices: loss evaluations, not products)")
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="repetitions (seeds 0..reps-1); medians are reported")
    ap.add_argument("--baseline", default=BASELINE, help=f"git commit of the 'before' tree (default {BASELINE})")
    ap.add_argument("--candidate", default=None, help="git commit of the 'after' tree (default: this working tree)")
    ap.add_argument("--work", default="/tmp/bench_landscape_cli", help="scratch folder (trees, network, run folders)")
    ap.add_argument("--out", default=str(ROOT / "scripts" / "results" / "bench_landscape_cli"), help="output stem (.txt, .json)")
    ap.add_argument("--train-steps", type=int, default=150, help="Adam steps of the digits CNN (default 150)")
    ap.add_argument("--old-slice-grids", type=int, nargs=2, default=(41, 21), metavar=("POINTS_1D", "POINTS_2D"),
                    help="the baseline's slice grids, for the 'after, old slice grids' runs (default 41 21)")
    ap.add_argument("--overrides", nargs="*", default=[],
                    help="extra CLI overrides for every run, keys both trees know (e.g. a quick smoke run)")
    args = ap.parse_args(argv)
    if args.reps < 2:
        ap.error("--reps must be >= 2 (the density's seed-to-seed noise needs two seeds)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    weights, data, info = prepare(work, args.train_steps)
    network = [CNN, f"network.state_dict={weights}", f"data.source={data}", "threads=1", "progress=false", *args.overrides]
    after_tree = ROOT if args.candidate is None else export_tree(args.candidate, work)
    configs = {
        "before": (export_tree(args.baseline, work), {}),
        "before + allocator": (export_tree(args.baseline, work), KEEP_FREED),
        "after": (after_tree, {}),
        "after, old slice grids": (after_tree, {}),
        "after + layers": (after_tree, {}),
    }
    points_1d, points_2d = args.old_slice_grids
    extra = {"after, old slice grids": [f"slices.points_1d={points_1d}", f"slices.points_2d={points_2d}"],
             "after + layers": ["layers.enabled=true"]}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    loads = []
    for rep in range(args.reps):
        for name, (tree, env) in configs.items():
            out = work / "runs" / f"{''.join(c if c.isalnum() else '_' for c in name)}-seed{rep}"
            loads.append(os.getloadavg()[0])
            r = run_cli(tree, [*network, f"seed={rep}", *extra.get(name, [])], out, env)
            loads.append(os.getloadavg()[0])
            runs[name].append(r)
            print(f"seed {rep} {name:<20} wall {r['wall_s']:6.1f} s  cpu {r['cpu_s']:6.1f} s  "
                  f"products {r['summary']['hvp_counts']}", flush=True)

    med = {name: {k: statistics.median(r[k] for r in reps) for k in ("wall_s", "cpu_s", "user_s", "sys_s")}
           for name, reps in runs.items()}
    base = med["before"]
    lines = [
        (f"surrogates-landscape default run, digits CNN ({info['num_params']} parameters, {info['n_samples']} samples, "
         f"float32), 1 thread, medians of {args.reps} seeds; baseline tree {args.baseline}, candidate "
         f"{args.candidate or 'the working tree'}"),
        f"extra overrides: {args.overrides}" if args.overrides else "default config (no overrides)",
        (f"machine: {platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}; load average "
         f"(1 min) during the runs {min(loads):.1f}-{max(loads):.1f}: wall clock counts other users' jobs, cpu s does not"),
        "",
        f"{'configuration':<24}{'wall s':>9}{'cpu s':>9}{'(user':>8}{'sys)':>7}{'speed-up (cpu)':>16}{'products':>10}{'evaluations':>13}",
    ]
    for name, m in med.items():
        summary = runs[name][0]["summary"]
        products = sum(v for k, v in summary["hvp_counts"].items() if k != "exact")
        evaluations = sum(v["num_evaluations"] for v in summary["slices"].values())
        lines.append(f"{name:<24}{m['wall_s']:>9.1f}{m['cpu_s']:>9.1f}{m['user_s']:>8.1f}{m['sys_s']:>7.1f}"
                     f"{base['cpu_s'] / m['cpu_s']:>15.2f}x{products:>10d}{evaluations:>13d}")
    lines += ["", *stage_table(runs), ""]

    checks = [compare(a["summary"], b["summary"]) for a, b in zip(runs["after"], runs["before"])]
    same_grids = [compare(a["summary"], b["summary"])["slices_rel_diff_max"]
                  for a, b in zip(runs["after, old slice grids"], runs["before"])]
    noise = [density_distance(a["summary"], b["summary"]) for a, b in combinations(runs["before"], 2)]
    noise_after = [density_distance(a["summary"], b["summary"]) for a, b in combinations(runs["after"], 2)]
    worst = {k: max(c[k] for c in checks) for k in checks[0] if k != "slices_rel_diff_max"}
    slices = {name: max(c["slices_rel_diff_max"][name] for c in checks) for name in checks[0]["slices_rel_diff_max"]}
    lines += [
        "after vs before, same seed (worst over seeds):",
        f"  top-k eigenvalues: max relative difference {worst['top_rel_diff_max']:.1e}",
        f"  bottom-k eigenvalues: max relative difference {worst['bottom_rel_diff_max']:.1e}",
        f"  trace: difference {worst['trace_diff_in_sigma']:.2f} combined standard errors",
        ("  slices (same directions, the eigenvector's up to sign; before's surface interpolated onto the new grids): "
         "max relative loss difference "
         + ", ".join(f"{name} {v:.1e}" for name, v in slices.items())),
        ("  slices with the old grids (after, old slice grids vs before, point by point): "
         + ", ".join(f"{name} {max(c[name] for c in same_grids):.1e}" for name in same_grids[0])),
        (f"  density figure: total-variation distance {worst['density_tv_distance']:.1e} of the probability mass; "
         f"before vs before across seeds {max(noise):.1e}, after vs after across seeds {max(noise_after):.1e}"),
    ]
    a0, b0 = runs["after"][0]["summary"], runs["before"][0]["summary"]
    lines.append(f"  trace, seed 0: before {b0['trace']['value']:.4f} ± {b0['trace']['stderr']:.4f} ({b0['trace']['method']}), "
                 f"after {a0['trace']['value']:.4f} ± {a0['trace']['stderr']:.4f} ({a0['trace']['method']})")
    text = "\n".join(lines)
    print(text)
    result = {
        "network": info, "baseline": args.baseline, "candidate": args.candidate, "reps": args.reps, "threads": 1,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "medians": med, "checks": checks, "load_average_1min": loads, "density_noise_before": noise, "density_noise_after": noise_after,
        "slices_old_grids": same_grids,
        "runs": {name: [{"wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "user_s": r["user_s"], "sys_s": r["sys_s"],
                         "timings_s": r["summary"]["timings_s"],
                         "hvp_counts": r["summary"]["hvp_counts"], "trace": r["summary"]["trace"],
                         "top": r["summary"]["spectrum"]["top"], "bottom": r["summary"]["spectrum"]["bottom"]}
                        for r in reps] for name, reps in runs.items()},
        "table": lines,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.txt").write_text(text + "\n")
    from surrogates.io import write_json

    write_json(f"{args.out}.json", result)
    print(f"wrote {args.out}.txt and .json")
    return result


if __name__ == "__main__":
    main()
