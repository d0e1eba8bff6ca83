"""The LightningModule that fits an :class:`~surrogates.model.MLP` to samples.

Loss, on the standardised scale (so every output and every input counts alike):

    L = mean ‖ẑ(x) − (y − ȳ)/s_y‖²  +  λ · mean ‖(∇f̂(x) − ∇y) ⊙ s_x / s_y‖²,

the second (Sobolev, gradient-matching) term only when the batch carries gradient samples
and ``gradient_weight`` λ > 0.

Two optimisation phases, both inside one ``Trainer.fit``: Adam (with a learning-rate schedule)
for the first ``max_epochs − polish_epochs`` epochs, then full-batch L-BFGS for the last
``polish_epochs``. The quasi-Newton polish is the most effective accuracy step for small
smooth data: Adam stalls at a noise floor set by its learning rate, L-BFGS does not.

Only primitives are saved as hyperparameters, so a Lightning checkpoint loads without Hydra.
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torchmetrics
from torch import Tensor

from surrogates.model import MLP

SCHEDULES = ("cosine", "constant")


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
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        width: int = 64,
        depth: int = 3,
        activation: str = "silu",
        dtype: str = "float64",
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        schedule: str = "cosine",
        final_lr_fraction: float = 0.01,
        polish_epochs: int = 30,
        polish_iterations: int = 100,
        gradient_weight: float = 1.0,
    ):
        super().__init__()
        # a config typo (model.width=abc) must name the key, not fail deep inside torch
        for name, value in (("width", width), ("depth", depth), ("polish_epochs", polish_epochs),
                            ("polish_iterations", polish_iterations)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"model.{name} must be an integer, got {value!r}")
        for name, value in (("lr", lr), ("weight_decay", weight_decay), ("final_lr_fraction", final_lr_fraction),
                            ("gradient_weight", gradient_weight)):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"model.{name} must be a number, got {value!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {list(SCHEDULES)}")
        for name, value in (("lr", lr), ("final_lr_fraction", final_lr_fraction)):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        for name, value in (
            ("weight_decay", weight_decay),
            ("polish_epochs", polish_epochs),
            ("gradient_weight", gradient_weight),
        ):
            if value < 0:
                raise ValueError(f"{name} must be non-negative, got {value}")
        if polish_iterations < 1:
            raise ValueError(f"polish_iterations must be positive, got {polish_iterations}")
        self.save_hyperparameters()
        self.net = MLP(in_dim, out_dim, width=width, depth=depth, activation=activation, dtype=dtype)
        self.automatic_optimization = False
        # torchmetrics reduces across batches and DDP processes correctly (R² needs global sums).
        self.val_rmse = torchmetrics.MeanSquaredError(squared=False)
        self.val_r2 = torchmetrics.R2Score(multioutput="uniform_average")

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

    # ------------------------------------------------------------------ optimisation

    @property
    def adam_epochs(self) -> int:
        return max(int(self.trainer.max_epochs) - self.hparams.polish_epochs, 0)

    def configure_optimizers(self):
        hp = self.hparams
        adam = torch.optim.AdamW(self.net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        lbfgs = torch.optim.LBFGS(
            self.net.parameters(),
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
        adam, lbfgs = self.optimizers()
        size = batch["x"].shape[0]
        share = self._share(size)
        if self.current_epoch < self.adam_epochs:
            for group in adam.param_groups:
                group["lr"] = self._adam_lr(self.current_epoch)
            losses = self._losses(batch)
            adam.zero_grad()
            self.manual_backward(losses["total"] * share)
            adam.step()
            losses = {"total": self._global_mean(losses["total"] * share)}
            phase = 0.0
        else:

            def closure() -> Tensor:
                # Under DDP every manual_backward all-reduces the gradients, and the loss handed
                # to L-BFGS is the all-process mean too: its line search and stopping tests then
                # see the same numbers in every process, so all processes take identical steps.
                lbfgs.zero_grad()
                loss = self._losses(batch)["total"] * share
                self.manual_backward(loss)
                return self._global_mean(loss)

            losses = {"total": lbfgs.step(closure)}
            phase = 1.0
        # already the all-process mean; sync_dist only states it (one reduction per epoch)
        self.log("train/loss", losses["total"].detach(), prog_bar=True, batch_size=size, on_step=False, on_epoch=True, sync_dist=True)
        self.log("train/phase_lbfgs", phase, batch_size=size, on_step=False, on_epoch=True, sync_dist=True)
        return losses["total"].detach()

    # ------------------------------------------------------------------ validation

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        x = batch["x"].to(self.net.dtype)
        y = batch["y"].to(self.net.dtype)
        prediction = self.net(x)
        size = x.shape[0]
        standardised_error = (prediction - y) / self.net.output_scaling.scale
        # sync_dist: under DDP the checkpoint callback monitors the mean over all processes
        self.log("val/loss", torch.mean(standardised_error**2), batch_size=size, prog_bar=True, sync_dist=True)
        self.val_rmse.update(prediction.flatten(), y.flatten())
        self.val_r2.update(prediction.squeeze(-1), y.squeeze(-1))
        self.log("val/rmse", self.val_rmse, batch_size=size, prog_bar=True)
        self.log("val/r2", self.val_r2, batch_size=size)
