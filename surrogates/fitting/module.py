"""The LightningModule that fits an :class:`~surrogates.model.MLP` to samples.

Loss, on the standardised scale (so every output and every input counts alike):

    L = mean ‖ẑ(x) − (y − ȳ)/s_y‖²  +  λ · mean ‖(∇f̂(x) − ∇y) ⊙ s_x / s_y‖²,

the second (Sobolev, gradient-matching) term only when the batch carries gradient samples
and ``gradient_weight`` λ > 0.

Two optimisation phases, both inside one ``Trainer.fit``: Adam (with a learning-rate schedule)
for the first ``trainer.max_epochs − polish_epochs`` epochs, then full-batch L-BFGS for at most
``polish_epochs`` epochs of ``polish_iterations`` iterations. Adam only has to bring the
network into the basin the polish converges in (100 epochs do as well as 500: quartic, exact,
gradient error 1.2e-6 either way); L-BFGS does not stall where Adam's learning rate sets a floor.

When the polish stops (:mod:`surrogates.fitting.selection`): once its last ``polish_iterations``
iterations improved the objective by less than ``polish_tolerance`` nats per training row
(converged; tested four times per epoch); after ``polish_patience``
significantly worse validation epochs (fitting the noise); at ``trainer.max_epochs``; or when
``trainer.max_time`` runs out. A time budget bounds the whole fit: the Adam phase hands over
to the polish once half of it is used, and each polish epoch runs only as many iterations as
the remaining time allows (estimated from the epochs before).

The polish objective (``polish_objective``):

* ``"evidence"`` (default): the output layer is integrated out as a Bayesian linear model on the
  last hidden layer's features and L-BFGS maximises the marginal likelihood over the hidden
  weights and the prior and noise precisions α, β (:mod:`surrogates.fitting.evidence`), with the hidden
  weights penalised by ``prior_weight · α/2 · Σ‖W_l‖²`` (biases free). The output layer is
  always the posterior mean. It estimates the noise level, so 1 % noise is not fitted into
  wiggly derivatives, and on exact data it drives the fit orders of magnitude further than the
  least-squares polish (quartic, 2000 samples: gradient error 0.0001 % against 0.4 %).
* ``"mse"``: the same loss L as Adam, over all weights.

Polish selection (``polish_patience`` > 0): after every L-BFGS epoch the validation rows'
errors are measured; the lowest-error state is kept, and ``polish_patience`` epochs in a row
that are significantly worse than it in a paired test stop the polish (:mod:`surrogates.fitting.selection`).
On noisy data the evidence stops charging for complexity once the output layer is integrated
out, so the hidden weights go on fitting the noise (mixed10, 1 % noise: Hessian error 1.52 %
after 4 polish epochs, 2.20 % after 30); the validation error turns up at that point. Where it
does not (exact data, the noisy 2-D protocol cases) every polish epoch runs.

Only primitives are saved as hyperparameters, so a Lightning checkpoint loads without Hydra.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import lightning as L
import torch
import torchmetrics
from lightning.pytorch.callbacks import Timer
from torch import Tensor

from surrogates.errors import InputError
from surrogates.fitting.evidence import bounded_log_precision, last_layer_evidence
from surrogates.fitting.selection import PolishSelection
from surrogates.model import MLP

SCHEDULES = ("cosine", "constant")
POLISH_OBJECTIVES = ("evidence", "mse")

#: Share of a time budget (``trainer.max_time``) after which the Adam phase hands over to the polish.
ADAM_BUDGET_SHARE = 0.5

#: Convergence tests per polish epoch: its iterations run in this many L-BFGS calls. Each call
#: costs one extra evaluation (L-BFGS re-evaluates its starting point) and each test a forward
#: pass, about 5 % of an epoch at 4; in exchange the polish stops within a quarter epoch of
#: converging instead of at the end of the epoch that proves it (:mod:`surrogates.fitting.selection`).
CHECKS_PER_EPOCH = 4


def _chunks(iterations: int, parts: int) -> list[int]:
    """``iterations`` split into at most ``parts`` near-equal positive chunks."""
    parts = max(1, min(parts, iterations))
    return [iterations // parts + (1 if k < iterations % parts else 0) for k in range(parts)]


class SurrogateModule(L.LightningModule):
    """Fits an MLP surrogate.

    Args:
        in_dim: Input dimension d.
        out_dim: Output dimension m.
        width: Hidden units per layer.
        depth: Hidden layers.
        activation: Hidden activation name.
        dtype: ``"float32"`` or ``"float64"``.
        lr: Adam learning rate.
        weight_decay: Decoupled weight decay (AdamW); 0 disables it.
        schedule: ``"cosine"`` (anneal to ``lr · final_lr_fraction`` over the Adam phase) or
            ``"constant"``.
        final_lr_fraction: Learning rate at the end of the cosine schedule, relative to ``lr``.
        polish_epochs: Final epochs that use L-BFGS instead of Adam (0: no polish).
        polish_iterations: L-BFGS iterations per polish epoch.
        gradient_weight: λ of the gradient-matching term.
        polish_objective: ``"evidence"`` or ``"mse"`` (see the module docstring).
        prior_weight: Weight of the hidden weights' Gaussian penalty in the evidence polish,
            relative to the output layer's learned prior precision α (0: no penalty).
        polish_patience: Significantly worse polish epochs in a row (validation error, paired
            test against the lowest so far; :mod:`surrogates.fitting.selection`) before the polish stops;
            the lowest-error state is kept (0: run every polish epoch, keep the last).
            Needs the datamodule's validation rows (``data.val_fraction`` > 0).
        polish_tolerance: The polish has converged, and stops, once its last ``polish_iterations``
            iterations improved its objective by less than this many nats per training row (evidence; for ``"mse"``,
            ½ log of the mean squared error, the Gaussian log-likelihood up to a constant).
            Independent of the data's units. 0: never stop on this ground.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        width: int = 96,
        depth: int = 2,
        activation: str = "silu",
        dtype: str = "float64",
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        schedule: str = "cosine",
        final_lr_fraction: float = 0.01,
        polish_epochs: int = 30,
        polish_iterations: int = 100,
        gradient_weight: float = 1.0,
        polish_objective: str = "evidence",
        prior_weight: float = 1000.0,
        polish_patience: int = 3,
        polish_tolerance: float = 0.2,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise InputError(f"unknown schedule {schedule!r}; choose one of {list(SCHEDULES)}")
        if polish_objective not in POLISH_OBJECTIVES:
            raise InputError(f"unknown polish_objective {polish_objective!r}; choose one of {list(POLISH_OBJECTIVES)}")
        for name, value in (("lr", lr), ("final_lr_fraction", final_lr_fraction)):
            if not value > 0:
                raise InputError(f"{name} must be positive, got {value}")
        for name, value in (
            ("weight_decay", weight_decay),
            ("polish_epochs", polish_epochs),
            ("gradient_weight", gradient_weight),
            ("prior_weight", prior_weight),
            ("polish_patience", polish_patience),
            ("polish_tolerance", polish_tolerance),
        ):
            if value < 0:
                raise InputError(f"{name} must be non-negative, got {value}")
        if polish_iterations < 1:
            raise InputError(f"polish_iterations must be positive, got {polish_iterations}")
        self.save_hyperparameters()
        self.net = MLP(in_dim, out_dim, width=width, depth=depth, activation=activation, dtype=dtype)
        self.automatic_optimization = False
        # log α, log β of the evidence polish: fitted by L-BFGS, saved in Lightning checkpoints
        # so a resumed polish continues from them
        self.log_prior_precision = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.log_noise_precision = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        # torchmetrics reduces across batches and DDP processes correctly (R² needs global sums).
        self.val_rmse = torchmetrics.MeanSquaredError(squared=False)
        self.val_r2 = torchmetrics.R2Score(multioutput="uniform_average")
        self.polish_selection = PolishSelection()
        # where the time went (the fit summary reports it); not hyperparameters
        self.phase_seconds = {"adam": 0.0, "polish": 0.0}
        self.polish_evaluations = 0
        self.polish_stop = "max_epochs"
        # set when a time budget moves the polish earlier than max_epochs − polish_epochs
        self.budget_polish_start: int | None = None

    # ------------------------------------------------------------------ loss

    def _standardise(self, y: Tensor) -> Tensor:
        scaling = self.net.output_scaling
        return (y - scaling.shift) / scaling.scale

    def _losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x = batch["x"].to(self.net.dtype)
        target = self._standardise(batch["y"].to(self.net.dtype))
        needs_gradient = "dydx" in batch and self.hparams.gradient_weight > 0
        if needs_gradient:
            x = x.detach().requires_grad_(True)
        prediction = self.net.forward_normalised(x)
        losses = {"value": torch.mean((prediction - target) ** 2)}
        if needs_gradient:
            # Rows of ∂ẑ/∂x in data units: ẑ is standardised, so ∂ẑ/∂x = ∂f̂/∂x / s_y.
            rows = [
                torch.autograd.grad(prediction[:, j].sum(), x, create_graph=True)[0]
                for j in range(prediction.shape[1])
            ]
            jacobian = torch.stack(rows, dim=1)
            target_jacobian = batch["dydx"].to(self.net.dtype) / self.net.output_scaling.scale[:, None]
            error = (jacobian - target_jacobian) * self.net.input_scaling.scale
            losses["gradient"] = torch.mean(error**2)
            losses["total"] = losses["value"] + self.hparams.gradient_weight * losses["gradient"]
        else:
            losses["total"] = losses["value"]
        return losses

    def _design(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Rows of the evidence's linear model in the output layer: design Φ and targets T.

        One row per value sample (features and a bias 1); with gradient samples and λ > 0 also
        √λ-weighted rows per (sample, input) pair: ∂φ/∂x̃ (no bias) against the standardised
        gradient, x̃ being the standardised input — the gradient-matching term of L, which is
        linear in the output layer too.
        """
        x = batch["x"].to(self.net.dtype)
        features = self.net.features(x)
        design = torch.cat([features, torch.ones_like(features[:, :1])], dim=1)
        targets = self._standardise(batch["y"].to(self.net.dtype))
        if "dydx" not in batch or self.hparams.gradient_weight == 0:
            return design, targets
        scale_x, scale_y = self.net.input_scaling.scale, self.net.output_scaling.scale
        per_point = torch.func.jacfwd(lambda point: self.net.features(point[None])[0])
        feature_jacobian = torch.func.vmap(per_point)(x) * scale_x  # (N, width, d)
        n, width, d = feature_jacobian.shape
        gradient_rows = feature_jacobian.permute(0, 2, 1).reshape(n * d, width)
        gradient_rows = torch.cat([gradient_rows, torch.zeros_like(gradient_rows[:, :1])], dim=1)
        gradient_targets = batch["dydx"].to(self.net.dtype) * scale_x / scale_y[:, None]  # (N, m, d)
        gradient_targets = gradient_targets.permute(0, 2, 1).reshape(n * d, -1)
        weight = math.sqrt(self.hparams.gradient_weight)
        return torch.cat([design, weight * gradient_rows]), torch.cat([targets, weight * gradient_targets])

    def _evidence_loss(self) -> Callable[[dict[str, Tensor]], Tensor]:
        """The evidence polish objective; sets the output layer to its posterior mean."""

        def sum_over_processes(tensor: Tensor) -> Tensor:
            if self.trainer.world_size == 1:
                return tensor
            return torch.distributed.nn.functional.all_reduce(tensor)

        def loss(batch: dict[str, Tensor]) -> Tensor:
            design, targets = self._design(batch)
            objective, mean = last_layer_evidence(
                design, targets, self.log_prior_precision, self.log_noise_precision, sum_over_processes
            )
            with torch.no_grad():
                self.net.head.weight.copy_(mean[:-1].T)
                self.net.head.bias.copy_(mean[-1])
            if self.hparams.prior_weight > 0:
                # identical in every process: DDP's gradient average keeps it once. The learned α,
                # not the evidence's Cholesky floor: the floor is numerics for A, not a prior.
                squares = sum(torch.sum(layer.weight.to(torch.float64) ** 2) for layer in self.net.hidden)
                rows = objective.new_tensor(float(design.shape[0]))
                alpha = bounded_log_precision(self.log_prior_precision).exp()
                objective = objective + 0.5 * self.hparams.prior_weight * alpha * squares / sum_over_processes(rows)
            return objective

        return loss

    @torch.no_grad()
    def _start_evidence_polish(self, batch: dict[str, Tensor]) -> None:
        """α = 1 and β = 1 / (Adam's mean squared standardised error): the noise level it reached."""
        prediction = self.net.forward_normalised(batch["x"].to(self.net.dtype))
        target = self._standardise(batch["y"].to(self.net.dtype))
        mse = self._global_mean(torch.mean((prediction - target) ** 2) * self._share(batch["x"].shape[0]))
        self.log_prior_precision.zero_()
        self.log_noise_precision.fill_(-math.log(max(float(mse), 1e-12)))

    @property
    def standardised_noise_std(self) -> float:
        """β^(−1/2): the evidence polish's noise std on the standardised scale (a fraction of s_y)."""
        return math.exp(-0.5 * self.log_noise_precision.item())

    def estimated_noise_std(self) -> list[float] | None:
        """Noise std per output in data units, β^(−1/2) · s_y, after an evidence polish (else None)."""
        polished = self.hparams.polish_epochs > 0 and self.current_epoch > self.adam_epochs
        if self.hparams.polish_objective != "evidence" or not polished:
            return None
        return [self.standardised_noise_std * float(s) for s in self.net.output_scaling.scale]

    # ------------------------------------------------------------------ optimisation

    def polish_start(self, max_epochs: int) -> int:
        """The first L-BFGS epoch of a fit of ``max_epochs`` epochs (= the number of Adam epochs)."""
        if self.budget_polish_start is not None:
            return self.budget_polish_start
        return max(int(max_epochs) - self.hparams.polish_epochs, 0)

    @property
    def adam_epochs(self) -> int:
        return self.polish_start(self.trainer.max_epochs)

    def _time_budget(self) -> tuple[float, float] | None:
        """(elapsed, total) seconds of ``trainer.max_time``, or None without a budget."""
        for callback in self.trainer.callbacks:
            if isinstance(callback, Timer):
                remaining = callback.time_remaining()
                if remaining is not None:
                    elapsed = callback.time_elapsed()
                    return elapsed, elapsed + remaining
        return None

    def on_train_epoch_end(self) -> None:
        """Under a time budget, end the Adam phase once half of the budget is used."""
        budget = self._time_budget()
        if budget is None or self.hparams.polish_epochs == 0 or self.current_epoch + 1 >= self.adam_epochs:
            return
        elapsed, total = budget
        # every process must switch at the same epoch, or their collectives pair up wrongly
        if self.trainer.strategy.broadcast(elapsed >= ADAM_BUDGET_SHARE * total):
            self.budget_polish_start = self.current_epoch + 1
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is not None and datamodule.full_batch_from_epoch is not None:
                datamodule.full_batch_from_epoch = self.budget_polish_start

    def _polish_iterations(self) -> int:
        """L-BFGS iterations for this polish epoch: ``polish_iterations``, fewer if the time
        budget would run out first (at the seconds per evaluation measured so far)."""
        iterations = self.hparams.polish_iterations
        budget = self._time_budget()
        if budget is not None:
            elapsed, total = budget
            # before the first polish epoch, one evaluation costs about one full-batch Adam step
            per_evaluation = (
                self.phase_seconds["polish"] / self.polish_evaluations if self.polish_evaluations
                else self.phase_seconds["adam"] / max(self.adam_epochs, 1)
            )
            affordable = int((total - elapsed) / max(per_evaluation, 1e-9))
            iterations = max(1, min(iterations, affordable))
        return int(self.trainer.strategy.broadcast(iterations))

    def configure_optimizers(self):
        hp = self.hparams
        adam = torch.optim.AdamW(self.net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.polish_objective == "evidence":
            polished = [p for layer in self.net.hidden for p in layer.parameters()]
            polished += [self.log_prior_precision, self.log_noise_precision]
        else:
            polished = list(self.net.parameters())
        lbfgs = torch.optim.LBFGS(
            polished,
            lr=1.0,
            max_iter=hp.polish_iterations,
            history_size=50,
            tolerance_grad=1e-12,
            tolerance_change=1e-15,
            line_search_fn="strong_wolfe",
        )
        return [adam, lbfgs]

    def _adam_lr(self, epoch: int) -> float:
        hp = self.hparams
        if hp.schedule == "constant" or self.adam_epochs <= 1:
            return hp.lr
        progress = min(epoch / (self.adam_epochs - 1), 1.0)
        floor = hp.lr * hp.final_lr_fraction
        return floor + 0.5 * (hp.lr - floor) * (1.0 + math.cos(math.pi * progress))

    def _share(self, size: int) -> float:
        """Weight of this process's batch in the mean over all processes' batches.

        DDP averages gradients over processes. Scaling each process's mean loss by
        ``size · world / total`` makes that average the gradient of the mean over *all* rows,
        exactly as one process would compute it on the union of the batches — also when the
        shards differ in size. 1 in a single process.
        """
        world = self.trainer.world_size
        if world == 1:
            return 1.0
        total = self.trainer.strategy.reduce(torch.tensor(float(size), dtype=torch.float64), reduce_op="sum")
        return size * world / float(total)

    def _global_mean(self, loss: Tensor) -> Tensor:
        """The loss averaged over processes (each already scaled by :meth:`_share`)."""
        if self.trainer.world_size == 1:
            return loss
        return self.trainer.strategy.reduce(loss.detach().clone(), reduce_op="mean")

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        started = time.perf_counter()
        size = batch["x"].shape[0]
        share = self._share(size)
        polishing = self.current_epoch >= self.adam_epochs
        if polishing:
            objective = self._polish_epoch(batch, share)
            self.phase_seconds["polish"] += time.perf_counter() - started
        else:
            adam = self.optimizers()[0]
            for group in adam.param_groups:
                group["lr"] = self._adam_lr(self.current_epoch)
            loss = self._losses(batch)["total"]
            adam.zero_grad()
            self.manual_backward(loss * share)
            adam.step()
            objective = self._global_mean(loss * share).detach()
            self.phase_seconds["adam"] += time.perf_counter() - started
        # already the all-process mean; sync_dist only states it (one reduction per epoch)
        # the evidence is a different quantity from the mean squared error: a key of its own
        evidence_phase = polishing and self.hparams.polish_objective == "evidence"
        name = "train/neg_log_evidence" if evidence_phase else "train/loss"
        self.log(name, objective, prog_bar=True, batch_size=size, on_step=False, on_epoch=True, sync_dist=True)
        self.log("train/phase_lbfgs", float(polishing), batch_size=size, on_step=False, on_epoch=True, sync_dist=True)
        return objective

    def _polish_closure(self, lbfgs, batch: dict[str, Tensor], share: float) -> tuple[Callable[[], Tensor], Callable[[], Tensor]]:
        """(closure, objective): what L-BFGS evaluates, and the objective at the current weights,
        both the all-process value."""
        if self.hparams.polish_objective == "evidence":
            evidence_loss = self._evidence_loss()

            def closure() -> Tensor:
                # The evidence is already a sum over all processes' rows (identical everywhere),
                # so it needs no share weighting.
                lbfgs.zero_grad()
                loss = evidence_loss(batch)
                self.manual_backward(loss)
                return loss.detach()

            def objective() -> Tensor:
                # the line search's last trial need not be the step it accepted: this also sets
                # the output layer to the posterior mean at the accepted hidden weights
                with torch.no_grad():
                    return evidence_loss(batch)

            return closure, objective

        def closure() -> Tensor:
            # Under DDP every manual_backward all-reduces the gradients, and the loss handed
            # to L-BFGS is the all-process mean too: its line search and stopping tests then
            # see the same numbers in every process, so all processes take identical steps.
            lbfgs.zero_grad()
            loss = self._losses(batch)["total"] * share
            self.manual_backward(loss)
            return self._global_mean(loss)

        def objective() -> Tensor:
            return self._global_mean(self._losses(batch)["total"] * share).detach()

        return closure, objective

    def _nats(self, objective: Tensor) -> float:
        """The polish objective in nats per training row (the MSE as ½ log MSE)."""
        if self.hparams.polish_objective == "evidence":
            return float(objective)
        return 0.5 * math.log(max(float(objective), 1e-300))

    def _polish_epoch(self, batch: dict[str, Tensor], share: float) -> Tensor:
        """One polish epoch: L-BFGS in :data:`CHECKS_PER_EPOCH` chunks, the convergence test after
        each (:meth:`PolishSelection.converged`), the validation selection at the end."""
        lbfgs = self.optimizers()[1]
        if self.hparams.polish_objective == "evidence" and self.current_epoch == self.adam_epochs:
            self._start_evidence_polish(batch)
        closure, current_objective = self._polish_closure(lbfgs, batch, share)
        iterations = self._polish_iterations()
        evaluations_before = self._lbfgs_evaluations(lbfgs)
        selection, tolerance = self.polish_selection, self.hparams.polish_tolerance
        converged = False
        for chunk in _chunks(iterations, CHECKS_PER_EPOCH):
            for group in lbfgs.param_groups:
                group["max_iter"] = chunk
            # step() returns the objective before its first iteration: at the polish's start
            # that is the first report, for free
            before = lbfgs.step(closure)
            if not selection.trajectory:
                selection.record(0, self._nats(before))
            objective = current_objective()
            selection.record(selection.iterations + chunk, self._nats(objective))
            converged = tolerance > 0 and selection.converged(tolerance, self.hparams.polish_iterations)
            if converged:
                break
        self.polish_evaluations += self._lbfgs_evaluations(lbfgs) - evaluations_before
        if converged:
            self.polish_stop = "converged"
            self.trainer.should_stop = True
        if self._select_polish_state():
            self.polish_stop = "validation"
            self.trainer.should_stop = True
        return objective

    # ------------------------------------------------------------------ polish selection

    @staticmethod
    def _lbfgs_evaluations(lbfgs) -> int:
        """Objective evaluations L-BFGS has made so far (its own running count)."""
        optimizer = getattr(lbfgs, "optimizer", lbfgs)  # Lightning wraps it
        state = optimizer.state[optimizer.param_groups[0]["params"][0]]
        return int(state.get("func_evals", 0))

    @torch.no_grad()
    def _polish_validation_errors(self) -> Tensor | None:
        """Squared standardised error of every validation row, mean over outputs (None without rows).

        Every process reads all rows itself (the loader is not sharded), so under DDP all
        processes get the same numbers and take the same keep/stop decisions.
        """
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not len(getattr(datamodule, "val_rows", ())):
            return None
        errors = []
        for batch in datamodule.val_dataloader():
            prediction = self.net(batch["x"].to(self.device, self.net.dtype))
            errors.append(torch.mean(self._standardised_error(prediction, batch["y"].to(self.device)) ** 2, dim=1))
        return torch.cat(errors)

    def _select_polish_state(self) -> bool:
        """After one polish step: keep the state if lowest, else maybe count it stale; whether
        ``polish_patience`` stale epochs in a row say stop."""
        if self.hparams.polish_patience == 0:
            return False
        errors = self._polish_validation_errors()
        if errors is None:
            return False
        self.log("polish/val_loss", errors.mean(), on_step=False, on_epoch=True)
        return self.polish_selection.offer(errors, self.current_epoch, self.state_dict()) >= self.hparams.polish_patience

    def on_train_end(self) -> None:
        budget = self._time_budget()
        if budget is not None and budget[0] >= budget[1]:
            self.polish_stop = "time"
        if self.polish_selection.state is not None:
            self.load_state_dict(self.polish_selection.state)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["polish_selection"] = self.polish_selection.as_dict()
        checkpoint["budget_polish_start"] = self.budget_polish_start

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.polish_selection = PolishSelection.from_dict(checkpoint.get("polish_selection"))
        self.budget_polish_start = checkpoint.get("budget_polish_start")

    def on_train_start(self) -> None:
        # a resumed budgeted run polishes from where its budget moved the polish to
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.budget_polish_start is not None and datamodule is not None and datamodule.full_batch_from_epoch is not None:
            datamodule.full_batch_from_epoch = self.budget_polish_start

    # ------------------------------------------------------------------ validation

    def _standardised_error(self, prediction: Tensor, y: Tensor) -> Tensor:
        return (prediction - y.to(prediction.dtype)) / self.net.output_scaling.scale

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        x = batch["x"].to(self.net.dtype)
        y = batch["y"].to(self.net.dtype)
        prediction = self.net(x)
        size = x.shape[0]
        standardised_error = self._standardised_error(prediction, y)
        # sync_dist: under DDP the checkpoint callback monitors the mean over all processes
        self.log("val/loss", torch.mean(standardised_error**2), batch_size=size, prog_bar=True, sync_dist=True)
        self.val_rmse.update(prediction.flatten(), y.flatten())
        self.val_r2.update(prediction.squeeze(-1), y.squeeze(-1))
        self.log("val/rmse", self.val_rmse, batch_size=size, prog_bar=True)
        self.log("val/r2", self.val_r2, batch_size=size)
