"""Which L-BFGS polish state to keep and when to stop: convergence of the objective, and
validation errors compared row by row.

**Convergence.** The module runs each polish epoch's L-BFGS iterations in a few chunks and
reports the objective in nats per training row after each, with the iterations run so far
(and once at the polish's start). The polish has converged when the last ``window``
iterations (``polish_iterations``, one epoch's worth) improved it by less than a tolerance:
a window that slides from chunk to chunk, so the stop comes within a chunk of the point where
progress fell below the tolerance, not at the end of the epoch that proves it. Nats per row of
the standardised data do not depend on the units of the inputs or outputs: an improvement of
δ nats per row is a fall of about δ in log(residual RMS) (on noisy data, where the noise level
is reached within about a hundred iterations, it also counts the evidence's charge for
complexity).

Measured with the default model on 2000 samples after 100 Adam epochs, objective and errors
every 25 iterations (exact data): after the first 100-200 iterations the objective creeps at
0.1-0.2 nats per 100 iterations while the derivative errors barely move. Rosenbrock: gradient
/ Hessian errors 2.6e-6 / 7.6e-6 after 100 iterations, 1.27e-6 / 4.4e-6 after 350 (where
the gain per 100 iterations falls below 0.2 nats), 1.05e-6 / 3.75e-6 after 600 (below 0.1),
7.8e-7 / 2.6e-6 after 1000; quartic 1.58e-6 / 5.7e-6 after 400, 1.24e-6 / 4.9e-6 after 600;
sincos 5.1e-6 / 2.3e-5 after 400 and no better after 1000. With 1 % noise the gain falls below
0.02 nats per 100 iterations within 125 iterations on these 2-D cases, and the errors do not
improve after that (rosenbrock 0.135 % / 0.126 % after 125 iterations, 0.142 % / 0.155 % after
400). On noisy held-out functions of 3-6 inputs (``--heldout 2026 --noise 0.01``) the gain is
0.02-0.8 nats at 125 iterations and the default stops after 125-175, with the validation error
and the noise estimate already at the noise level; run on, the derivative errors move by up to
40 % down or 50 % up (3-D sines 0.53 % / 1.15 % after 125, 0.42 % / 0.90 % after 300; 6-D
polynomial 0.67 % / 0.96 % after 300, 0.74 % / 1.09 % after 800), which neither the objective
nor the validation rows can tell.
The default tolerance, 0.2 nats, stops exact rosenbrock after 350 iterations in 6.1 s of
polish where 0.1 runs 600 in 10.3 s for 17 % smaller errors; noisy fits stop after 125
iterations at either. Figures: ``python scripts/bench_polish_trajectory.py``
(``scripts/results/bench_polish_trajectory.txt``).

**Validation.** After every polish epoch the module also hands over the squared standardised validation error of
every row, eᵢ. The reference is the state with the lowest mean error so far, with errors rᵢ.
The current state is *significantly worse* than it when the paired mean difference
d̄ = mean(eᵢ − rᵢ) exceeds ``SIGNIFICANCE`` standard errors, std(eᵢ − rᵢ)/√n. Pairing
cancels the noise in the targets, which both states share, so the test resolves changes far
smaller than the spread of the errors themselves.

* A new lowest mean becomes the reference: the state that is kept.
* A *significantly worse* state is a stale epoch. After ``patience`` stale epochs in a row the
  polish stops and the reference is restored: the hidden weights have started to fit the noise
  (mixed10, 1 % noise: validation error up 2.6 % and Hessian error from 1.5 % to 1.8 % within
  12 epochs of the lowest).
* A state in between, higher but not significantly, resets the stale count. Then the polish
  has not yet been seen to get worse: with 200 validation rows and 1 % noise (sincos) the
  validation error wanders by 1 % between polish epochs while the derivatives still improve,
  and stopping on the first three higher epochs kept the second polish epoch (Hessian error
  0.32 % against 0.25 % at the end).

The reference is the lowest state, not the last one the test cannot tell from it: on mixed10
with 1 % noise keeping the last such state gave a Hessian error of 1.63 % against 1.52 %.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Standard errors of the paired mean difference beyond which a state counts as worse.
SIGNIFICANCE = 2.0


class PolishSelection:
    """The lowest-error polish state so far (kept, and the reference later states are judged
    against) and the count of significantly worse epochs since.

    Attributes:
        reference: Per-row validation errors of the lowest-error state (None before the first offer).
        epoch: Its epoch (-1 before the first offer).
        stale: Significantly worse epochs in a row.
        state: A copy of its ``state_dict`` (None before the first offer).
        trajectory: ``[iterations, objective]`` reports so far: L-BFGS iterations run in all and
            the polish objective then, nats per row.
    """

    def __init__(
        self,
        reference: Tensor | None = None,
        epoch: int = -1,
        stale: int = 0,
        state: dict[str, Tensor] | None = None,
        trajectory: list[list[float]] | None = None,
    ):
        self.reference, self.epoch, self.stale, self.state = reference, epoch, stale, state
        self.trajectory = [] if trajectory is None else [[int(i), float(o)] for i, o in trajectory]

    @property
    def iterations(self) -> int:
        """L-BFGS iterations run so far (0 before the first report)."""
        return self.trajectory[-1][0] if self.trajectory else 0

    def record(self, iterations: int, objective: float) -> None:
        """Records the objective (nats per row) after ``iterations`` polish iterations in all."""
        self.trajectory.append([int(iterations), float(objective)])

    def converged(self, tolerance: float, window: int) -> bool:
        """Whether the last ``window`` iterations improved the objective by less than ``tolerance``.

        The gain is measured from the latest report at least ``window`` iterations back, pro rata
        when that report lies further back (chunks of uneven length under a time budget):
        converged when ``objective(then) − objective(now) < tolerance · span / window``.
        """
        if not self.trajectory:
            return False
        now, objective = self.trajectory[-1]
        earlier = [entry for entry in self.trajectory if entry[0] <= now - window]
        if not earlier:
            return False
        then, previous = earlier[-1]
        return previous - objective < tolerance * (now - then) / window

    def offer(self, errors: Tensor, epoch: int, state: dict[str, Tensor]) -> int:
        """Judges a state by its per-row validation errors (n,); returns the stale count."""
        errors = errors.detach().to(torch.float64).flatten()
        if self.reference is None or errors.mean() < self.reference.mean():
            self.reference, self.epoch, self.stale = errors.clone(), epoch, 0
            self.state = {name: tensor.detach().clone() for name, tensor in state.items()}
        elif self.significantly_worse(errors):
            self.stale += 1
        else:
            self.stale = 0
        return self.stale

    def significantly_worse(self, errors: Tensor) -> bool:
        """Whether mean(errors − reference) exceeds ``SIGNIFICANCE`` paired standard errors."""
        difference = errors - self.reference
        standard_error = difference.std() / math.sqrt(difference.numel()) if difference.numel() > 1 else 0.0
        return bool(difference.mean() > SIGNIFICANCE * standard_error)

    def as_dict(self) -> dict:
        """Plain numbers, lists and tensors: loadable from a checkpoint with ``weights_only=True``."""
        return {
            "reference": self.reference,
            "epoch": self.epoch,
            "stale": self.stale,
            "state": self.state,
            "trajectory": self.trajectory,
        }

    @classmethod
    def from_dict(cls, saved: dict | None) -> "PolishSelection":
        return cls(**saved) if saved else cls()
