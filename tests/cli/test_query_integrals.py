"""surrogates-query: the vector-calculus quantities and the integrate section (integrals.json)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from conftest import run_command

import surrogates
from surrogates.cli.query import run
from surrogates.errors import ExtrapolationError
from surrogates.model import MLP
from surrogates.surrogate import Surrogate

QUIET = ["plot=false", "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def field3(tmp_path_factory):
    """R³ → R³ on [0, 1] × [0, 1] × [0, 10], saved."""
    torch.manual_seed(3)
    model = MLP(3, 3, width=8, depth=2, activation="tanh")
    model.set_normalisation(torch.tensor([0.5, 0.5, 5.0]), torch.tensor([0.3, 0.3, 3.0]), torch.zeros(3), torch.ones(3))
    s = Surrogate(model, ["x", "y", "z"], ["a", "b", "c"], False, lower=[0, 0, 0], upper=[1, 1, 10])
    path = tmp_path_factory.mktemp("field3") / "s.safetensors"
    s.save(path)
    return s, path


@pytest.fixture(scope="module")
def scalar2(tmp_path_factory):
    torch.manual_seed(4)
    members = [MLP(2, 1, width=8, depth=2) for _ in range(2)]
    s = Surrogate(members, ["u", "v"], ["f"], True, lower=[0, 0], upper=[1, 20])
    path = tmp_path_factory.mktemp("scalar2") / "s.safetensors"
    s.save(path)
    return s, path


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the surrogates-query entry point with ``argv``; (exit code, stdout, stderr)."""
    code = run_command("query", argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_pointwise_vector_calculus_quantities_in_npz_and_csv(compose_config, field3, tmp_path):
    s, path = field3
    X = np.random.default_rng(0).uniform([0, 0, 0], [1, 1, 10], size=(7, 3))
    np.save(tmp_path / "points.npy", X)
    cfg = compose_config("query", [f"checkpoint={path}", f"points={tmp_path / 'points.npy'}", *QUIET,
                                   "quantities=[jacobian_determinant,log_abs_det_jacobian,divergence,curl]"])
    summary = run(cfg, tmp_path / "out")
    assert summary["quantities"] == {"jacobian_determinant": [7], "log_abs_det_jacobian": [7], "divergence": [7], "curl": [7, 3]}
    saved = np.load(tmp_path / "out" / "query.npz")
    np.testing.assert_allclose(saved["jacobian_determinant"], s.jacobian_determinant(X), rtol=1e-12)
    np.testing.assert_allclose(saved["curl"], s.curl(X), rtol=1e-12)
    rows = list(csv.DictReader((tmp_path / "out" / "query.csv").open()))
    J = s.jacobian(X)
    assert list(rows[0])[3:] == ["jacobian_determinant", "log_abs_det_jacobian", "divergence",
                                 "dc/dy-db/dz", "da/dz-dc/dx", "db/dx-da/dy"]
    for n, row in enumerate(rows):
        assert float(row["dc/dy-db/dz"]) == pytest.approx(J[n, 2, 1] - J[n, 1, 2], rel=1e-12)
        assert float(row["db/dx-da/dy"]) == pytest.approx(J[n, 1, 0] - J[n, 0, 1], rel=1e-12)
        assert float(row["divergence"]) == saved["divergence"][n]
    assert "integrals" not in summary["files"] and summary["integral"] is None


def test_integral_only_writes_integrals_json_and_prints_one_line(field3, tmp_path, capsys):
    s, path = field3
    code, out, err = _main([f"checkpoint={path}", "quantities=[]", "integrate.region=ball", "integrate.radius=0.4",
                            "integrate.points=4096", "integrate.seed=5", f"hydra.run.dir={tmp_path / 'run'}", *QUIET], capsys)
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "integrals.json").read_text())
    expected = s.integrate(surrogates.Ball([0.5, 0.5, 5.0], 0.4), points=4096, seed=5)
    assert saved["value"] == pytest.approx(dict(zip("abc", expected.value.tolist())), rel=1e-12)
    assert saved["stderr"] == pytest.approx(dict(zip("abc", expected.stderr.tolist())), rel=1e-9)
    assert saved["ensemble_std"] is None and saved["points"] == 4096 and saved["region"] == "Ball(center=[0.5, 0.5, 5.0], radius=0.4)"
    assert saved["volume"] == pytest.approx(4 / 3 * np.pi * 0.4**3)
    assert not (tmp_path / "run" / "query.npz").exists()  # quantities=[]: no pointwise query
    lines = [line for line in out.splitlines() if "integral over" in line]
    assert len(lines) == 1 and f"a = {expected.value[0]:.10g} ± " in lines[0] and "4096 points" in lines[0]
    assert "warning" not in err


