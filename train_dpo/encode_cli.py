"""Command line of the latent encoder (``train_dpo/*/03_encode.py`` call :func:`run_encode_cli`).

Built by :mod:`utils.config_cli` over :class:`train_dpo.encode.EncodeConfig`: the per-model script's
constants are the defaults, flags win, a misspelled constant exits 2 naming the nearest setting.
Shard defaults come from the launcher (``utils.jobs.launch_defaults``); ``--merge`` joins the shard
outputs (``train_dpo.encode_shards``). Exit codes: 0 done, 2 bad input.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from train_dpo.encode import DTYPES, EncodeConfig, encode_dataset
from utils.config_cli import Arg, build_config_parser, config_from_args
from utils.io_utils import JSONInputError
from utils.jobs import ShardError, check_shard, launch_defaults
from utils.launcher import SHARD_HELP

logger = logging.getLogger(__name__)

__all__ = ["ENCODE_ARGS", "build_encode_argparser", "run_encode_cli"]


ENCODE_ARGS: dict[str, dict[str, str | Arg]] = {
    "model and data": {
        "base_model": "diffusers CogVideoX pipeline folder or hub id",
        "input_json": "scored groups JSON of 02_score.py",
        "output_json": "encoded JSON to write (input + latent_path per video, condition_path per group)",
        "base_path": "JSON paths are relative to this (none: the input JSON's folder + its video_root)",
        "latent_dir": "folder of the safetensors files (relative: under base_path)",
    },
    "frames": {
        "num_frames": "frames sampled uniformly per video (first and last included)",
        "height": "frame height in pixels (the model's)",
        "width": "frame width in pixels (the model's)",
        "seed": "VAE posterior sampling (per video: mixed with the crc32 of its path)",
    },
    "hardware and memory": {
        "device": "cuda or cpu (none: CUDA when available)",
        "dtype": Arg("weights and compute dtype (none: bf16 on CUDA, fp32 on CPU)",
                     choices=tuple(sorted(DTYPES))),
        "vae_slicing": "decode/encode the batch one video at a time",
        "vae_tiling": "tiled VAE (changes latents slightly)",
        "max_sequence_length": "T5 tokens (226 for every CogVideoX)",
    },
    "sharding (one process per shard; --merge joins the shard outputs)": {
        "num_shards": f"split the groups into K shards ({SHARD_HELP})",
        "shard_index": "which shard this process encodes",
    },
    "run": {
        "limit_groups": "encode only the first N groups (smoke runs; none: all)",
        "overwrite": "re-encode even when the files exist",
        "retry_errors": "re-try videos whose entry carries an error from an earlier encoding",
    },
}


def build_encode_argparser(constants: dict[str, Any] | None = None, description: str | None = None):
    """argparse parser over :class:`EncodeConfig`; ``constants`` (a per-model script's, any case)
    set the defaults.

    Raises:
        SystemExit(2): a constant names no setting (message names it and the nearest one).
    """
    launch, launch_error = launch_defaults()  # an inconsistent environment is reported by run_encode_cli
    p = build_config_parser(EncodeConfig, ENCODE_ARGS, constants=constants,
                            defaults={"num_shards": launch.num_shards, "shard_index": launch.shard_index},
                            description=description or "Encode videos/prompts to latents for DPO.")  # fmt: skip
    p.set_defaults(launch_error=launch_error, local_rank=launch.local_rank)
    p.add_argument("--merge", action="store_true",
                   help="do not encode: merge the shard outputs into --output_json")  # fmt: skip
    return p


def run_encode_cli(
    argv=None, constants: dict[str, Any] | None = None, description: str | None = None, encoder_factory=None
) -> int:
    """Parse ``argv`` over ``constants``, run :func:`encode_dataset` (with ``encoder_factory``, see
    there); returns an exit code.

    0: done; 2: bad input (missing/malformed JSON, bad or inconsistent shard arguments or launcher
    variables, a missing or inconsistent shard at ``--merge``). argparse errors (missing or unknown
    setting, bad value) exit 2 through ``SystemExit``.
    """
    from utils.log_filters import quiet_expected_messages

    args = build_encode_argparser(constants, description).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_expected_messages()
    if args.device is None and args.local_rank is not None and torch.cuda.is_available():
        args.device = f"cuda:{args.local_rank % torch.cuda.device_count()}"  # one GPU per launcher task
    cfg = config_from_args(EncodeConfig, args)
    try:
        if args.launch_error:
            raise ShardError(args.launch_error)
        check_shard(cfg.shard_index, cfg.num_shards)
        if args.merge:
            from train_dpo.encode_shards import merge_encoded_shards

            print(f"merged: {merge_encoded_shards(cfg)}")
            return 0
        encode_dataset(cfg, encoder_factory=encoder_factory)
    except (JSONInputError, ValueError, FileNotFoundError) as e:
        logger.error("%s", e)
        return 2
    return 0
