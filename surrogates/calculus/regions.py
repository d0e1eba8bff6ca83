"""Regions of R^d to integrate over, each sampled uniformly from the unit cube — torch only.

Every region is a map from the unit cube [0, 1)^k (k = :attr:`Region.cube_dim`) to points x
in R^d with a weight w(u) such that, for any integrable f,

    ∫_R f(x) dx = ∫_[0,1)^k f(x(u)) w(u) du,

so a (quasi-)Monte Carlo average of f(x(u)) w(u) over cube points estimates the integral
(:func:`surrogates.calculus.integrate`). For :class:`Box`, :class:`Ball` and
:class:`Simplex` the map is volume-preserving up to the constant w = volume (the points are
uniform in the region); an :class:`Indicator` multiplies its box's weight by the mask, and a
:class:`Mapped` region by |det J| of its transform (change of variables).

The maps are smooth bijections from the open cube wherever possible, because a randomised
quasi-Monte Carlo estimate converges faster the smoother the composed integrand
f(x(u)) w(u) is: a ball of d = 2 or 3 uses polar / spherical coordinates with the radial
CDF inverted (r = R u^(1/d)) and an equal-area direction; a simplex uses stick-breaking
through the Beta marginals of the uniform distribution on it (d cube coordinates; sorting
uniforms or normalising exponentials would fold the cube or cost an extra coordinate).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from surrogates.calculus.vector import jacobian_determinant
from surrogates.domain import check_box
from surrogates.errors import InputError

__all__ = ["Region", "Box", "Ball", "Simplex", "Indicator", "Mapped"]

#: Hadamard ratio |det E| / Π‖e_i‖ (edges scaled per axis by the vertices' extent) below
#: which a simplex counts as flat: its volume is rounding error of its vertices.
_FLAT_SIMPLEX = 1e-12


def _vector(value: Any, name: str, region: str) -> np.ndarray:
    """A finite 1-D float64 array of at least one entry, or an InputError naming ``name``."""
    try:
        array = np.asarray(value.detach().cpu() if isinstance(value, Tensor) else value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{region} {name} must be a list of numbers, got {value!r}") from None
    if array.ndim != 1 or array.size == 0:
        raise InputError(f"{region} {name} must be one-dimensional (d,), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{region} {name} must be finite, got {array.tolist()}")
    return array


class Region:
    """A bounded region of R^d, sampled through the unit cube (see the module docstring).

    Attributes:
        dim: d, the dimension of the points it holds.
        cube_dim: k, the unit-cube coordinates one sample point takes.
    """

    dim: int
    cube_dim: int

    def from_cube(self, U: Tensor) -> tuple[Tensor, Tensor]:
        """Points X (n, d) and weights w (n,) for cube points U (n, k), float64, with
        ∫_R f dx = ∫ f(X(u)) w(u) du."""
        raise NotImplementedError


class Box(Region):
    """The axis-aligned box {x : lower ≤ x ≤ upper}; volume Π (upper − lower).

    Args:
        lower: (d,) lower corner.
        upper: (d,) upper corner.

    Raises:
        InputError: the corners are not finite vectors of one length, or upper ≤ lower on an
            axis (upper = lower: zero volume); see :func:`surrogates.domain.check_box`.
    """

    def __init__(self, lower: Any, upper: Any):
        # zero width on an axis is zero volume, an integral of zero: refused like a reversed box
        self.lower, self.upper = check_box(lower, upper, "Box region")
        self.dim = self.cube_dim = self.lower.size
        self.volume = float(np.prod(self.upper - self.lower))

    def __repr__(self) -> str:
        return f"Box(lower={self.lower.tolist()}, upper={self.upper.tolist()})"

    def from_cube(self, U: Tensor) -> tuple[Tensor, Tensor]:
        lower, upper = torch.as_tensor(self.lower).to(U), torch.as_tensor(self.upper).to(U)
        return lower + U * (upper - lower), U.new_full((U.shape[0],), self.volume)


def _clamped(U: Tensor) -> Tensor:
    """Cube coordinates kept off 0 and 1, where an inverse CDF would be infinite."""
    eps = torch.finfo(U.dtype).eps
    return U.clamp(eps, 1 - eps)


class Ball(Region):
    """The closed ball {x : ‖x − center‖ ≤ radius}; volume π^(d/2) R^d / Γ(d/2 + 1).

    Uniform points: radius R u₀^(1/d) (the inverted radial CDF) times a uniform direction —
    the angle 2π u₁ for d = 2; z = 1 − 2u₁ and azimuth 2π u₂ for d = 3 (Archimedes'
    equal-area map); for d ≥ 4 normalised standard normals Φ⁻¹(u₁…u_d) (d + 1 coordinates).

    Args:
        center: (d,) centre.
        radius: Positive radius.

    Raises:
        InputError: the centre is not a finite vector, or the radius is not positive and finite
            (radius 0 is a ball of zero volume).
    """

    def __init__(self, center: Any, radius: float):
        self.center = _vector(center, "center", "Ball")
        try:
            self.radius = float(radius)
        except (TypeError, ValueError):
            raise InputError(f"Ball radius must be a number, got {radius!r}") from None
        if not math.isfinite(self.radius) or self.radius < 0:
            raise InputError(f"Ball radius must be positive and finite, got {radius!r}")
        if self.radius == 0:
            raise InputError("Ball has zero volume: radius 0; an integral over it is zero — give it a positive radius")
        self.dim = d = self.center.size
        self.cube_dim = d if d <= 3 else d + 1
        self.volume = math.pi ** (d / 2) * self.radius**d / math.gamma(d / 2 + 1)

    def __repr__(self) -> str:
        return f"Ball(center={self.center.tolist()}, radius={self.radius})"

    def _directions(self, U: Tensor) -> Tensor:
        """Uniform unit vectors (n, d) from the cube coordinates after the radial one."""
        d = self.dim
        if d == 2:
            angle = 2 * math.pi * U[:, 0]
            return torch.stack((angle.cos(), angle.sin()), dim=1)
        if d == 3:
            z, azimuth = 1 - 2 * U[:, 0], 2 * math.pi * U[:, 1]
            ring = (1 - z * z).clamp(min=0).sqrt()
            return torch.stack((ring * azimuth.cos(), ring * azimuth.sin(), z), dim=1)
        normals = math.sqrt(2) * torch.erfinv(2 * _clamped(U) - 1)
        return normals / torch.linalg.vector_norm(normals, dim=1, keepdim=True)

    def from_cube(self, U: Tensor) -> tuple[Tensor, Tensor]:
        if self.dim == 1:  # the interval [c − R, c + R]: one coordinate, no direction needed
            points = torch.as_tensor(self.center).to(U) + self.radius * (2 * U - 1)
            return points, U.new_full((U.shape[0],), self.volume)
        radii = self.radius * U[:, 0] ** (1 / self.dim)
        points = torch.as_tensor(self.center).to(U) + radii[:, None] * self._directions(U[:, 1:])
        return points, U.new_full((U.shape[0],), self.volume)


class Simplex(Region):
    """The simplex spanned by d + 1 vertices in R^d; volume |det(v₁ − v₀, …, v_d − v₀)| / d!.

    Uniform points by stick-breaking: the barycentric coordinates of a uniform point are
    Dirichlet(1, …, 1), whose j-th coordinate given the earlier ones is the remaining
    length times a Beta(1, d − j) variable, sampled by its inverse CDF 1 − u^(1/(d − j)).

    Args:
        vertices: (d + 1, d) array, one vertex per row.

    Raises:
        InputError: the array is not (d + 1, d) and finite, or the vertices are affinely
            dependent (a flat simplex of zero volume).
    """

    def __init__(self, vertices: Any):
        try:
            V = np.asarray(vertices.detach().cpu() if isinstance(vertices, Tensor) else vertices, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"Simplex vertices must be a (d + 1, d) array of numbers, got {vertices!r}") from None
        if V.ndim != 2 or V.shape[1] < 1 or V.shape[0] != V.shape[1] + 1:
            raise InputError(f"Simplex vertices must have shape (d + 1, d), one vertex per row, got {V.shape}")
        if not np.all(np.isfinite(V)):
            raise InputError(f"Simplex vertices must be finite, got {V.tolist()}")
        self.vertices = V
        self.dim = self.cube_dim = d = V.shape[1]
        edges = V[1:] - V[0]
        self.volume = float(abs(np.linalg.det(edges)) / math.factorial(d))
        # Scaled per axis, the Hadamard ratio |det| / Π‖edge‖ ∈ [0, 1] does not change with units.
        extent = V.max(axis=0) - V.min(axis=0)
        scaled = edges / np.where(extent > 0, extent, 1.0)
        norms = np.linalg.norm(scaled, axis=1)
        ratio = abs(np.linalg.det(scaled)) / np.prod(norms) if np.all(norms > 0) else 0.0
        if ratio < _FLAT_SIMPLEX:
            raise InputError(
                f"Simplex has zero volume: its {d + 1} vertices {V.tolist()} are affinely dependent "
                f"(they lie in a hyperplane of R^{d}); an integral over it is zero"
            )

    def __repr__(self) -> str:
        return f"Simplex(vertices={self.vertices.tolist()})"

    def from_cube(self, U: Tensor) -> tuple[Tensor, Tensor]:
        d = self.dim
        remaining = U.new_ones(U.shape[0])
        barycentric = []
        for j in range(d):
            piece = remaining * (1 - U[:, j] ** (1 / (d - j)))
            barycentric.append(piece)
            remaining = remaining - piece
        barycentric.append(remaining.clamp(min=0))
        points = torch.stack(barycentric, dim=1) @ torch.as_tensor(self.vertices).to(U)
        return points, U.new_full((U.shape[0],), self.volume)


class Indicator(Region):
    """The points of ``box`` where ``inside`` is true: ∫ f over it = ∫_box f · 1_inside.

    The volume is not known in closed form; an integral of the constant 1 estimates it (with
    its standard error). The integrand jumps at the region's edge, so its randomised QMC
    error shrinks more slowly than for a smooth integrand over a :class:`Ball` or a
    :class:`Mapped` box — prefer those where the region has such a form.

    Args:
        inside: Callable taking points (n, d) as a float64 torch tensor and returning a
            boolean mask (n,) (torch or numpy); f is only evaluated where it is true.
        box: A :class:`Box` (or any region) that contains the region.

    Raises:
        InputError: ``inside`` is not callable or ``box`` is not a region (at once), or
            ``inside`` returns anything but a boolean mask of one entry per point (when sampled).
    """

    def __init__(self, inside: Callable[[Tensor], Any], box: Region):
        if not callable(inside):
            raise InputError(f"Indicator inside must be a callable returning a boolean mask, got {type(inside).__name__}")
        if not isinstance(box, Region):
            raise InputError(f"Indicator box must be a Box (or another region), got {type(box).__name__}")
        self.inside, self.box = inside, box
        self.dim, self.cube_dim = box.dim, box.cube_dim

    def __repr__(self) -> str:
        return f"Indicator({getattr(self.inside, '__name__', 'inside')}, {self.box!r})"

    def from_cube(self, U: Tensor) -> tuple[Tensor, Tensor]:
        points, weights = self.box.from_cube(U)
        mask = self.inside(points)
        if not isinstance(mask, Tensor):
            mask = torch.as_tensor(np.asarray(mask))
        if mask.dtype != torch.bool or tuple(mask.shape) != (points.shape[0],):
            raise InputError(
                f"Indicator inside must return a boolean mask of shape ({points.shape[0]},) for points of shape "
                f"{tuple(points.shape)}, got {mask.dtype} of shape {tuple(mask.shape)}"
            )
        return points, torch.where(mask.to(weights.device), weights, torch.zeros_like(weights))


class Mapped(Region):
    """The image T(B) of a box B under a transform T, integrated by change of variables:

        ∫_T(B) f(x) dx = ∫_B f(T(u)) |det J_T(u)| du,

    with |det J_T| computed exactly by autograd
    (:func:`~surrogates.calculus.jacobian_determinant`). T must be one-to-one on B (up to a
    set of zero volume, such as the axis of polar coordinates) for the left-hand side to be
    the integral over the image; where T folds B onto itself, the image is counted once per
    layer.

    Args:
        box: A :class:`Box` (or any region) in the transform's coordinates (u, v, …).
        transform: Torch callable mapping (n, k) box coordinates to (n, k) points of the
            integrand's inputs, differentiable, row by row; e.g. polar coordinates
            ``lambda U: torch.stack((U[:, 0] * U[:, 1].cos(), U[:, 0] * U[:, 1].sin()), 1)``
            on ``Box([0, 0], [R, 2π])``.

    Raises:
        InputError: ``transform`` is not callable, ``box`` is not a region, or the transform
            does not map (n, k) to (n, k) (checked at once, at the box's centre).
    """

    def __init__(self, box: Region, transform: Callable[[Tensor], Tensor]):
        if not isinstance(box, Region):
            raise InputError(f"Mapped box must be a Box (or another region), got {type(box).__name__}")
        if not callable(transform):
            raise InputError(f"Mapped transform must be a torch callable, got {type(transform).__name__}")
        self.box, self.transform = box, transform
        self.dim, self.cube_dim = box.dim, box.cube_dim
        probe, _ = box.from_cube(torch.full((1, box.cube_dim), 0.5, dtype=torch.float64))
        with torch.no_grad():
            image = transform(probe)
        if not isinstance(image, Tensor) or tuple(image.shape) != (1, box.dim):
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise InputError(
                f"Mapped transform must map box coordinates (n, {box.dim}) to points (n, {box.dim}) "
                f"(a square map, so that |det J| is defined); for input (1, {box.dim}) it returned {shape}"
            )

    def __repr__(self) -> str:
        return f"Mapped({self.box!r}, {getattr(self.transform, '__name__', 'transform')})"

    def from_cube(self, U: Tensor) -> tuple[Tensor, Tensor]:
        coordinates, weights = self.box.from_cube(U)
        with torch.no_grad():
            points = self.transform(coordinates).to(U)
        volume_factor = jacobian_determinant(self.transform, coordinates).to(U).abs()
        return points, weights * volume_factor
