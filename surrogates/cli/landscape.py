"""``surrogates-landscape``: loss-landscape analysis of an existing network (Hydra app).

``main`` is a thin Hydra wrapper; :func:`run` does the work and is what tests call.

Where the products go (the default run): one Lanczos run from both ends gives the extreme
eigenvalues *and* a Krylov basis :math:`Q` that holds the outliers, which every later stage
reuses. The trace is :math:`\\operatorname{tr}(Q^\\top H Q)` (known from the run, no products)
plus Hutchinson in the complement of :math:`Q`, one product per probe
(``trace.method=deflated``; ``density`` takes the density's implied trace, ``hutchpp`` a
separate Hutch++). The spectral density carries :math:`Q`'s Ritz values exactly and spends its
products on a few long probes in the complement: its resolution comes from the steps per
probe, while more probes mainly buy trace accuracy, which the trace's own one-product probes
deliver more cheaply.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

import surrogates.config  # noqa: F401  (registers landscape_schema, which configs/landscape.yaml names)
from surrogates.cli.common import keep_freed_memory, reported_errors, set_threads
from surrogates.console import report
from surrogates.errors import InputError
from surrogates.io import output_folder, write_json, write_with
from surrogates.landscape import loading
from surrogates.landscape.character import characterize
from surrogates.landscape.density import spectral_density
from surrogates.landscape.exact import exact_spectrum
from surrogates.landscape.example import bundled_example
from surrogates.landscape.lanczos import lanczos, refine
from surrogates.landscape.layers import layer_spectra
from surrogates.landscape.operator import HessianOperator
from surrogates.landscape.slices import (
    accuracy,
    eigenvector_slice,
    interpolation_path,
    random_slice,
    slice_row,
)
from surrogates.landscape.trace import hutchpp
from surrogates.model import resolve_dtype


def _instantiate(node: Any, what: str) -> Any:
    if not (isinstance(node, DictConfig) and "_target_" in node):
        raise InputError(f"{what} must be a mapping with a _target_ key, got {node!r}")
    return hydra.utils.instantiate(node, _convert_="all")


def _network(cfg: DictConfig, out: Path) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """Return (model, data-or-None, info) from cfg.network (or the bundled example)."""
    net = cfg.network
    given = [k for k in ("model", "archive", "surrogate") if net.get(k) is not None]
    if len(given) > 1:
        raise InputError(f"give only one of network.model, network.archive, network.surrogate; got {given}")
    if not given:
        ex = bundled_example(seed=cfg.seed, steps=cfg.example.steps, n_samples=cfg.example.n_samples)
        write_with(out / "example_model.pt", lambda p: torch.save(ex.model.state_dict(), p))
        write_with(out / "example_data.npz", lambda p: np.savez(p, x=ex.X.numpy(), y=ex.Y.numpy()))
        return ex.model, (ex.X, ex.Y), {"kind": "bundled example", **ex.info}
    if given[0] == "model":
        model = _instantiate(net.model, "network.model")
        if not isinstance(model, torch.nn.Module):
            raise InputError(f"network.model built a {type(model).__name__}, not a torch.nn.Module")
        info: dict[str, Any] = {"kind": "model", "target": str(net.model._target_)}
        if net.state_dict is not None:
            state = loading.load_state_dict(net.state_dict, key=net.state_dict_key, prefix=net.state_dict_prefix or "")
            loading.apply_state_dict(model, state, source=f"state dict {net.state_dict}")
            info["state_dict"] = net.state_dict
        return model, None, info
    if given[0] == "archive":
        return loading.load_archive(net.archive), None, {"kind": "archive", "path": net.archive}
    return loading.load_surrogate(net.surrogate), None, {"kind": "surrogate", "path": net.surrogate}


def _data(cfg: DictConfig, default: Any) -> Any:
    src = cfg.data.source
    if src is None:
        if default is None:
            raise InputError("data.source is required when a network is given (a _target_ mapping or a .npz/.npy path)")
        return default
    if isinstance(src, DictConfig):
        return _instantiate(src, "data.source")
    return loading.load_arrays(src, targets=cfg.data.targets, inputs_key=cfg.data.inputs_key, targets_key=cfg.data.targets_key)


def run(cfg: DictConfig, output_dir: str | Path | None = None) -> dict[str, Any]:
    """Analyse the configured network; write ``landscape.json`` and figures into ``output_dir``.

    Returns:
        The summary dict written to ``landscape.json``.
    """
    if output_dir is None:
        from hydra.core.hydra_config import HydraConfig

        output_dir = HydraConfig.get().runtime.output_dir
    out = output_folder(output_dir)
    set_threads(cfg.threads)
    if cfg.trace.method not in ("deflated", "density", "hutchpp"):
        raise InputError(f"trace.method must be deflated, density or hutchpp, got {cfg.trace.method!r}")
    seed = cfg.seed
    bar = cfg.progress
    t_all = time.perf_counter()
    timings: dict[str, float] = {}

    t = time.perf_counter()
    model, default_data, net_info = _network(cfg, out)
    data = _data(cfg, default_data)
    loss_fn = _instantiate(cfg.loss, "loss")
    params = cfg.hessian.params
    if params is not None and not isinstance(params, str):
        params = [str(p) for p in params]
    if params is None and net_info["kind"] == "surrogate":
        params = "*"  # surrogates are stored frozen; study all their weights
    dtype = None if cfg.hessian.dtype is None else resolve_dtype(cfg.hessian.dtype, "hessian.dtype")
    op = HessianOperator(
        model,
        loss_fn,
        data,
        params=params,
        dtype=dtype,
        batch_size=cfg.data.batch_size,
        cache_graphs=cfg.hessian.cache_graphs,
        mode=cfg.hessian.mode,
        progress=bar,
    )
    timings["setup_s"] = time.perf_counter() - t

    t = time.perf_counter()
    loss, grad = op.loss_and_gradient()
    grad_norm = float(torch.linalg.vector_norm(grad.double()))
    timings["gradient_s"] = time.perf_counter() - t
    classification = isinstance(loss_fn, torch.nn.CrossEntropyLoss)
    metrics = {"accuracy": accuracy} if classification else None
    base = op.evaluate(None, metrics)

    # ---- spectrum: top-k and bottom-k from one Lanczos run (shared Krylov space)
    k = min(cfg.spectrum.k, max(1, (op.n - 1) // 2))
    t = time.perf_counter()
    op.reset_counter()
    spec = lanczos(op, k, "BE", max_iter=cfg.spectrum.max_iter, tol=cfg.spectrum.tol, seed=seed, keep_basis=cfg.density.deflate or cfg.trace.method == "deflated", progress=bar)
    spec_products = op.num_products
    if cfg.spectrum.refine and op.dtype != torch.float64:
        op64 = HessianOperator(model, loss_fn, data, params=params, dtype=torch.float64, batch_size=cfg.data.batch_size, cache_graphs=cfg.hessian.cache_graphs, mode=cfg.hessian.mode)
        spec = refine(op64, spec)
        spec_products += op64.num_products
        del op64
    timings["spectrum_s"] = time.perf_counter() - t
    top, bottom = spec.eigenvalues[:k], spec.eigenvalues[k:]

    # ---- trace and density (deflated SLQ)
    t = time.perf_counter()
    op.reset_counter()
    if cfg.trace.method == "hutchpp":
        tr = hutchpp(op, cfg.trace.num_products, seed=seed + 1, progress=bar)
        trace = tr.to_dict()
    elif cfg.trace.method == "deflated":
        # one-step SLQ probes are Hutchinson probes in the complement of the basis, and the
        # implied trace adds the basis's Rayleigh quotients: exactly the deflated estimator
        tr = spectral_density(op, cfg.trace.num_probes, 1, seed=seed + 1, deflate=spec, progress=bar)
        trace = {"method": "Krylov-deflated Hutchinson", "value": tr.trace, "stderr": tr.trace_stderr,
                 "num_products": tr.num_products, "num_probes": len(tr.nodes), "krylov_dim": len(tr.deflated)}
    timings["trace_s"] = time.perf_counter() - t
    t = time.perf_counter()
    op.reset_counter()
    dens = spectral_density(op, cfg.density.num_probes, cfg.density.num_steps, seed=seed + 2, deflate=spec if cfg.density.deflate else None, progress=bar)
    timings["density_s"] = time.perf_counter() - t
    if cfg.trace.method == "density":
        trace = {"method": "density", "value": dens.trace, "stderr": dens.trace_stderr,
                 "num_products": 0, "num_probes": len(dens.nodes)}  # the density's own probes

    # ---- per-layer blocks H_bb: their own Lanczos runs, traces from shared full-Hessian probes
    layers = None
    if cfg.layers.enabled:
        t = time.perf_counter()
        layers = layer_spectra(
            model, loss_fn, data, params=params, max_iter=cfg.layers.max_iter, tol=cfg.spectrum.tol,
            trace_probes=cfg.layers.trace_probes, seed=seed + 5, dtype=dtype,
            batch_size=cfg.data.batch_size, cache_graphs=cfg.hessian.cache_graphs, mode=cfg.hessian.mode, progress=bar,
        )
        timings["layers_s"] = time.perf_counter() - t

    # ---- exact reference for small networks
    exact = None
    if op.n <= cfg.exact.max_params:
        t = time.perf_counter()
        ev = exact_spectrum(op, progress=bar)
        timings["exact_s"] = time.perf_counter() - t
        exact = {
            "eigenvalues": ev,
            "trace": float(np.sum(ev)),
            "lambda_max": float(ev[-1]),
            "lambda_min": float(ev[0]),
            "top_abs_error": np.abs(top - ev[::-1][:k]).tolist(),
            "bottom_abs_error": np.abs(bottom - ev[:k]).tolist(),
            "trace_rel_error": abs(trace["value"] - float(np.sum(ev))) / abs(float(np.sum(ev))),
            "density_trace_rel_error": abs(dens.trace - float(np.sum(ev))) / abs(float(np.sum(ev))),
        }

    character = characterize(
        grad_norm,
        exact["eigenvalues"] if exact else spec.eigenvalues,
        parameter_norm=float(torch.linalg.vector_norm(op.parameters_vector().double())),
        gradient_tol=cfg.critical.gradient_tol,
        negative_rtol=cfg.critical.negative_rtol,
        full_spectrum=exact is not None,
        converged=spec.all_converged,
    )
    if exact is not None:
        exact["num_negative"] = character.num_negative  # counted over the full spectrum, with the verdict's threshold

    # ---- slices: every one passes through the weights (evaluated once, above); the 1-D random
    # slice runs along the 2-D slice's first direction, whose points on that line it reuses
    t = time.perf_counter()
    op.reset_counter()
    sl = cfg.slices
    origin = {(0.0,): base}
    s2 = random_slice(op, sl.points_2d, sl.span, dims=2, seed=seed + 3, metrics=metrics, known={(0.0, 0.0): base}, progress=bar)
    s1 = random_slice(op, sl.points_1d, sl.span, seed=seed + 3, metrics=metrics, known=slice_row(s2), progress=bar)
    lam = float(top[0])
    espan = sl.eigen_span if sl.eigen_span is not None else (math.sqrt(2.0 / lam) if lam > 0 else 1.0)
    v1 = spec.eigenvectors[:, 0]
    v1 = v1 * torch.sign(v1[torch.argmax(v1.abs())])  # an eigenvector has no sign: fix one, so runs draw the same curve
    se = eigenvector_slice(op, v1, sl.points_1d, espan, metrics=metrics, known=origin, progress=bar)
    path = None
    if cfg.network.compare_state_dict is not None:
        other = loading.load_state_dict(cfg.network.compare_state_dict, key=cfg.network.state_dict_key, prefix=cfg.network.state_dict_prefix or "")
        path = interpolation_path(op, None, other, sl.path_points, extend=sl.path_extend, metrics=metrics, progress=bar)
    timings["slices_s"] = time.perf_counter() - t

    summary: dict[str, Any] = {
        "network": net_info,
        "num_params": op.n,
        "params": op.param_names,
        "num_samples": op.num_samples,
        "dtype": str(op.dtype).replace("torch.", ""),
        "mode": op.mode,
        "loss": loss,
        "metrics_at_weights": base,
        "gradient_norm": grad_norm,
        "critical_point": character.to_dict(),
        "spectrum": {**spec.to_dict(), "top": top.tolist(), "bottom": bottom.tolist(), "num_products_total": spec_products},
        "trace": trace,
        "density": dens.to_dict(),
        "exact": exact,
        "layers": layers.to_dict() if layers else None,
        "slices": {
            "random_1d": s1.to_dict(),
            "random_2d": s2.to_dict(),
            "eigenvector_1d": {**se.to_dict(), "eigenvalue": lam},
            **({"path": path.to_dict()} if path else {}),
        },
        "hvp_counts": {
            "spectrum": spec_products,
            "trace": trace["num_products"],
            "density": dens.num_products,
            "layers": layers.num_products if layers else 0,
            "exact": op.n if exact else 0,
        },
        "timings_s": timings,
        "threads": torch.get_num_threads(),
        "seed": seed,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    figures = []
    if cfg.figures:
        from surrogates.landscape import plots

        def save(name: str, fig) -> None:
            write_with(out / name, lambda p: fig.savefig(p, dpi=120))
            figures.append(name)

        ev_exact = exact["eigenvalues"] if exact else None
        save("density.png", plots.plot_density(dens, ev_exact))
        save("eigenvalues.png", plots.plot_eigenvalues(top, bottom, ev_exact))
        save("slice_1d.png", plots.plot_slices_1d([s1, se], ["random (filter-normalised)", "top eigenvector"]))
        save("slice_2d.png", plots.plot_slice_2d(s2))
        if path is not None:
            save("path.png", plots.plot_path(path))
        if layers is not None:
            save("layers.png", plots.plot_layers(layers))
    timings["total_s"] = time.perf_counter() - t_all
    summary["figures"] = figures
    write_json(out / "landscape.json", summary)
    _print_summary(summary, out, layers)
    return summary


def _print_summary(s: dict[str, Any], out: Path, layers: Any) -> None:
    cp = s["critical_point"]
    sp = s["spectrum"]
    lines = [
        f"network: {s['network']['kind']}  params: {s['num_params']}  samples: {s['num_samples']}  dtype: {s['dtype']}",
        f"loss: {s['loss']:.6g}  |grad|: {s['gradient_norm']:.3g}",
        f"top eigenvalues:    {np.array2string(np.asarray(sp['top']), precision=5)}",
        f"bottom eigenvalues: {np.array2string(np.asarray(sp['bottom']), precision=5)}  ({sp['status']})",
        (f"trace ({s['trace']['method']}): {s['trace']['value']:.5g} ± {s['trace']['stderr']:.2g}   density implied trace: "
         f"{s['density']['implied_trace']:.5g} ± {s['density']['implied_trace_stderr']:.2g}"),
    ]
    if layers is not None:
        lines.append(layers.table())
    if s["exact"]:
        lines.append(f"exact: trace {s['exact']['trace']:.5g}, lambda_max {s['exact']['lambda_max']:.6g}, lambda_min {s['exact']['lambda_min']:.6g}")
    lines += [
        f"critical point: {cp['kind']} — {cp['explanation']}",
        f"Hessian-vector products: {s['hvp_counts']}  time: {s['timings_s'].get('total_s', 0):.1f} s",
        f"outputs: {out}",
    ]
    report("\n".join(lines))


@hydra.main(version_base="1.3", config_path="pkg://surrogates.configs", config_name="landscape")
def main(cfg: DictConfig) -> None:
    """Console entry point ``surrogates-landscape``: a user's mistake is one ``error: …`` line and exit 2."""
    keep_freed_memory()
    with reported_errors():
        run(cfg)


if __name__ == "__main__":
    main()
