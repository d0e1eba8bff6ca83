"""``surrogates-query integrate.region=…``: integrals of a surrogate over a region from the config.

The ``integrate`` section of configs/query.yaml names a region of the surrogate's inputs —
a box, a ball or a simplex, whose corners, centre, radius or vertices default to the
training domain where that makes sense — and the randomised QMC settings. The integral is
computed before anything is written, so a bad region or an ``extrapolation=error`` refusal
leaves the run folder without results. Regions given by a Python callable (``Indicator``,
``Mapped``) are for the Python API: a config holds no code.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from surrogates.calculus import Ball, Box, Region, Simplex
from surrogates.cli.common import box_corner
from surrogates.errors import ExtrapolationWarning, InputError
from surrogates.surrogate import Surrogate

#: Region name → the integrate keys it takes (every other region key must stay null).
REGION_KEYS = {"box": ("lower", "upper"), "ball": ("center", "radius"), "simplex": ("vertices",)}
_ALL_KEYS = sorted({key for keys in REGION_KEYS.values() for key in keys})


def _setting(spec: DictConfig, key: str) -> Any:
    value = spec.get(key)
    return OmegaConf.to_object(value) if OmegaConf.is_config(value) else value


def region_from_config(spec: DictConfig | None, surrogate: Surrogate) -> Region | None:
    """The region ``spec`` (the ``integrate`` section) describes, or None if ``spec.region`` is null.

    Box corners default to the training domain's, a ball's centre to the domain's centre;
    a ball needs ``radius`` and a simplex ``vertices``.

    Raises:
        InputError: an unknown region name, a key that belongs to another region, a missing
            radius or vertices, a region of another dimension than the surrogate's inputs, or
            anything the region itself refuses (zero volume, upper < lower, …).
    """
    if spec is None or spec.get("region") is None:
        return None
    name = spec.region.lower()
    if name not in REGION_KEYS:
        raise InputError(f"integrate.region must be one of {sorted(REGION_KEYS)} or null, got {spec.region!r}")
    stray = [key for key in _ALL_KEYS if key not in REGION_KEYS[name] and _setting(spec, key) is not None]
    if stray:
        raise InputError(f"integrate.{stray[0]} does not apply to a {name} (it takes {list(REGION_KEYS[name])})")
    if name == "box":
        region = Box(box_corner(spec.get("lower"), surrogate.lower, "integrate.lower"),
                     box_corner(spec.get("upper"), surrogate.upper, "integrate.upper"))
    elif name == "ball":
        center, radius = _setting(spec, "center"), _setting(spec, "radius")
        if radius is None:
            raise InputError("integrate.region=ball needs integrate.radius (and optionally integrate.center)")
        region = Ball((surrogate.lower + surrogate.upper) / 2 if center is None else center, radius)
    else:
        vertices = _setting(spec, "vertices")
        if vertices is None:
            raise InputError(f"integrate.region=simplex needs integrate.vertices, {surrogate.in_dim + 1} rows of {surrogate.in_dim}")
        region = Simplex(vertices)
    if region.dim != surrogate.in_dim:
        raise InputError(
            f"integrate: {region!r} is a region of R^{region.dim}, but the surrogate has "
            f"{surrogate.in_dim} inputs {surrogate.input_names}"
        )
    return region


def integral_summary(surrogate: Surrogate, region: Region, spec: DictConfig, extrapolation: str) -> dict[str, Any]:
    """∫ of every output over ``region`` with the settings of ``spec``, as JSON-ready facts."""
    settings = {key: spec.get(key) for key in ("points", "replicates", "seed", "sampler")}
    with warnings.catch_warnings(record=True) as caught:
        # "warn": the summary carries the message and the command prints it once, as one line
        warnings.simplefilter("always", ExtrapolationWarning)
        result = surrogate.integrate(region, extrapolation=extrapolation, **settings)
    messages = []
    for caught_warning in caught:
        if issubclass(caught_warning.category, ExtrapolationWarning):
            messages.append(str(caught_warning.message).removesuffix("; see Surrogate.in_domain"))
        else:
            warnings.warn_explicit(caught_warning.message, caught_warning.category, caught_warning.filename, caught_warning.lineno)

    def per_output(values: Any) -> dict[str, float] | None:
        if values is None:
            return None
        return dict(zip(surrogate.output_names, np.atleast_1d(np.asarray(values, dtype=np.float64)).tolist()))

    return {
        "region": repr(region),
        "volume": getattr(region, "volume", None),
        "value": per_output(result.value),
        "stderr": per_output(result.stderr),
        "ensemble_std": per_output(result.ensemble_std),
        "points": result.points,
        "replicates": result.replicates,
        "seed": settings["seed"],
        "sampler": settings["sampler"],
        "extrapolation": extrapolation,
        "extrapolation_message": messages[0] if messages else None,
    }


def format_integral(summary: dict[str, Any]) -> str:
    """One line: the region, then value ± stderr (and the ensemble std) per output."""
    parts = []
    for name, value in summary["value"].items():
        part = f"{name} = {value:.10g} ± {summary['stderr'][name]:.2g}"
        if summary["ensemble_std"] is not None:
            part += f" (ensemble std {summary['ensemble_std'][name]:.2g})"
        parts.append(part)
    return (f"integral over {summary['region']}: {', '.join(parts)} "
            f"[stderr over {summary['replicates']} replicates, {summary['points']} points, {summary['sampler']}]")
