"""Import cost of the package's doors against ``import torch``, in fresh interpreters, same run.

Every statement runs in its own new ``python -c`` process, ``--repeats`` times, the statements
interleaved so that load drifts on a shared machine hit all of them alike. The clock is the
child's CPU time (user + sys, from ``resource.getrusage(RUSAGE_CHILDREN)``), which other jobs on
the machine barely move; wall time is reported beside it. The ratio is each statement's median
CPU time over the median of ``import torch`` (issue 19 asks ``import surrogates`` to stay
within 1.5x of it: a command or a notebook pays for the doors it uses, not for Lightning).

    python scripts/bench_imports.py                   # 7 repeats, writes scripts/results/bench_imports.txt/.json
    python scripts/bench_imports.py --repeats 3 --out /tmp/imports
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

BASELINE = "import torch"
STATEMENTS = (
    BASELINE,
    "import surrogates",
    "import surrogates.calculus",
    "import surrogates.landscape",
    "import surrogates; surrogates.Surrogate; surrogates.load; surrogates.calculus.hessian",
    "from surrogates import fit",  # the fitting door: Lightning and Hydra
)


def child_seconds(statement: str) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one fresh interpreter running ``statement``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def measure(statements: tuple[str, ...] = STATEMENTS, repeats: int = 7) -> dict[str, dict[str, float]]:
    """Median CPU and wall seconds per statement, and the CPU ratio to :data:`BASELINE`.

    One warm-up run of each statement first fills the file cache, so the first measured
    statement is not charged for reading torch from disk.
    """
    if BASELINE not in statements:
        statements = (BASELINE, *statements)
    for statement in statements:
        child_seconds(statement)
    samples: dict[str, list[tuple[float, float]]] = {s: [] for s in statements}
    for _ in range(repeats):
        for statement in statements:
            samples[statement].append(child_seconds(statement))
    rows = {
        s: {"cpu_s": statistics.median(c for c, _ in runs), "wall_s": statistics.median(w for _, w in runs)}
        for s, runs in samples.items()
    }
    for row in rows.values():
        row["cpu_ratio"] = row["cpu_s"] / rows[BASELINE]["cpu_s"]
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7, help="fresh interpreters per statement (medians reported)")
    ap.add_argument("--out", default=str(RESULTS / "bench_imports"), help="output path without suffix")
    args = ap.parse_args(argv)
    rows = measure(STATEMENTS, args.repeats)
    load = os.getloadavg()[0]
    lines = [
        f"bench_imports: {platform.platform()}, {os.cpu_count()} cores, python {sys.version.split()[0]}, "
        f"load average (1 min) {load:.1f}; medians of {args.repeats} fresh interpreters each",
        f"{'statement':<88}{'cpu s':>8}{'wall s':>8}{'cpu / torch':>13}",
    ]
    for statement, row in rows.items():
        lines.append(f"{statement:<88}{row['cpu_s']:>8.2f}{row['wall_s']:>8.2f}{row['cpu_ratio']:>12.2f}x")
    lines.append("cpu s: the child's user + sys time; the target is import surrogates <= 1.5x import torch")
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    from surrogates.io import write_json

    result = {"rows": rows, "repeats": args.repeats, "load_average": load, "table": lines}
    write_json(out.with_suffix(".json"), result)
    return result


if __name__ == "__main__":
    main()
