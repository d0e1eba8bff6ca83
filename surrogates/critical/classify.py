"""Classification of critical points by their Hessian eigenvalues, in domain-scaled coordinates.

**Classification.** With the eigenvalues λ̃_1 ≤ … ≤ λ̃_d of H̃(x*) = D H(x*) D and the
tolerance

    τ = ``degenerate_rtol`` · S,   S = median over the starts of ‖H̃(x)‖₂ = max_i |λ̃_i(x)|,

a point is *degenerate* if some |λ̃_i| ≤ τ, else a *minimum* (all λ_i > 0), a *maximum*
(all λ_i < 0) or a *saddle* of index #{λ_i < 0}. Measuring τ against the Hessian's
typical size over the whole box (rather than at the point) is what makes the test
meaningful for a learned function: the surrogate of a function with a degenerate
critical point (e.g. x³ − 3xy² + y³ at the origin, where H = 0) has a small but
nonzero Hessian there, and fitting noise can split the point into a few nearby
critical points with small eigenvalues. Relative to S those eigenvalues are zero
within the surrogate's accuracy, so they are reported degenerate, and degenerate
points closer than ``degenerate_merge_tol`` · √d to each other (unit coordinates) are
merged into the one of smallest ‖H̃‖₂ (its ``merged`` count says how many were combined).

The condition number is max|λ| / min|λ| of H in data units (inf when an eigenvalue is
exactly 0). A
point outside the box [lower, upper] (beyond a rounding allowance of 1e-9 · width) is
flagged ``in_domain = False``: for a surrogate it is extrapolation.
"""

from __future__ import annotations

import torch
from torch import Tensor


def scaled_hessian(hessian: Tensor, width: Tensor) -> Tensor:
    """D H D with D = diag(width): the Hessian (…, d, d) in the box's unit coordinates."""
    return hessian * (width[:, None] * width[None, :])


def classify(eigenvalues: Tensor, tolerance: float) -> tuple[str, int]:
    """Kind and index from ascending scaled eigenvalues (see the module docstring)."""
    if bool((eigenvalues.abs() <= tolerance).any()):
        return "degenerate", int((eigenvalues < -tolerance).sum())
    index = int((eigenvalues < 0).sum())
    if index == 0:
        return "minimum", 0
    if index == eigenvalues.numel():
        return "maximum", index
    return "saddle", index


KIND_ORDER = {kind: rank for rank, kind in enumerate(("minimum", "saddle", "maximum", "degenerate"))}


def greedy_groups(X: Tensor, order: Tensor, radius: float) -> list[list[int]]:
    """Partition rows of X: take the next row in ``order`` not yet grouped as a representative,
    group with it every ungrouped row within ``radius``. Returns groups, representative first."""
    distances = torch.cdist(X, X)
    free = torch.ones(X.shape[0], dtype=torch.bool)
    groups = []
    for row in order.tolist():
        if not free[row]:
            continue
        members = torch.nonzero(free & (distances[row] <= radius)).flatten().tolist()
        members.remove(row)
        groups.append([row, *members])
        free[[row, *members]] = False
    return groups


def merge_degenerate(
    X: Tensor, eigenvalues: Tensor, classified: list[tuple[str, int]], radius: float
) -> tuple[list[int], list[int]]:
    """Rows to keep and how many points each stands for, merging degenerate points (rows of X, in
    unit coordinates) within ``radius`` of each other into the one with the smallest ‖H̃‖₂ of the
    scaled ``eigenvalues`` (nearest to the flat centre)."""
    degenerate = [row for row, (kind, _) in enumerate(classified) if kind == "degenerate"]
    keep = [row for row, (kind, _) in enumerate(classified) if kind != "degenerate"]
    merged = [1] * len(keep)
    if degenerate:
        rows = torch.tensor(degenerate)
        spectral = eigenvalues[rows].abs().amax(-1)
        for group in greedy_groups(X[rows], torch.argsort(spectral), radius):
            keep.append(degenerate[group[0]])
            merged.append(len(group))
    return keep, merged
