"""Command line of the Diffusion-DPO trainer, shared by the three ``train_dpo/*/03_train.py``.

Contract: :func:`build_train_argparser` has one flag per :class:`~train_dpo.config.DPOTrainConfig`
field (script constants as defaults; a constant that names no setting is an error),
:func:`config_from_args` turns the parsed flags into the config, and :func:`run_train_cli` runs
:func:`train_dpo.train.train` and returns the exit code (0 ok, 2 bad input). The training itself
lives in :mod:`train_dpo.train`, :mod:`train_dpo.lightning_module`, :mod:`train_dpo.checkpointing`
and :mod:`train_dpo.families`.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import MISSING, fields
from typing import Any

from train_dpo.config import OBJECTIVES, DPOTrainConfig
from train_dpo.dataset import MOTION_METRICS
from train_dpo.families.wan import TIMESTEP_INPUTS
from train_dpo.train import train

logger = logging.getLogger(__name__)

__all__ = ["build_train_argparser", "config_from_args", "run_train_cli"]


# ------------------------------------------------------------------------------------------------
# command line (shared by the three 03_train.py scripts)
# ------------------------------------------------------------------------------------------------


def _none_or_float(s: str):
    return None if str(s).lower() in ("none", "off", "") else float(s)


def _none_or_int(s: str):
    return None if str(s).lower() in ("none", "off", "auto", "") else int(s)


def _devices(s: str):
    if s == "auto":
        return s
    if "," in s:
        return [int(x) for x in s.split(",") if x]
    return int(s)


def build_train_argparser(defaults: dict[str, Any] | None = None, description: str | None = None):
    """argparse parser over every :class:`DPOTrainConfig` field; ``defaults`` override the dataclass's.

    Raises:
        ValueError: a key of ``defaults`` (a script constant, lower-cased) names no setting.
    """
    d = {
        f.name: (f.default if f.default is not MISSING else f.default_factory())
        for f in fields(DPOTrainConfig)
    }
    unknown = sorted(set(defaults or {}) - set(d))
    if unknown:
        raise ValueError(f"unknown training setting(s) {unknown} (misspelled script constant?)")
    d.update(defaults or {})
    p = argparse.ArgumentParser(description=description or "Diffusion-DPO LoRA training for CogVideoX.")
    a = p.add_argument
    a("--base_model", default=d["base_model"], help="diffusers CogVideoX folder or hub id")
    a("--train_json", default=d["train_json"], help="encoded JSON from 02_encode.py")
    a(
        "--base_path",
        default=d["base_path"],
        help="JSON paths are relative to this (default: the JSON's folder)",
    )
    a("--output_dir", default=d["output_dir"])
    a("--metric_name", default=d["metric_name"])
    a("--metric_mode", choices=("min", "max"), default=d["metric_mode"])
    a("--min_gap", type=float, default=d["min_gap"])
    a("--metric_threshold", type=_none_or_float, default=d["metric_threshold"], help="'none' disables")
    a("--motion_threshold", type=_none_or_float, default=d["motion_threshold"], help="'none' disables")
    a("--motion_metric", choices=MOTION_METRICS, default=d["motion_metric"],
      help="video key the motion threshold applies to (motion_norm_released: released)")  # fmt: skip
    a("--val_fraction", type=float, default=d["val_fraction"])
    a("--split_seed", type=int, default=d["split_seed"])
    a("--objective", choices=OBJECTIVES, default=d["objective"],
      help="dpo: Diffusion-DPO on the pairs; sft: v-prediction MSE on the winners (ablation)")  # fmt: skip
    a("--beta", type=float, default=d["beta"], help="= Diffusion-DPO beta_dpo / 2")
    a("--label_smoothing", type=float, default=d["label_smoothing"])
    a("--loss_type", choices=("sigmoid", "hinge"), default=d["loss_type"])
    a("--learning_rate", "--lr", type=float, default=d["learning_rate"])
    a("--max_steps", type=int, default=d["max_steps"])
    a("--warmup_steps", type=int, default=d["warmup_steps"])
    a("--global_batch", type=_none_or_int, default=d["global_batch"],
      help="pairs per optimiser step over all devices and nodes; sets the accumulation")  # fmt: skip
    a("--batch_size", type=int, default=d["batch_size"], help="pairs per device per micro-step")
    a("--grad_accum", type=_none_or_int, default=d["grad_accum"],
      help="explicit accumulation (overrides --global_batch; default: derived from it)")  # fmt: skip
    a("--max_grad_norm", type=float, default=d["max_grad_norm"])
    a("--adam_beta1", type=float, default=d["adam_beta1"])
    a("--adam_beta2", type=float, default=d["adam_beta2"])
    a("--adam_weight_decay", type=float, default=d["adam_weight_decay"])
    a("--adam_epsilon", type=float, default=d["adam_epsilon"])
    a("--lora_rank", type=int, default=d["lora_rank"])
    a("--lora_alpha", type=float, default=d["lora_alpha"])
    a("--lora_dropout", type=float, default=d["lora_dropout"])
    a("--lora_targets", nargs="+", default=list(d["lora_targets"]))
    a("--no_gradient_checkpointing", dest="gradient_checkpointing", action="store_false",
      default=d["gradient_checkpointing"])  # fmt: skip
    a("--timestep_input", choices=TIMESTEP_INPUTS, default=d["timestep_input"],
      help="Wan only: transformer timestep 'sigma' (T * sigma, as at inference) or 'released' (the released "
      "trainer's unshifted t); default: the family's ('sigma'); an error for CogVideoX")  # fmt: skip
    a("--checkpoint_every", type=int, default=d["checkpoint_every"], help="optimiser steps")
    a("--val_every", type=int, default=d["val_every"], help="optimiser steps (default: checkpoint_every)")
    a("--limit_val_batches", type=float, default=d["limit_val_batches"])
    a("--log_every", type=int, default=d["log_every"])
    a("--loggers", nargs="*", default=list(d["loggers"]), help="csv tensorboard wandb")
    a("--wandb", action="store_true", help="add W&B logging (when installed)")
    a("--wandb_project", default=d["wandb_project"])
    a("--run_name", default=d["run_name"])
    a("--resume", default=d["resume"], help="'auto' or a Lightning .ckpt path")
    a("--precision", default=d["precision"], help="default: bf16-mixed on CUDA, 32-true on CPU")
    a("--accelerator", default=d["accelerator"])
    a("--devices", type=_devices, default=d["devices"], help="'auto', N or a list 0,1,2")
    a("--num_nodes", type=int, default=d["num_nodes"])
    a("--strategy", default=d["strategy"])
    a("--num_workers", type=int, default=d["num_workers"])
    a("--seed", type=int, default=d["seed"])
    a("--no_progress_bar", dest="progress_bar", action="store_false", default=d["progress_bar"])
    return p


def config_from_args(args: argparse.Namespace) -> DPOTrainConfig:
    """:class:`DPOTrainConfig` from parsed arguments of :func:`build_train_argparser`."""
    kw = {f.name: getattr(args, f.name) for f in fields(DPOTrainConfig) if hasattr(args, f.name)}
    kw["lora_targets"] = tuple(kw["lora_targets"])
    loggers = list(kw.get("loggers") or [])
    if getattr(args, "wandb", False) and "wandb" not in loggers:
        loggers.append("wandb")
    kw["loggers"] = tuple(loggers)
    lvb = kw.get("limit_val_batches")
    if lvb is not None and float(lvb).is_integer() and lvb > 1:
        kw["limit_val_batches"] = int(lvb)
    return DPOTrainConfig(**kw)


def run_train_cli(argv=None, defaults: dict[str, Any] | None = None, description: str | None = None) -> int:
    """Parse ``argv`` over ``defaults`` and :func:`train`; returns 0, or 2 on bad input."""
    from utils.io_utils import JSONInputError

    from utils.log_filters import quiet_expected_messages

    args = build_train_argparser(defaults, description).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_expected_messages()
    if not args.base_model or not args.train_json:
        logger.error("--base_model and --train_json are required")
        return 2
    cfg = config_from_args(args)
    try:
        result = train(cfg)
    except (JSONInputError, ValueError, FileNotFoundError) as e:
        logger.error("%s", e)
        return 2
    print(f"final adapter: {result.final_lora}  (steps {result.trainer.global_step}, {result.seconds:.0f}s)")
    if result.val_history:
        print(f"last validation: {result.val_history[-1]}")
    return 0
