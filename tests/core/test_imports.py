"""Import cost: the derivative and landscape doors need torch only, not Lightning or Hydra."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import load_script

HEAVY = ("lightning", "hydra", "matplotlib")


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.split()


@pytest.mark.parametrize(
    "statement",
    [
        "import surrogates",
        "import surrogates.calculus",
        "import surrogates.landscape",
        "import surrogates; surrogates.Surrogate; surrogates.load; surrogates.calculus.hessian",
    ],
)
def test_light_imports_load_neither_lightning_nor_hydra_nor_matplotlib(statement):
    assert _loaded_after(statement) == []


def test_fitting_names_still_resolve_from_the_package_root():
    import surrogates

    assert callable(surrogates.fit) and callable(surrogates.fit_active)
    assert issubclass(surrogates.DataError, ValueError)
    assert surrogates.fitting.sources.FunctionSource is not None  # submodules resolve as attributes
    assert set(surrogates.__all__) <= set(dir(surrogates))
    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        surrogates.fitt


@pytest.mark.slow
def test_package_import_costs_at_most_one_and_a_half_torch_imports():
    """CPU time of fresh interpreters, interleaved (scripts/bench_imports.py): torch dominates."""
    bench = load_script("bench_imports")
    statement = "import surrogates; surrogates.Surrogate; surrogates.load; surrogates.calculus.hessian"
    rows = bench.measure((bench.BASELINE, statement), repeats=3)
    assert rows[statement]["cpu_ratio"] <= 1.5, rows
