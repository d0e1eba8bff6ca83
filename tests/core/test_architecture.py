"""The package's shape (ARCHITECTURE.md): layers that import only downwards, no cycles, every
subpackage shipped, and no plotting module that switches the user's matplotlib backend."""

from __future__ import annotations

import ast
import fnmatch
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "surrogates"

#: Lowest first; a module may import modules of its own layer or below (ARCHITECTURE.md).
LAYERS = [
    ("core", ["errors", "_lazy", "domain", "inference_mode", "io", "console", "activations", "model"]),
    ("calculus", ["calculus", "calculus.*"]),
    ("critical search", ["critical.report", "critical.classify", "critical.search", "critical.flow"]),
    ("the Surrogate", ["surrogate"]),
    ("landscape, figures, configs", ["landscape", "landscape.*", "plots", "critical.plots", "config"]),
    ("fitting", ["fitting", "fitting.*"]),
    ("zoom-in refinement", ["critical.refine"]),
    ("packages' public names", ["__init__", "critical"]),
    ("command line", ["cli", "cli.*"]),
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)
        found[name or "__init__"] = path
    return found


def _layer(module: str) -> int:
    for rank, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns):
            return rank
    raise AssertionError(f"surrogates.{module} is in no layer of LAYERS: add it (and to ARCHITECTURE.md)")


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules that ``path`` imports at run time (anywhere in it; not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for node in ast.walk(block)
    }
    targets = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets.update(_inner(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # ``from surrogates import calculus`` imports the submodule
                submodule = _inner(f"{node.module}.{alias.name}")
                targets.add(submodule if submodule in modules else _inner(node.module))
    return {target for target in targets if target in modules}


def _inner(name: str) -> str | None:
    """``surrogates.a.b`` → ``a.b`` (``surrogates`` → ``__init__``); None outside the package."""
    if name != "surrogates" and not name.startswith("surrogates."):
        return None
    return name.removeprefix("surrogates").removeprefix(".") or "__init__"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_every_module_imports_only_its_own_layer_or_below():
    upward = [
        f"surrogates.{module} ({LAYERS[_layer(module)][0]}) imports surrogates.{target} ({LAYERS[_layer(target)][0]})"
        for module, targets in _graph().items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_no_import_cycles():
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" → ".join([*stack[stack.index(target):], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_every_subpackage_is_shipped():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {
        ".".join(("surrogates", *init.parent.relative_to(PACKAGE).parts)) for init in PACKAGE.rglob("__init__.py")
    }
    assert packages - listed == set()


@pytest.mark.parametrize("module", ["surrogates.plots", "surrogates.critical.plots", "surrogates.landscape.plots"])
def test_plotting_modules_leave_the_users_matplotlib_backend_alone(module):
    code = (
        "import matplotlib; matplotlib.use('svg'); "
        f"import {module}; print(matplotlib.get_backend())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "svg"
