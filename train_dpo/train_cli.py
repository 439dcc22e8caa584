"""Command line of Diffusion-DPO training (``train_dpo/<model>/04_train.py``).

Every option is a field of :class:`~train_dpo.config.DPOTrainConfig` (whose defaults are the
released CogVideoX-5B settings); a per-model script sets what differs as UPPER_CASE constants and
calls :func:`run_train_cli`. Built by :mod:`utils.config_cli`: a misspelled constant exits 2.

    python train_dpo/CogVideoX-5B_lora/04_train.py --devices 0,1 --global_batch none --grad_accum 4
"""

from __future__ import annotations

import argparse
import logging
from typing import Any, Mapping, Sequence

from train_dpo.pairs import MOTION_METRICS
from train_dpo.config import OBJECTIVES, DPOTrainConfig
from train_dpo.families.wan import TIMESTEP_INPUTS
from train_dpo.train import train
from utils.config_cli import Arg, build_config_parser, config_from_args

logger = logging.getLogger(__name__)

__all__ = ["TRAIN_ARGS", "parse_devices", "build_train_argparser", "train_config_from_args", "run_train_cli"]


def parse_devices(s: str) -> str | int | list[int]:
    """``"auto"`` -> ``"auto"``, ``"8"`` -> 8 (count; -1: all), ``"0,1"`` -> ``[0, 1]`` (indices)."""
    if s == "auto":
        return s
    if "," in s:
        return [int(x) for x in s.split(",") if x]
    return int(s)


def _val_batches(s: str) -> int | float | None:
    """Lightning's ``limit_val_batches``: a fraction (float, 1.0 = all) or a batch count (int > 1)."""
    if s.strip().lower() == "none":
        return None
    v = float(s)
    return int(v) if v.is_integer() and v > 1 else v


parse_devices.__name__ = "devices"
_val_batches.__name__ = "limit_val_batches"

TRAIN_ARGS: dict[str, dict[str, str | Arg]] = {
    "model and data": {
        "base_model": "diffusers CogVideoX or Wan2.2 folder or hub id (the model family follows it)",
        "train_json": "encoded JSON of 03_encode.py",
        "base_path": "JSON paths are relative to this (none: the JSON's folder + its video_root)",
        "output_dir": "checkpoint-<step>/, final_lora/, lightning/last.ckpt and logs",
    },
    "preference pairs (per group: winner = best, loser = worst by metric_name)": {
        "metric_name": "video key the pairs are ranked by (consistency_score, or epipolar from "
                       "video_scorer.py --extra_metrics epipolar)",
        "metric_mode": Arg("min: lower is better (consistency_score: more 3-D consistent)",
                           choices=("min", "max")),
        "min_gap": "|metric(winner) - metric(loser)| must be at least this",
        "metric_threshold": "the winner's metric must be at least this good; none: off "
                            "(released: defined 0.8, never applied)",
        "motion_threshold": "videos with motion_metric below this are dropped; none: off",
        "motion_metric": Arg("video key of the motion filter (motion_norm_released: the released filter, "
                             "raw extrinsic t; motion_norm: camera centres)", choices=MOTION_METRICS),
        "val_fraction": "share of the pairs held out for validation",
        "split_seed": "seed of the train/validation split",
    },
    "objective": {
        "objective": Arg("dpo: Diffusion-DPO on the pairs; sft: the family's prediction MSE on the winners "
                         "(v-prediction for CogVideoX, velocity for Wan; ablation)",
                         choices=OBJECTIVES),
        "beta": "= Diffusion-DPO beta_dpo / 2 (see train_dpo/loss.py)",
        "label_smoothing": "conservative DPO label smoothing",
        "loss_type": Arg("DPO loss of the implicit reward margin", choices=("sigmoid", "hinge")),
    },
    "optimisation (AdamW on the LoRA weights, cosine schedule with linear warm-up)": {
        "learning_rate": Arg("AdamW learning rate", aliases=("--lr",)),
        "max_steps": "optimiser steps",
        "warmup_steps": "linear warm-up steps",
        "global_batch": "pairs per optimiser step over all devices and nodes; sets the gradient "
                        "accumulation = global_batch / (devices x nodes x batch_size); none: accumulation 1",
        "batch_size": "pairs per device per micro-step",
        "grad_accum": "explicit gradient accumulation (overrides global_batch; none: derived from it)",
        "max_grad_norm": "gradient clipping norm",
        "adam_beta1": "AdamW beta1",
        "adam_beta2": "AdamW beta2",
        "adam_weight_decay": "AdamW weight decay",
        "adam_epsilon": "AdamW epsilon",
    },
    "LoRA (released adapters: rank 64, alpha 128, attention projections)": {
        "lora_rank": "LoRA rank r",
        "lora_alpha": "LoRA alpha (scaling alpha / r)",
        "lora_dropout": "LoRA dropout",
        "lora_targets": "transformer modules that get an adapter",
        "gradient_checkpointing": "recompute transformer activations in the backward pass",
    },
    "model family (none: the family's default; an error for a family without the option)": {
        "timestep_input": Arg("Wan: the transformer's timestep, 'sigma' = floor(1000 * sigma) as at "
                              "inference (default) or 'released' = the released trainer's unshifted t",
                              choices=TIMESTEP_INPUTS),
    },
    "checkpoints, validation, logging": {
        "checkpoint_every": "optimiser steps between checkpoints",
        "val_every": "optimiser steps between validations (none: checkpoint_every)",
        "limit_val_batches": Arg("validation batches: a fraction or a count; none: all", type=_val_batches),
        "log_every": "optimiser steps between log lines",
        "loggers": Arg("any of csv tensorboard wandb", nargs="*"),
        "wandb_project": "W&B project (with the wandb logger)",
        "run_name": "logger run name (none: the output folder's name)",
        "resume": "'auto' (output_dir/lightning/last.ckpt if present) or a Lightning .ckpt path",
    },
    "hardware": {
        "precision": "Lightning precision (none: bf16-mixed on CUDA, 32-true on CPU)",
        "accelerator": "Lightning accelerator",
        "devices": Arg("'auto', a count N (-1: all) or a list of indices 0,1,2", type=parse_devices),
        "num_nodes": "nodes (DDP over devices x nodes)",
        "strategy": "Lightning strategy (none: DDP when more than one device or node)",
        "num_workers": "data loader workers",
        "seed": "seed of noise, timesteps and LoRA initialisation",
        "progress_bar": "tqdm progress bar",
    },
}


