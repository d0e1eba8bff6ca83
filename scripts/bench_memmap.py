"""Training from a memory-mapped .npy far larger than the memory it needs.

Writes X.npy (N × d float64, default 2 million × 20) and y.npy, then, each in a fresh process:

* ``baseline``  — load both arrays whole (what a non-mapped loader needs),
* ``imports``   — only import the package, torch and Lightning (the floor of any run),
* ``train``     — a short ``surrogates-train data=npy`` run (a few hundred batches of 4096 rows:
  validation of the whole file, statistics, splits, training, fit metrics on all rows).

For each it reports the peak resident set size (VmHWM: anonymous memory *and* mapped file
pages a process touched) and the sampled peaks of its anonymous and file-backed parts. Prints a
table and writes JSON.

    python scripts/bench_memmap.py [--rows 2000000] [--dim 20] [--batches 300] [--json bench_memmap.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

MB = 1 << 20


def _status() -> dict[str, int]:
    """Selected /proc/self/status fields in bytes."""
    fields = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) * 1024
    return fields


class _Sampler(threading.Thread):
    """Samples RssAnon / RssFile every few milliseconds and keeps the peaks."""

    def __init__(self, period: float = 0.02):
        super().__init__(daemon=True)
        self.period, self.peaks, self.running = period, {"RssAnon": 0, "RssFile": 0}, True

    def run(self) -> None:
        while self.running:
            status = _status()
            for key in self.peaks:
                self.peaks[key] = max(self.peaks[key], status.get(key, 0))
            time.sleep(self.period)

    def stop(self) -> dict[str, int]:
        self.running = False
        self.join()
        status = _status()
        return {"VmHWM": status["VmHWM"], "peak_RssAnon": self.peaks["RssAnon"], "peak_RssFile": self.peaks["RssFile"]}


def _child(mode: str, folder: Path, batches: int) -> None:
    """Runs in a fresh process; prints one JSON line."""
    sampler = _Sampler()
    sampler.start()
    started = time.perf_counter()
    extra = {}
    if mode == "baseline":
        X, y = np.load(folder / "X.npy"), np.load(folder / "y.npy")
        extra["checksum"] = float(X[::100_000].sum() + y[::100_000].sum())
    else:
        import torch

        torch.set_num_threads(1)
        from surrogates.config import compose_config
        from surrogates.fitting.train import train

        if mode == "train":
            overrides = [
                "data=npy", f"data.source.inputs={folder / 'X.npy'}", f"data.source.outputs={folder / 'y.npy'}",
                "data.batch_size=4096", "trainer.max_epochs=1", f"+trainer.limit_train_batches={batches}",
                "+trainer.limit_val_batches=20", "trainer.check_val_every_n_epoch=1", "model.polish_epochs=0",
                "trainer.enable_progress_bar=false", "logger=none", "threads=1",
            ]
            result = train(compose_config("train", overrides), output_dir=folder / "run")
            extra = {"validation_r2": result.summary["validation"]["r2"], "fit_seconds": result.summary["fit_seconds"]}
    peaks = sampler.stop()
    print(json.dumps({"mode": mode, "seconds": round(time.perf_counter() - started, 2), **peaks, **extra}))


def _make_data(folder: Path, rows: int, dim: int, chunk: int = 200_000) -> int:
    """X uniform in [-1, 1]^d, y = Σ sin(x_j) + 0.1 x_0 x_1; written in chunks (never whole in RAM)."""
    rng = np.random.default_rng(0)
    X = np.lib.format.open_memmap(folder / "X.npy", mode="w+", dtype=np.float64, shape=(rows, dim))
    y = np.lib.format.open_memmap(folder / "y.npy", mode="w+", dtype=np.float64, shape=(rows,))
    for start in range(0, rows, chunk):
        block = rng.uniform(-1, 1, (min(chunk, rows - start), dim))
        X[start : start + len(block)] = block
        y[start : start + len(block)] = np.sin(block).sum(1) + 0.1 * block[:, 0] * block[:, 1]
    X.flush(), y.flush()
    del X, y
    return sum((folder / name).stat().st_size for name in ("X.npy", "y.npy"))


def _run(mode: str, folder: Path, batches: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--folder", str(folder), "--batches", str(batches)],
        capture_output=True, text=True, env=env, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--dim", type=int, default=20)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--json", default="bench_memmap.json")
    parser.add_argument("--child", choices=["baseline", "imports", "train"])
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.child:
        _child(args.child, Path(args.folder), args.batches)
        return

    with tempfile.TemporaryDirectory(prefix="bench-memmap-") as scratch:
        folder = Path(scratch)
        file_bytes = _make_data(folder, args.rows, args.dim)
        results = {mode: _run(mode, folder, args.batches) for mode in ("imports", "baseline", "train")}

    imports = results["imports"]["VmHWM"]
    print(f"memory-mapped .npy: {args.rows:,} × {args.dim} inputs + outputs = {file_bytes / MB:.0f} MB on disk; "
          f"{args.batches} batches of 4096 rows")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, torch threads 1")
    print(f"{'run':<10} {'peak RSS MB':>12} {'× file':>8} {'peak anon MB':>13} {'peak file MB':>13} {'seconds':>8}")
    for mode, r in results.items():
        print(f"{mode:<10} {r['VmHWM'] / MB:>12.0f} {r['VmHWM'] / file_bytes:>8.2f} "
              f"{r['peak_RssAnon'] / MB:>13.0f} {r['peak_RssFile'] / MB:>13.0f} {r['seconds']:>8.1f}")
    train = results["train"]["VmHWM"]
    print(f"training peak RSS is {train / file_bytes:.2f} × the file size; above the import floor it is "
          f"{(train - imports) / MB:.0f} MB = {(train - imports) / file_bytes:.2f} × the file size "
          f"(loading the arrays whole: {results['baseline']['VmHWM'] / MB:.0f} MB)")
    report = {
        "rows": args.rows, "dim": args.dim, "batches": args.batches, "file_bytes": file_bytes,
        "machine": {"platform": platform.platform(), "cores": os.cpu_count(), "torch_threads": 1},
        "runs": results,
        "train_peak_over_file": train / file_bytes,
        "train_peak_above_imports_over_file": (train - imports) / file_bytes,
    }
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