def test_box_integral_defaults_to_the_training_domain_with_pointwise_quantities(compose_config, scalar2, tmp_path):
    s, path = scalar2
    cfg = compose_config("query", [f"checkpoint={path}", "integrate.region=box", "grid.counts=3", "quantities=[value]", *QUIET])
    summary = run(cfg, tmp_path / "out")
    expected = s.integrate(surrogates.Box([0, 0], [1, 20]))
    integral = json.loads((tmp_path / "out" / "integrals.json").read_text())
    assert integral["value"]["f"] == pytest.approx(expected.value, rel=1e-12)
    assert integral["ensemble_std"]["f"] == pytest.approx(expected.ensemble_std, rel=1e-10)
    assert summary["points"] == 9 and (tmp_path / "out" / "query.npz").exists()
    assert json.loads((tmp_path / "out" / "query.json").read_text())["integral"]["value"] == integral["value"]
    cfg = compose_config("query", [f"checkpoint={path}", "integrate.region=box", "integrate.lower=0.5", "quantities=[]", *QUIET])
    run(cfg, tmp_path / "half")  # one number: the corner (0.5, 0.5); the upper corner the domain's
    expected = s.integrate(surrogates.Box([0.5, 0.5], [1, 20]))
    assert json.loads((tmp_path / "half" / "integrals.json").read_text())["value"]["f"] == pytest.approx(expected.value, rel=1e-12)
    cfg = compose_config("query", [f"checkpoint={path}", "integrate.region=simplex", "quantities=[]",
                                   "integrate.vertices=[[0,0],[1,0],[0,20]]", "integrate.sampler=random", *QUIET])
    run(cfg, tmp_path / "simplex")
    simplex = s.integrate(surrogates.Simplex([[0, 0], [1, 0], [0, 20]]), sampler="random")
    assert json.loads((tmp_path / "simplex" / "integrals.json").read_text())["value"]["f"] == pytest.approx(simplex.value, rel=1e-12)


def test_a_region_outside_the_domain_warns_once_or_refuses(compose_config, scalar2, tmp_path, capsys):
    _, path = scalar2
    base = [f"checkpoint={path}", "quantities=[]", "integrate.region=ball", "integrate.center=[0.9,10]", "integrate.radius=0.5", *QUIET]
    code, _, err = _main([*base, f"hydra.run.dir={tmp_path / 'warn'}"], capsys)
    assert code == 0
    warning_lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning_lines) == 1 and "sample points of Ball(center=[0.9, 10.0], radius=0.5) lie outside" in warning_lines[0]
    assert json.loads((tmp_path / "warn" / "integrals.json").read_text())["extrapolation_message"] in warning_lines[0]
    with pytest.raises(ExtrapolationError):
        run(compose_config("query", [*base, "extrapolation=error"]), tmp_path / "error")
    assert not (tmp_path / "error" / "integrals.json").exists()
    run(compose_config("query", [*base, "extrapolation=nan"]), tmp_path / "nan")
    assert np.isnan(json.loads((tmp_path / "nan" / "integrals.json").read_text())["value"]["f"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["integrate.region=torus"], "integrate.region must be one of ['ball', 'box', 'simplex'] or null, got 'torus'"),
        (["integrate.region=ball"], "integrate.region=ball needs integrate.radius"),
        (["integrate.region=ball", "integrate.radius=0"], "Ball has zero volume: radius 0"),
        (["integrate.region=box", "integrate.radius=1"], "integrate.radius does not apply to a box (it takes ['lower', 'upper'])"),
        (["integrate.region=box", "integrate.lower=[0,0,0]", "integrate.upper=[1,1,1]"], "region of R^3, but the surrogate has 2 inputs"),
        (["integrate.region=box", "integrate.upper=[1,0]"], "zero or negative width on axes [1]"),
        (["integrate.region=simplex"], "integrate.region=simplex needs integrate.vertices, 3 rows of 2"),
        (["integrate.region=box", "integrate.points=0"], "points must be a positive integer, got 0"),
        (["integrate.region=box", "integrate.replicates=1"], "replicates must be at least 2"),
        ([], "nothing to compute: quantities=[] and no integrate.region"),
    ],
)
def test_bad_integrate_settings_are_one_error_line_and_nothing_written(scalar2, tmp_path, capsys, overrides, message):
    _, path = scalar2
    code, _, err = _main([f"checkpoint={path}", "quantities=[]", *overrides, f"hydra.run.dir={tmp_path / 'run'}", *QUIET], capsys)
    errors = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert code == 2 and errors == [err.strip().splitlines()[-1]] and message in errors[0], err
    assert not any((tmp_path / "run" / name).exists() for name in ("integrals.json", "query.json", "query.npz"))


def test_square_only_quantities_on_a_scalar_surrogate_are_one_error_line(scalar2, tmp_path, capsys):
    _, path = scalar2
    code, _, err = _main([f"checkpoint={path}", "quantities=[value,divergence]", f"hydra.run.dir={tmp_path / 'run'}", *QUIET], capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: ['divergence'] need a square map")
    assert not (tmp_path / "run" / "query.npz").exists()
