"""The settings of one Diffusion-DPO (or SFT) LoRA training run: :class:`DPOTrainConfig`.

Contract: one dataclass, one source per setting; every field is a command-line flag of
``train_dpo/<model>/04_train.py`` (:mod:`train_dpo.train_cli`) and is saved in
``output_dir/train_config.json``. Nothing here loads a model or touches the disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from train_dpo.pairs import PairSelectionConfig
from utils.device import lightning_precision

__all__ = ["OBJECTIVES", "DPOTrainConfig", "check_objective", "uses_cuda", "resolve_precision", "jsonable"]

OBJECTIVES = ("dpo", "sft")  # Diffusion-DPO on pairs; supervised prediction loss on the winners


@dataclass
class DPOTrainConfig:
    """Everything one DPO run needs. Defaults are the released VideoGPA training settings of
    CogVideoX-5B T2V (upstream ``train_dpo/CogVideoX-5B_lora/03_train.py:DEFAULT_CONFIG``; the
    per-model scripts set the others: I2V batch size 2, CogVideoX1.5 1,500 steps and weight decay
    1e-3).

    Data: ``train_json`` is the encoded JSON of ``03_encode.py``; paths in it are relative to
    ``base_path`` (None: the JSON's folder, joined with its ``"video_root"`` when present).
    Pair selection: see :mod:`train_dpo.dataset`. Optimiser: AdamW on the LoRA weights only, cosine
    schedule with ``warmup_steps`` linear warm-up over ``max_steps`` optimiser steps.
    Batch: ``global_batch`` pairs per optimiser step = ``batch_size`` (per device) x devices x
    ``num_nodes`` x gradient accumulation; the accumulation is derived from it
    (:func:`train_dpo.train.resolve_grad_accum`; the released run: 8 GPUs x 1 x 2 = 16, I2V
    8 x 2 x 1) unless ``grad_accum`` is given. ``precision`` None: :func:`resolve_precision`.
    ``devices``: int, list or ``"auto"``; DDP is used when more than one device or node.
    ``resume``: None, ``"auto"`` (``output_dir/lightning/last.ckpt`` if present) or a ``.ckpt`` path.
    ``loggers``: any of ``"csv"``, ``"tensorboard"``, ``"wandb"`` (W&B only when installed).
    ``objective``: ``"dpo"`` (Diffusion-DPO) or ``"sft"`` (winners only, the family's prediction
    MSE, v-prediction for CogVideoX; ``beta``,
    ``label_smoothing`` and ``loss_type`` then only shape the validation's DPO diagnostics).
    ``timestep_input`` (Wan only; see :mod:`train_dpo.families.wan`): the timestep the transformer
    sees, ``"sigma"`` (``floor(1000 * sigma)``, as the sampler feeds it) or ``"released"`` (the
    released trainer's unshifted ``t``); None: the family's default (``"sigma"``).
    """

    base_model: str = ""
    train_json: str = ""
    output_dir: str = "outputs/dpo"
    base_path: str | None = None
    # pair selection (defaults: the released rules, defined once in train_dpo.pairs)
    metric_name: str = PairSelectionConfig.metric_name
    metric_mode: str = PairSelectionConfig.metric_mode
    min_gap: float = PairSelectionConfig.min_gap
    metric_threshold: float | None = PairSelectionConfig.metric_threshold
    motion_threshold: float | None = PairSelectionConfig.motion_threshold
    motion_metric: str = PairSelectionConfig.motion_metric
    val_fraction: float = 0.02
    split_seed: int = 0
    # objective
    objective: str = "dpo"
    beta: float = 1.0
    label_smoothing: float = 0.0
    loss_type: str = "sigmoid"
    # optimisation
    learning_rate: float = 5e-6
    max_steps: int = 10000
    warmup_steps: int = 500
    global_batch: int | None = 16
    batch_size: int = 1
    grad_accum: int | None = None
    max_grad_norm: float = 1.0
    # AdamW as in the released VideoGPA training (torch.optim.AdamW defaults; CogVideoX1.5: 1e-3 decay)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 0.01
    adam_epsilon: float = 1e-8
    # LoRA (released adapters: r 64, alpha 128, dropout 0, to_q/to_k/to_v/to_out.0)
    lora_rank: int = 64
    lora_alpha: float = 128.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    gradient_checkpointing: bool = True
    # model-family options (None: the family's default; an error for a family that does not take it)
    timestep_input: str | None = None  # Wan: "sigma" (T * sigma, as at inference) or "released"
    # checkpoints, validation, logging
    checkpoint_every: int = 1000
    val_every: int | None = None
    limit_val_batches: int | float | None = None
    log_every: int = 10
    loggers: tuple[str, ...] = ("csv", "tensorboard")
    wandb_project: str = "videogpa"
    run_name: str | None = None
    resume: str | None = None
    # hardware
    precision: str | None = None
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str | None = None
    num_workers: int = 2
    seed: int = 42
    progress_bar: bool = True

    def selection(self) -> PairSelectionConfig:
        """The :class:`~train_dpo.pairs.PairSelectionConfig` of this run."""
        return PairSelectionConfig(
            metric_name=self.metric_name,
            metric_mode=self.metric_mode,
            min_gap=self.min_gap,
            metric_threshold=self.metric_threshold,
            motion_threshold=self.motion_threshold,
            motion_metric=self.motion_metric,
        )


def check_objective(objective: str) -> None:
    """Raises ValueError naming ``objective`` unless it is one of :data:`OBJECTIVES`."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")


def uses_cuda(accelerator: str) -> bool:
    """True when a run with Lightning ``accelerator`` trains on CUDA: CUDA is available and
    ``accelerator`` is ``"auto"``, ``"gpu"`` or ``"cuda"``."""
    return torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")


def resolve_precision(cfg: DPOTrainConfig) -> str:
    """Lightning ``precision`` of the run: ``cfg.precision`` when set, else the project's policy
    (:func:`utils.device.lightning_precision`: ``"bf16-mixed"`` on Ampere and later, ``"16-mixed"``
    on older CUDA devices, ``"32-true"`` on CPU). Under ``*-mixed`` the base weights are stored in
    the half dtype and the LoRA weights in float32."""
    if cfg.precision:
        return cfg.precision
    return lightning_precision(uses_cuda(cfg.accelerator))


def jsonable(obj: Any) -> Any:
    """``obj`` with dict keys as strings, tuples as lists and anything not JSON-native as ``str``
    (for ``train_config.json`` and the Lightning hyper-parameters)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
