"""Command line of candidate generation: ``train_dpo/<model>/01_generate.py`` and
``python -m generate.candidates_cli {generate,merge} ...``.

Built by :mod:`utils.config_cli` over :class:`generate.candidates.CandidateConfig`: a per-model
script's constants are the defaults, flags win, a misspelled constant exits 2 naming the nearest
setting. Shard defaults come from the launcher (``utils.launcher``); ``--merge`` joins the shard
JSONs (``generate.candidate_shards``). Exit codes: 0 done, 2 bad configuration or input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

if __package__ in (None, ""):  # `python generate/candidates_cli.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generate.candidate_shards import merge_shards  # noqa: E402
from generate.candidates import GROUPS_JSON_NAME, CandidateConfig, generate_candidates  # noqa: E402
from generate.pipeline import OFFLOAD_MODES, GenerationConfigError  # noqa: E402
from utils.config_cli import Arg, build_config_parser, config_from_args  # noqa: E402
from utils.io_utils import JSONInputError  # noqa: E402
from utils.jobs import find_shards, launch_defaults  # noqa: E402
from utils.launcher import SHARD_HELP  # noqa: E402
from utils.log_filters import quiet_expected_messages  # noqa: E402
from utils.lora import LoraAdapterError  # noqa: E402

__all__ = ["CANDIDATE_ARGS", "build_arg_parser", "run_from_args", "main"]


CANDIDATE_ARGS: dict[str, dict[str, str | Arg]] = {
    "model and prompts": {
        "base_model": "diffusers folder or hub id",
        "kind": Arg("text-to-video or image-to-video", choices=("t2v", "i2v")),
        "prompts_json": "prompts or captions JSON",
        "output_dir": "output root of <group_id>/seed_<seed>.mp4",
        "groups_json": "groups JSON (none: <output_dir>/groups.json)",
        "num_prompts": "only the first N prompt entries (none: all)",
    },
    "sampling": {
        "num_seeds": "videos per prompt",
        "seed_start": "seeds seed_start .. seed_start + num_seeds - 1",
        "num_frames": "frames per video (none: the checkpoint's)",
        "height": "height in pixels (none: the checkpoint's)",
        "width": "width in pixels (none: the checkpoint's)",
        "num_inference_steps": "sampler steps",
        "guidance_scale": "classifier-free guidance scale",
        "fps": "frame rate of the written mp4",
        "lora_path": "generate with a LoRA adapter (e.g. for a 2nd round)",
        "lora_scale": "multiplier of the LoRA delta",
    },
    "hardware and sharding": {
        "num_shards": f"split the prompts into K shards ({SHARD_HELP})",
        "shard_index": "which shard this process generates",
        "gpu_id": "CUDA device index (none: $LOCAL_RANK, else 0)",
        "offload": Arg("CPU offloading of the pipeline", choices=tuple(OFFLOAD_MODES)),
    },
}


def build_arg_parser(
    constants: Mapping[str, Any] | None = None, description: str | None = None
) -> argparse.ArgumentParser:
    """Parser of ``01_generate.py`` / ``python -m generate.candidates_cli generate``: every
    :class:`CandidateConfig` field plus ``--merge``.

    Args:
        constants: a per-model script's settings (``{"BASE_MODEL": ..., "KIND": "i2v"}``, any case).
    The shard defaults come from the launcher environment (``utils.jobs.launch_defaults``); inconsistent
    launcher variables do not raise here: the parsed namespace carries ``launch_error`` and
    :func:`run_from_args` reports it (exit code 2).

    Raises:
        SystemExit(2): a constant names no setting (message names it and the nearest one).
    """
    launch, launch_error = launch_defaults()  # e.g. RANK=4 with WORLD_SIZE=4: reported by run_from_args
    p = build_config_parser(
        CandidateConfig, CANDIDATE_ARGS, constants=constants,
        defaults={"num_shards": launch.num_shards, "shard_index": launch.shard_index},
        description=description or "Generate DPO candidate videos (several seeds per prompt).",
    )  # fmt: skip
    p.set_defaults(launch_error=launch_error)
    p.add_argument("--merge", action="store_true",
                   help="do not generate: merge the shard JSONs of --groups_json into it")  # fmt: skip
    return p


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_expected_messages()


def run_from_args(args: argparse.Namespace) -> int:
    """Run generation (or ``--merge``) from parsed :func:`build_arg_parser` arguments; returns the exit code.

    0: done (bad prompt entries are recorded in the JSON's ``errors`` and logged, not fatal);
    2: configuration error (message on stderr).
    """
    _setup_logging()
    try:
        if getattr(args, "launch_error", None):
            raise GenerationConfigError(args.launch_error)
        if args.merge:
            groups_json = Path(args.groups_json) if args.groups_json else Path(args.output_dir) / GROUPS_JSON_NAME
            shards = find_shards(groups_json, args.num_shards if args.num_shards > 1 else None)
            merge_shards(shards, groups_json)
            print(f"merged {len(shards)} shard(s) -> {groups_json}")
            return 0
        cfg = config_from_args(CandidateConfig, args)
        generate_candidates(cfg)
    except (GenerationConfigError, LoraAdapterError, JSONInputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None, constants: Mapping[str, Any] | None = None) -> int:
    """``python -m generate.candidates_cli {generate,merge} ...``; returns the exit code.

    ``generate`` takes the flags of :func:`build_arg_parser`; ``merge`` takes shard files (or
    ``--output_dir`` / ``--groups_json`` to find them) and ``--out`` (default: the groups JSON).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        p = argparse.ArgumentParser(prog="python -m generate.candidates_cli merge",
                                    description="Join shard groups JSONs into one groups JSON.")
        p.add_argument("shards", nargs="*", help="shard JSON files (default: found next to --groups_json)")
        p.add_argument("--output_dir", default=".", help="output root holding groups.json and its shards")
        p.add_argument("--groups_json", default=None, help="default: <output_dir>/groups.json")
        p.add_argument("--num_shards", type=int, default=None)
        p.add_argument("--out", default=None, help="merged JSON (default: the groups JSON)")
        a = p.parse_args(argv[1:])
        _setup_logging()
        groups_json = Path(a.groups_json) if a.groups_json else Path(a.output_dir) / GROUPS_JSON_NAME
        try:
            shards = [Path(s) for s in a.shards] or find_shards(groups_json, a.num_shards)
            out = Path(a.out) if a.out else groups_json
            merge_shards(shards, out)
        except JSONInputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"merged {len(shards)} shard(s) -> {out}")
        return 0
    if argv[:1] == ["generate"]:
        argv = argv[1:]
    return run_from_args(build_arg_parser(constants).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
