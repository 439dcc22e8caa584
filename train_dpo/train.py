"""Diffusion-DPO LoRA training, config in and result out: :func:`train`.

Contract: ``train(cfg)`` picks the model family from ``cfg.base_model``
(:func:`train_dpo.families.family_for`), loads its transformer, reads the preference pairs
(:mod:`train_dpo.dataset`), fits :class:`~train_dpo.lightning_module.DiffusionDPOModule` with
Lightning (validation every ``val_every`` optimiser steps inside the fit) and writes, under
``cfg.output_dir``: ``train_config.json`` (settings, data statistics, precision, batch arithmetic),
the adapters and ``lightning/last.ckpt`` (:mod:`train_dpo.checkpointing`), ``val_history.json`` and
the logs. The steps, in order: resolve the batch arithmetic (before any slow loading), seed, load the
model, load the data, build the module (LoRA initialised from the seeded RNG), build the trainer,
fit. The command line of ``train_dpo/<model>/04_train.py`` is :mod:`train_dpo.train_cli`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from pytorch_lightning.strategies import DDPStrategy
from torch.utils.data import DataLoader

from train_dpo.checkpointing import DPOCheckpointCallback
from train_dpo.config import DPOTrainConfig, check_objective, jsonable, resolve_precision, uses_cuda
from train_dpo.dataset import (DPOPairDataset, check_image_latents_uniform, collate_pairs,
                               load_preference_datasets)
from train_dpo.families import ModelFamily, load_family
from train_dpo.lightning_module import DiffusionDPOModule
from train_dpo.resumable_loader import ResumableDataLoader
from utils.io_utils import atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["TrainResult", "train", "resolve_num_devices", "resolve_grad_accum"]


@dataclass
class TrainResult:
    """What :func:`train` returns: the fitted module and trainer, the output folders, the data stats
    (:func:`~train_dpo.pairs.select_preference_pairs` + split sizes), the validation history
    ``[{"step", "accuracy", "reward_margin", "loss", "val_pairs"}]`` and the wall time."""

    module: DiffusionDPOModule
    trainer: pl.Trainer
    output_dir: Path
    final_lora: Path
    last_ckpt: Path
    data_stats: dict[str, Any]
    val_history: list[dict[str, float]]
    seconds: float


def _make_loggers(cfg: DPOTrainConfig, out: Path):
    """Lightning loggers named in ``cfg.loggers`` (False when none); W&B only when installed."""
    loggers = []
    for name in cfg.loggers:
        if name == "csv":
            loggers.append(CSVLogger(str(out), name="logs"))
        elif name == "tensorboard":
            try:
                loggers.append(TensorBoardLogger(str(out), name="tensorboard"))
            except ModuleNotFoundError as e:
                logger.warning("TensorBoard logging off: %s", e)
        elif name == "wandb":
            try:  # optional dependency: imported only when asked for
                import wandb  # noqa: F401

                loggers.append(WandbLogger(project=cfg.wandb_project, name=cfg.run_name, save_dir=str(out)))
            except ModuleNotFoundError:
                logger.warning("W&B logging requested but wandb is not installed; skipped")
        else:
            raise ValueError(f"unknown logger {name!r}; choose from csv, tensorboard, wandb")
    return loggers or False


def resolve_num_devices(devices: Any, accelerator: str = "auto") -> int:
    """How many training processes per node Lightning starts for ``devices``.

    Args:
        devices: as ``pl.Trainer(devices=...)``: ``"auto"``, an int (``-1``: every GPU), a list of
            GPU indices, or a string of one of these (``"2"``, ``"0,1,2"``).
        accelerator: ``"auto"``/``"gpu"``/``"cuda"`` use CUDA when available; otherwise CPU.

    Returns:
        int >= 1: the list length, the int, or for ``"auto"``/``-1`` the visible CUDA devices
        (CUDA in use) or 1 (CPU).

    Raises:
        ValueError: 0 or a negative count other than -1, or an unparsable string.
    """
    use_cuda = uses_cuda(accelerator)
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto":
            return max(1, torch.cuda.device_count()) if use_cuda else 1
        if "," in text:
            return len([x for x in text.split(",") if x.strip()])
        try:
            devices = int(text)
        except ValueError:
            raise ValueError(f"devices must be 'auto', an int or a list like 0,1; got {devices!r}") from None
    if isinstance(devices, (list, tuple)):
        if not devices:
            raise ValueError("devices is an empty list")
        return len(devices)
    n = int(devices)
    if n == -1:
        return max(1, torch.cuda.device_count()) if use_cuda else 1
    if n < 1:
        raise ValueError(f"devices must be >= 1, -1 or 'auto'; got {devices!r}")
    return n


def resolve_grad_accum(cfg: DPOTrainConfig, num_devices: int) -> tuple[int, int]:
    """Gradient accumulation and the resulting global batch (pairs per optimiser step).

    ``cfg.grad_accum`` None: ``global_batch / (num_devices x num_nodes x batch_size)``, which must
    divide. An explicit ``cfg.grad_accum`` is used as given, with a warning when it changes the
    global batch. ``global_batch`` None and ``grad_accum`` None: accumulation 1.

    Returns:
        ``(grad_accum, global_batch)``.

    Raises:
        ValueError: batch size, accumulation or global batch < 1, or a global batch that the
            processes x per-device batch do not divide (the message says what to change).
    """
    if cfg.batch_size < 1 or cfg.num_nodes < 1:
        raise ValueError(f"batch_size and num_nodes must be >= 1, got {cfg.batch_size} and {cfg.num_nodes}")
    per_step = num_devices * cfg.num_nodes * cfg.batch_size
    how = f"{num_devices} device(s) x {cfg.num_nodes} node(s) x batch size {cfg.batch_size} = {per_step}"
    if cfg.grad_accum is not None:
        if cfg.grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1, got {cfg.grad_accum}")
        total = per_step * cfg.grad_accum
        if cfg.global_batch is not None and total != cfg.global_batch:
            logger.warning(
                "--grad_accum %d overrides GLOBAL_BATCH %d: %s pairs per micro-step -> global batch %d",
                cfg.grad_accum, cfg.global_batch, how, total,
            )  # fmt: skip
        return cfg.grad_accum, total
    if cfg.global_batch is None:
        return 1, per_step
    if cfg.global_batch < 1:
        raise ValueError(f"global_batch must be >= 1, got {cfg.global_batch}")
    if cfg.global_batch % per_step:
        raise ValueError(
            f"global batch {cfg.global_batch} is not a multiple of {how} pairs per micro-step; "
            "change --global_batch, --batch_size or the device count, or give --grad_accum explicitly"
        )
    return cfg.global_batch // per_step, cfg.global_batch


def _strategy(cfg: DPOTrainConfig, num_devices: int):
    """``cfg.strategy``, else DDP over several devices or nodes, else Lightning's ``"auto"``."""
    if cfg.strategy:
        return cfg.strategy
    if num_devices > 1 or cfg.num_nodes > 1:
        return DDPStrategy(find_unused_parameters=False)
    return "auto"



