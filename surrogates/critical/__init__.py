"""Critical points of a learned (or any smooth) scalar function — the critical-points door.

* :mod:`~surrogates.critical.search`: Levenberg–Marquardt on ∇f = 0 from Sobol starts in a
  box, deduplication (:func:`find_critical_points`);
* :mod:`~surrogates.critical.classify`: minimum / maximum / saddle / degenerate from the
  Hessian's eigenvalues in domain-scaled coordinates (units do not change a verdict);
* :mod:`~surrogates.critical.report`: :class:`CriticalPoint`, :class:`CriticalPointReport`
  and their table / JSON / CSV exports;
* :mod:`~surrogates.critical.refine`: zoom-in refinement with local fits of a black box
  (:func:`refine_critical_points`; the only module here that fits, so it loads Lightning);
* :mod:`~surrogates.critical.plots`: figures (matplotlib, loaded on use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from surrogates._lazy import lazy_exports

_EXPORTS = {
    "KINDS": "surrogates.critical.report",
    "CriticalPoint": "surrogates.critical.report",
    "CriticalPointReport": "surrogates.critical.report",
    "find_critical_points": "surrogates.critical.search",
    "LocalRefinement": "surrogates.critical.refine",
    "refine_critical_points": "surrogates.critical.refine",
}

if TYPE_CHECKING:
    from surrogates.critical.refine import LocalRefinement, refine_critical_points
    from surrogates.critical.report import KINDS, CriticalPoint, CriticalPointReport
    from surrogates.critical.search import find_critical_points

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = ["KINDS", "CriticalPoint", "CriticalPointReport", "find_critical_points", "LocalRefinement", "refine_critical_points"]
