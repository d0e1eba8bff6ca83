"""One training run from a composed config: data → Lightning fit → surrogate, summary, files.

:func:`train` is what ``surrogates-train`` and :func:`surrogates.fit` both call; it takes a
plain ``DictConfig`` (no Hydra runtime needed), so tests compose configs and call it directly.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from surrogates.console import lightning_internals_quiet, show_progress_bar
from surrogates.errors import InputError
from surrogates.fitting.datamodule import SurrogateDataModule
from surrogates.fitting.metrics import derivative_errors, protocol_test_points
from surrogates.fitting.module import SurrogateModule
from surrogates.fitting.progress import FitProgress
from surrogates.fitting.samples import column_stats, read_rows
from surrogates.io import OutputError, output_folder, write_json, write_with
from surrogates.surrogate import SURROGATE_FILE, CheckpointError, Surrogate

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"


@dataclass
class TrainResult:
    """What a training run produced; ``writes_files`` is False in the extra processes of a
    multi-process strategy, which must leave the files to global rank 0."""

    surrogate: Surrogate
    summary: dict[str, Any]
    output_dir: Path
    writes_files: bool = True


def _instantiate_all(group: DictConfig | None, **kwargs: Any) -> list[Any]:
    if not group:
        return []
    return [instantiate(node, **kwargs) for node in group.values() if node is not None and "_target_" in node]


def _fit_metrics(
    surrogate: Surrogate, datamodule: SurrogateDataModule, rows: np.ndarray, chunk: int = 8192
) -> dict[str, Any]:
    """RMSE and R² per output over ``rows``, in chunks (a large memory-mapped set is never read whole)."""
    samples = datamodule.samples
    if len(rows) == 0:
        return {}
    squared_error = np.zeros(samples.out_dim)
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        X, y = read_rows(samples.X, part), read_rows(samples.y, part)
        squared_error += np.sum((surrogate.predict(X).reshape(y.shape) - y) ** 2, axis=0)
    mse = squared_error / len(rows)
    variance = column_stats(samples.y, rows).std ** 2
    return {
        "rmse": dict(zip(samples.output_names, np.sqrt(mse).tolist())),
        "r2": dict(zip(samples.output_names, (1.0 - mse / variance).tolist())),
        "points": int(len(rows)),
    }


def _instantiate_checked(node: DictConfig, **kwargs: Any) -> Any:
    """``instantiate``, but a ValueError of the target (a bad config value) is re-raised as is:
    its message names the key, without Hydra's three-line wrapping."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, ValueError):
            raise err.__cause__ from None
        raise


def _launched_as_rank_zero() -> bool:
    """False in the extra processes a multi-process launcher started (DDP rank > 0).

    Before ``Trainer.fit`` sets up the process group, the rank is only known from the
    variables the launchers set (Lightning's own, torchrun, SLURM); the process the user
    started has none of them, or all zero.
    """
    names = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
    return all(int(os.environ.get(name) or 0) == 0 for name in names)


def time_budget_seconds(max_time: Any) -> float | None:
    """``trainer.max_time`` in seconds: a number of seconds, Lightning's ``"DD:HH:MM:SS"`` or a
    dict of ``timedelta`` fields (``{minutes: 5}``); None for no budget."""
    if max_time is None:
        return None
    if isinstance(max_time, (int, float)) and not isinstance(max_time, bool):
        seconds = float(max_time)
    elif isinstance(max_time, str):
        try:
            fields = [float(part) for part in max_time.split(":")]
        except ValueError:
            fields = []
        if len(fields) != 4:
            raise InputError(f"trainer.max_time must be seconds or 'DD:HH:MM:SS', got {max_time!r}")
        seconds = timedelta(days=fields[0], hours=fields[1], minutes=fields[2], seconds=fields[3]).total_seconds()
    else:
        try:
            seconds = timedelta(**OmegaConf.to_container(max_time) if OmegaConf.is_config(max_time) else dict(max_time)).total_seconds()
        except (TypeError, ValueError):
            raise InputError(f"trainer.max_time must be seconds, 'DD:HH:MM:SS' or timedelta fields, got {max_time!r}") from None
    if not seconds > 0:
        raise InputError(f"trainer.max_time must be positive, got {max_time!r}")
    return seconds