def build_train_argparser(
    constants: Mapping[str, Any] | None = None, description: str | None = None
) -> argparse.ArgumentParser:
    """argparse parser over every :class:`DPOTrainConfig` field, ``constants`` (a per-model script's
    ``{"MAX_STEPS": 1500}``, any case) as defaults, plus ``--wandb`` (adds the W&B logger).

    Raises:
        SystemExit(2): a constant names no setting (message names it and the nearest one).
    """
    description = description or "Diffusion-DPO LoRA training for CogVideoX."
    p = build_config_parser(DPOTrainConfig, TRAIN_ARGS, constants=constants, description=description)
    p.add_argument("--wandb", action="store_true", help="add W&B logging (when installed)")
    return p


def train_config_from_args(args: argparse.Namespace) -> DPOTrainConfig:
    """:class:`DPOTrainConfig` from :func:`build_train_argparser`'s arguments (``--wandb`` joins the loggers)."""
    loggers = list(args.loggers or [])
    if args.wandb and "wandb" not in loggers:
        loggers.append("wandb")
    return config_from_args(DPOTrainConfig, args, loggers=tuple(loggers))


def run_train_cli(
    argv: Sequence[str] | None = None,
    constants: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> int:
    """Parse ``argv`` over ``constants`` and :func:`~train_dpo.train.train`.

    Returns:
        0 done; 2 bad input (missing base_model/train_json, bad JSON, settings the trainer refuses).
        argparse errors (unknown flag or constant, bad value) exit 2 through ``SystemExit``.
    """
    from utils.io_utils import JSONInputError
    from utils.log_filters import quiet_expected_messages

    args = build_train_argparser(constants, description).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_expected_messages()
    if not args.base_model or not args.train_json:
        logger.error("--base_model and --train_json are required")
        return 2
    cfg = train_config_from_args(args)
    try:
        result = train(cfg)
    except (JSONInputError, ValueError, FileNotFoundError) as e:
        logger.error("%s", e)
        return 2
    print(f"final adapter: {result.final_lora}  (steps {result.trainer.global_step}, {result.seconds:.0f}s)")
    if result.val_history:
        print(f"last validation: {result.val_history[-1]}")
    return 0