def _weight_dtype(precision: str) -> torch.dtype:
    """Dtype the base weights are loaded in under Lightning ``precision``."""
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return torch.float32


def _resume_path(cfg: DPOTrainConfig, ckpt_cb: DPOCheckpointCallback) -> str | None:
    """The ``.ckpt`` to resume from: ``cfg.resume``, or ``last.ckpt`` if present for ``"auto"``."""
    if cfg.resume in ("auto", "latest"):
        return str(ckpt_cb.last_ckpt) if ckpt_cb.last_ckpt.is_file() else None
    if cfg.resume and not Path(cfg.resume).is_file():
        raise FileNotFoundError(f"resume checkpoint not found: {cfg.resume}")
    return cfg.resume


def _dataloaders(cfg: DPOTrainConfig, train_ds: DPOPairDataset, val_ds: DPOPairDataset, distributed: bool):
    """Training loader (single process: :class:`ResumableDataLoader`, an order fixed by (seed,
    epoch) that resumes mid-epoch; distributed: a shuffled ``DataLoader`` under Lightning's sampler)
    and validation loader (None without validation pairs)."""
    loader_kw = dict(
        num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0,
        pin_memory=uses_cuda(cfg.accelerator), collate_fn=collate_pairs,
    )
    drop_last = len(train_ds) >= cfg.batch_size
    if distributed:
        train_dl = DataLoader(
            train_ds, shuffle=True, batch_size=cfg.batch_size, drop_last=drop_last, **loader_kw
        )
    else:
        train_dl = ResumableDataLoader(train_ds, cfg.batch_size, cfg.seed, drop_last=drop_last, **loader_kw)
    val_dl = None
    if len(val_ds):
        val_dl = DataLoader(val_ds, batch_size=cfg.batch_size, shuffle=False, **loader_kw)
    return train_dl, val_dl