def _fit_member(
    cfg: DictConfig, datamodule: SurrogateDataModule, seed: int, time_budget: float | None = None,
    progress: str | None = None,
) -> tuple[Any, dict[str, Any], bool]:
    """One Lightning fit of one network on the datamodule's current split, within
    ``time_budget`` seconds (None: no limit); ``progress``: the label of a
    :class:`~surrogates.fitting.progress.FitProgress` bar, or None for none.

    Returns the fitted network, a report, and whether this process is global rank 0 — under a
    multi-process strategy (``trainer=ddp``) every process runs this, and only rank 0 writes.
    """
    L.seed_everything(seed, workers=True, verbose=False)
    samples = datamodule.samples
    module: SurrogateModule = _instantiate_checked(cfg.model, in_dim=samples.in_dim, out_dim=samples.out_dim)
    x_stats, y_stats = datamodule.input_stats, datamodule.output_stats
    module.net.set_normalisation(
        torch.as_tensor(x_stats.mean), torch.as_tensor(x_stats.std),
        torch.as_tensor(y_stats.mean), torch.as_tensor(y_stats.std),
    )
    polish_epochs = module.hparams.polish_epochs
    if polish_epochs and cfg.trainer.max_epochs is not None and int(cfg.trainer.max_epochs) <= polish_epochs:
        raise InputError(
            f"trainer.max_epochs={cfg.trainer.max_epochs} leaves no Adam epochs before the "
            f"model.polish_epochs={polish_epochs} L-BFGS epochs: max_epochs counts both phases "
            f"(e.g. trainer.max_epochs={100 + polish_epochs} for 100 Adam epochs)"
        )
    polish_start = module.polish_start(cfg.trainer.max_epochs)
    polish = module.hparams.polish_epochs > 0 and datamodule.batch_size is not None
    # mini-batch Adam, then full-batch L-BFGS. Lightning asks for the loader every epoch (the
    # datamodule hands back the same one until the polish starts) rather than every polish_start
    # epochs, because it counts that period from the epoch a resumed run starts at.
    datamodule.full_batch_from_epoch = polish_start if polish else None
    with lightning_internals_quiet():  # Lightning's banners and tips come from building the trainer
        trainer: L.Trainer = instantiate(
            cfg.trainer,
            max_time=None if time_budget is None else timedelta(seconds=time_budget),
            callbacks=_instantiate_all(cfg.get("callbacks")) + ([] if progress is None else [FitProgress(progress)]),
            logger=_instantiate_all(cfg.get("logger")) or False,
            default_root_dir=cfg.paths.output_dir,
            reload_dataloaders_every_n_epochs=1 if polish else 0,
            enable_progress_bar=show_progress_bar(OmegaConf.select(cfg, "trainer.enable_progress_bar")),
        )
    started = time.perf_counter()
    # Checkpoints are untrusted input: resuming never unpickles arbitrary objects.
    with lightning_internals_quiet(), warnings.catch_warnings():
        if cfg.get("ckpt_path"):  # a run resumed in its own folder finds its checkpoints there, as it should
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    report = {
        "seed": seed,
        "epochs": int(trainer.current_epoch),
        "fit_seconds": round(time.perf_counter() - started, 3),
        "processes": int(trainer.world_size),
    }
    if module.polish_selection.epoch >= 0:
        report["polish_kept_epoch"] = module.polish_selection.epoch
    polish_epochs = max(int(trainer.current_epoch) - module.adam_epochs, 0)
    report["time"] = {
        "adam_epochs": min(module.adam_epochs, int(trainer.current_epoch)),
        "adam_seconds": round(module.phase_seconds["adam"], 3),
        "polish_epochs": polish_epochs,
        "polish_iterations": module.polish_selection.iterations,
        "polish_evaluations": module.polish_evaluations,
        "polish_seconds": round(module.phase_seconds["polish"], 3),
        "polish_stop": module.polish_stop if polish_epochs else None,
    }
    if module.polish_selection.trajectory:
        # [L-BFGS iterations so far, objective in nats per row]: how the convergence test saw the polish
        report["polish_trajectory"] = module.polish_selection.trajectory
    noise_std = module.estimated_noise_std()
    if noise_std is not None:
        report["estimated_noise_std"] = dict(zip(datamodule.samples.output_names, noise_std))
    # A single-device fit inside a DDP process (surrogates-query training its default surrogate
    # first) is "global zero" for its own trainer, yet not the process that writes.
    return module.net.cpu(), report, trainer.is_global_zero and _launched_as_rank_zero()


def run_folder_of(ckpt_path: str | Path | None) -> Path | None:
    """The training run's folder a Lightning checkpoint belongs to, or None.

    A run writes its checkpoints to ``<run>/checkpoints/`` (configs/callbacks/default.yaml)
    and its ``config.yaml`` into ``<run>`` before it fits, so a checkpoint file in a
    ``checkpoints`` folder next to a ``config.yaml`` is that run's, finished or interrupted.
    """
    if not ckpt_path or str(ckpt_path) in ("last", "best"):
        return None
    path = Path(ckpt_path).expanduser().resolve()
    if not path.is_file() or path.parent.name != "checkpoints" or not (path.parent.parent / CONFIG_FILE).is_file():
        return None
    return path.parent.parent


def _check_resume_checkpoint(ckpt_path: str) -> None:
    """CheckpointError unless ``ckpt_path`` is a file Lightning can resume from, saying what it is."""
    if ckpt_path in ("last", "best"):
        return
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        inside = [c for c in (path / "checkpoints" / "last.ckpt", path / "last.ckpt") if c.is_file()]
        raise CheckpointError(
            f"checkpoint to resume from (ckpt_path) {ckpt_path} is a folder; give a Lightning checkpoint file"
            + (f", e.g. ckpt_path={inside[0]}" if inside else " (a run keeps them in <run folder>/checkpoints/)")
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint to resume from (ckpt_path) {ckpt_path} does not exist")
    if path.suffix == ".safetensors":
        raise CheckpointError(
            f"checkpoint to resume from (ckpt_path) {ckpt_path} is a surrogate file, which holds the fitted "
            f"network only; resuming needs the run's Lightning checkpoint ({path.parent / 'checkpoints' / 'last.ckpt'})"
        )


def _set_aside_earlier_files(output_dir: Path) -> Path | None:
    """Keep what a run resumed in its own folder would replace: move its ``config.yaml``,
    ``summary.json`` and surrogate file and copy its Lightning checkpoints (which the resumed
    fit goes on writing) into ``output_dir/before_resume<k>/`` (k = 1, 2, … the first free).

    Returns that folder, or None when there was nothing to keep.
    """
    earlier = [output_dir / name for name in (CONFIG_FILE, SUMMARY_FILE, SURROGATE_FILE) if (output_dir / name).is_file()]
    checkpoints = sorted((output_dir / "checkpoints").glob("*.ckpt"))
    if not earlier and not checkpoints:
        return None
    k = 1
    while (output_dir / f"before_resume{k}").exists():
        k += 1
    kept = output_folder(output_dir / f"before_resume{k}")
    if checkpoints:  # copied first: a failed copy leaves the run as it was
        output_folder(kept / "checkpoints")
        for checkpoint in checkpoints:
            shutil.copy2(checkpoint, kept / "checkpoints" / checkpoint.name)
    for path in earlier:
        os.replace(path, kept / path.name)
    return kept


def _refuse_another_runs_folder(output_dir: Path, ckpt_path: str | None) -> None:
    """OutputError if ``output_dir`` already holds a surrogate, unless this run resumes that one.

    A second training into a finished run's folder would overwrite its surrogate, summary and
    checkpoints. Resuming (``ckpt_path`` inside ``output_dir``, or Lightning's ``last``/``best``,
    which it looks up in this folder's checkpoints) continues the same run and may write there.
    The ensemble's ``member<k>`` folders belong to the run and hold no surrogate file of their own.
    """
    existing = output_dir / SURROGATE_FILE
    if not existing.exists():
        return
    if ckpt_path in ("last", "best"):
        return
    if ckpt_path and output_dir.resolve() in Path(ckpt_path).resolve().parents:
        return
    raise OutputError(
        f"output folder {output_dir} already holds another run's surrogate ({SURROGATE_FILE}); train into a new "
        f"folder, or resume that run with ckpt_path={output_dir / 'checkpoints' / 'last.ckpt'}"
    )


def train(cfg: DictConfig, output_dir: str | Path, source: Any | None = None, compact_progress: bool = False) -> TrainResult:
    """Fit a surrogate as ``cfg`` says and write its files into ``output_dir``.

    Args:
        cfg: A composed ``train`` config (groups data, model, trainer, callbacks, logger;
            ``ensemble.size`` K > 1 fits K networks with seeds seed, seed+1, … on different
            train/validation splits, each into ``output_dir/member<k>``; ``ensemble.bootstrap``
            resamples each member's training rows with replacement).
        output_dir: Folder for the surrogate, ``summary.json``, the resolved config, Lightning
            checkpoints and logs. Created if missing. One holding another run's surrogate is
            refused (:class:`~surrogates.io.OutputError`, before anything is written) unless
            ``ckpt_path`` resumes that run from a checkpoint inside it. A run resumed in its
            own folder first keeps the files it would replace in ``before_resume<k>/``
            (config, summary and surrogate moved, checkpoints copied); ``summary["resumed"]``
            says from which checkpoint, in which folder, and where the earlier files went.
        source: Optional data source object overriding ``cfg.data.source`` (how
            :func:`surrogates.fit` passes in-memory arrays).
        compact_progress: Show one compact bar per fitted network
            (:class:`~surrogates.fitting.progress.FitProgress`: only for a fit past a few
            seconds, only on a terminal's or a notebook's stderr) — what :func:`surrogates.fit`
            shows while Lightning's own bars are off.

    Returns:
        The fitted :class:`Surrogate`, the summary dict and the output folder.

    Under a multi-process strategy (``trainer=ddp``: Lightning starts the extra processes by
    re-running the command) every process returns the same surrogate, but only global rank 0
    writes files.
    """
    output_dir = output_folder(output_dir)
    size = int(OmegaConf.select(cfg, "ensemble.size", default=1))
    if size < 1:
        raise InputError(f"ensemble.size must be a positive integer, got {size}")
    bootstrap = bool(OmegaConf.select(cfg, "ensemble.bootstrap", default=False))
    if size > 1 and cfg.get("ckpt_path"):
        raise InputError("resuming from ckpt_path works for a single network, not an ensemble (ensemble.size=1)")
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:
        _check_resume_checkpoint(ckpt_path)
    cfg = cfg.copy()
    OmegaConf.update(cfg, "paths.output_dir", str(output_dir))

    overrides = {"source": source} if source is not None else {}
    datamodule: SurrogateDataModule = _instantiate_checked(cfg.data, **overrides)
    datamodule.setup("fit")
    samples = datamodule.samples
    _instantiate_checked(cfg.model, in_dim=samples.in_dim, out_dim=samples.out_dim)  # bad model values stop here
    # written once data and model config are known to be usable: a run stopped by bad input writes nothing
    resumed: dict[str, Any] | None = None
    if ckpt_path and (ckpt_path in ("last", "best") or output_dir.resolve() in Path(ckpt_path).resolve().parents):
        resumed = {"checkpoint": str(ckpt_path), "folder": str(output_dir), "earlier_files": None}
    if _launched_as_rank_zero():
        _refuse_another_runs_folder(output_dir, ckpt_path)
        if resumed is not None:  # the same run goes on in its folder: keep what it would replace
            kept = _set_aside_earlier_files(output_dir)
            resumed["earlier_files"] = None if kept is None else str(kept)
        write_with(output_dir / CONFIG_FILE, lambda p: p.write_text(OmegaConf.to_yaml(cfg, resolve=True)))
    if samples.lower is not None:
        lower, upper = samples.lower, samples.upper
    else:
        everything = column_stats(samples.X)
        lower, upper = everything.min, everything.max

    def as_surrogate(members: list) -> Surrogate:
        return Surrogate(
            members,
            input_names=samples.input_names,
            output_names=samples.output_names,
            scalar_output=samples.scalar_output,
            lower=lower,
            upper=upper,
            info={"data": samples.origin, "samples": samples.n_samples},
        )

    # the budget bounds the whole fit: an ensemble's members share it
    budget = time_budget_seconds(OmegaConf.select(cfg, "trainer.max_time"))
    member_budget = None if budget is None else budget / size
    members, member_reports = [], []
    for k in range(size):
        # Members differ in initialisation and in their train/validation split.
        member_dir = output_dir if size == 1 else output_dir / f"member{k}"
        member_cfg = cfg.copy()
        OmegaConf.update(member_cfg, "paths.output_dir", str(member_dir))
        if k > 0 or bootstrap:
            datamodule.split(datamodule.split_seed + k, bootstrap=bootstrap)
        label = None if not compact_progress else "fit" if size == 1 else f"fit member {k + 1}/{size}"
        net, report, writer = _fit_member(member_cfg, datamodule, seed=cfg.seed + k, time_budget=member_budget,
                                          progress=label)
        single = as_surrogate([net])
        report["train"] = _fit_metrics(single, datamodule, datamodule.train_rows)
        report["validation"] = _fit_metrics(single, datamodule, datamodule.val_rows)
        members.append(net)
        member_reports.append(report)

    surrogate = as_surrogate(members)
    first = member_reports[0]
    summary: dict[str, Any] = {
        "data": samples.origin,
        "samples": {"train": first["train"].get("points", 0), "validation": first["validation"].get("points", 0)},
        "model": repr(surrogate),
        "epochs": first["epochs"],
        "processes": first["processes"],
        "fit_seconds": round(sum(r["fit_seconds"] for r in member_reports), 3),
        "threads": torch.get_num_threads(),
        "train": first["train"],
        "validation": first["validation"],
    }
    for key in ("estimated_noise_std", "polish_kept_epoch", "time", "polish_trajectory"):
        if key in first:
            summary[key] = first[key]
    if resumed is not None:
        summary["resumed"] = resumed
    if size > 1:
        summary["members"] = member_reports
    if samples.function is not None:
        test_points = protocol_test_points(samples.function.lower, samples.function.upper)
        summary["derivatives"] = derivative_errors(surrogate, samples.function, test_points)
    surrogate.info["summary"] = summary
    if writer:  # DDP: the other processes hold the same weights and must not race on the files
        surrogate.save(output_dir / SURROGATE_FILE)
    summary["files"] = {
        "surrogate": str(output_dir / SURROGATE_FILE),
        "summary": str(output_dir / SUMMARY_FILE),
        "config": str(output_dir / CONFIG_FILE),
    }
    if writer:
        write_json(output_dir / SUMMARY_FILE, summary)
    return TrainResult(surrogate=surrogate, summary=summary, output_dir=output_dir, writes_files=writer)


def summary_headline(summary: dict[str, Any]) -> str:
    """One line of a training summary: model, data, seconds, epochs."""
    return f"{summary['model']} fitted to {summary['data']} in {summary['fit_seconds']:.1f} s ({summary['epochs']} epochs)"