def train(
    cfg: DPOTrainConfig,
    callbacks: Sequence[pl.Callback] | None = None,
    components: tuple[torch.nn.Module, ModelFamily] | None = None,
) -> TrainResult:
    """Run Diffusion-DPO (or, with ``cfg.objective = "sft"``, supervised) LoRA training.

    Args:
        cfg: :class:`~train_dpo.config.DPOTrainConfig`.
        callbacks: extra Lightning callbacks.
        components: ``(transformer, family)`` instead of loading ``cfg.base_model`` (tests,
            benchmarks), e.g. ``CogVideoXFamily.load(path, torch.float32)``.

    Returns:
        :class:`TrainResult`; the adapter is at ``output_dir/final_lora`` (loadable by
        ``generate/t2v_inference.py --lora_path`` / ``i2v_inference.py``).

    Raises:
        JSONInputError: missing/malformed ``train_json``. ValueError: no preference pairs survive
        the filters; data that does not fit the model; bad settings (an unknown ``objective``,
        a model family without a trainer, ``timestep_input`` set for a family that does not take it...).
        FileNotFoundError: ``resume`` path or model missing.
    """
    t0 = time.time()
    # ---- setup: settings, model, data, module --------------------------------------------------
    check_objective(cfg.objective)
    num_devices = resolve_num_devices(cfg.devices, cfg.accelerator)
    grad_accum, global_batch = resolve_grad_accum(cfg, num_devices)  # before any slow loading
    logger.info(
        "global batch: %d pairs per optimiser step = %d device(s) x %d node(s) x batch size %d x "
        "accumulation %d", global_batch, num_devices, cfg.num_nodes, cfg.batch_size, grad_accum,
    )  # fmt: skip
    strategy = _strategy(cfg, num_devices)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    precision = resolve_precision(cfg)
    if components is None:  # family options: those set in cfg, refused by a family without them
        components = load_family(cfg.base_model, _weight_dtype(precision), timestep_input=cfg.timestep_input)
    elif cfg.timestep_input not in (None, getattr(components[1], "timestep_input", None)):
        given = getattr(components[1], "timestep_input", None)
        raise ValueError(f"timestep_input {cfg.timestep_input!r} does not match the given "
                         f"{components[1].name} family's ({given!r})")
    transformer, family = components
    train_ds, val_ds, stats = load_preference_datasets(
        cfg.train_json, cfg.base_path, cfg.selection(), cfg.val_fraction, cfg.split_seed,
        dtype=None, require_image_latents=family.requires_image(),
    )  # fmt: skip
    logger.info("data: %d train pairs, %d val pairs", len(train_ds), len(val_ds))
    try:
        family.check_item(train_ds[0])
    except (KeyError, FileNotFoundError) as e:
        raise ValueError(f"cannot load the first training pair: {e}") from e
    if cfg.batch_size > 1:  # one batch is one kind (text-to-video or first-frame conditioned)
        check_image_latents_uniform(train_ds, val_ds)
    module = DiffusionDPOModule(transformer, family, cfg)

    # ---- trainer ---------------------------------------------------------------------------------
    ckpt_cb = DPOCheckpointCallback(out, cfg.checkpoint_every)
    resume = _resume_path(cfg, ckpt_cb)
    train_dl, val_dl = _dataloaders(cfg, train_ds, val_ds, distributed=strategy != "auto")
    val_every = cfg.val_every or cfg.checkpoint_every
    trainer = pl.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=strategy,
        precision=precision,
        max_steps=cfg.max_steps,
        max_epochs=-1,
        accumulate_grad_batches=grad_accum,
        gradient_clip_val=cfg.max_grad_norm if cfg.max_grad_norm and cfg.max_grad_norm > 0 else None,
        gradient_clip_algorithm="norm",
        val_check_interval=max(1, val_every * grad_accum) if val_dl is not None else None,
        check_val_every_n_epoch=None,
        limit_val_batches=cfg.limit_val_batches if val_dl is not None else 0,
        num_sanity_val_steps=0,
        log_every_n_steps=cfg.log_every,
        logger=_make_loggers(cfg, out),
        callbacks=[ckpt_cb, *(callbacks or [])],
        enable_checkpointing=False,
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
        default_root_dir=str(out),
        use_distributed_sampler=True,
    )
    if trainer.is_global_zero:
        batch = {"global_batch": global_batch, "devices": num_devices, "num_nodes": cfg.num_nodes,
                 "batch_size": cfg.batch_size, "grad_accum": grad_accum}  # fmt: skip
        info = {"config": jsonable(asdict(cfg)), "data": jsonable(stats), "precision": precision,
                "batch": batch}  # fmt: skip
        atomic_write_json(out / "train_config.json", info)

    # ---- fit (validation runs inside, every val_every optimiser steps) ---------------------------
    trainer.fit(module, train_dataloaders=train_dl, val_dataloaders=val_dl, ckpt_path=resume)
    if trainer.is_global_zero:
        atomic_write_json(out / "val_history.json", module.val_history)
    return TrainResult(
        module=module,
        trainer=trainer,
        output_dir=out,
        final_lora=out / "final_lora",
        last_ckpt=ckpt_cb.last_ckpt,
        data_stats=stats,
        val_history=list(module.val_history),
        seconds=time.time() - t0,
    )
