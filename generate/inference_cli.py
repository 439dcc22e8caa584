"""Command line of the inference scripts ``generate/t2v_inference.py`` and ``generate/i2v_inference.py``.

Each script sets its constants (only what differs from this parser's defaults: ``BASE_MODEL``; any
option of ``--help`` can be set as an UPPER_CASE constant, ``SEED = 7``, and a name that is no option
exits 2 naming the nearest one) and calls :func:`inference_main`, which parses the arguments,
reads the prompts (``generate.prompts``), resolves the video size (``generate.model_defaults``),
loads the pipeline once (``generate.pipeline``) and writes one mp4 plus settings record per
prompt (``generate.outputs``), or runs a test-time search (``generate.search_cli``). Exit codes:
0 all written, 1 some entries failed, 2 bad configuration.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from generate.model_defaults import default_lora_scale, read_model_defaults, resolve_video_size
from generate.outputs import (generation_record, output_name, output_path, record_path, save_video_with_record,
                              stale_reason)
from generate.pipeline import OFFLOAD_MODES, GenerationConfigError, generate_video, load_image, load_pipeline
from generate.prompts import PromptEntry, load_prompt_entries
from generate.search_cli import add_search_arguments, searcher_from_args
from generate.wan import WAN_SCRIPT_DEFAULTS
from utils.config_cli import apply_constants
from utils.io_utils import JSONInputError
from utils.log_filters import quiet_expected_messages
from utils.lora import LoraAdapterError, validate_adapter_dir

logger = logging.getLogger(__name__)

__all__ = ["build_inference_parser", "inference_main"]


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after each help text, except for None defaults (their help says it)."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def build_inference_parser(kind: str, constants: Mapping[str, Any] | None = None) -> argparse.ArgumentParser:
    """The argparse parser of the inference scripts.

    Args:
        kind: ``"t2v"`` (positional PROMPT) or ``"i2v"`` (positional PROMPT IMAGE).
        constants: the script's constants (``{"BASE_MODEL": ..., "SEED": 7}``): defaults of the options
            of the same name (:func:`utils.config_cli.apply_constants`).

    Raises:
        SystemExit(2): a constant names no option (message naming it and the nearest option).
    """
    what = "text-to-video" if kind == "t2v" else "image-to-video"
    p = argparse.ArgumentParser(
        description=f"CogVideoX / Wan2.2-TI2V {what} inference, optionally with a VideoGPA LoRA adapter.",
        formatter_class=_DefaultsFormatter,
    )
    p.add_argument("prompt", nargs="?", help="text prompt (or use --prompt_json)")
    if kind == "i2v":
        p.add_argument("image", nargs="?", help="first-frame image (or use --prompt_json)")
    p.add_argument("--prompt_json", help='batch mode: {"id": {"text_prompt": ..., "image_prompt": ...}} or a list')
    p.add_argument("--num_prompts", type=int, default=None, help="batch mode: only the first N prompts")
    p.add_argument("--output_dir", default="./outputs", help="folder of the videos")
    p.add_argument("--base_model", default=None, help="diffusers folder or hub id (the script's BASE_MODEL)")
    example = "checkpoints/VideoGPA-I2V-lora" if kind == "i2v" else "checkpoints/VideoGPA-T2V-lora"
    p.add_argument("--lora_path", default=None, help=f"PEFT LoRA adapter folder, e.g. {example}")
    p.add_argument("--lora_scale", type=float, default=None,
                   help="multiplier of the LoRA delta (0 = base model); default 1, CogVideoX1.5 as released "
                   "(absolute scaling 0.2: 0.1 for r 64, alpha 128), Wan2.2-TI2V as released "
                   "(0.2)")  # fmt: skip
    p.add_argument("--merge_lora", action="store_true", help="fold the LoRA into the weights")
    p.add_argument("--gpu_id", type=int, default=None,
                   help="CUDA device index (default: $LOCAL_RANK / $SLURM_LOCALID under torchrun / srun, else 0)")
    p.add_argument("--skip_existing", action="store_true",
                   help="resume a batch: keep a video (or search result) whose settings record matches this "
                   "run's settings, that decodes and is newer than the adapter")
    p.add_argument("--seed", type=int, default=42, help="random seed of the initial noise")
    p.add_argument("--num_inference_steps", type=int, default=50,
                   help="denoising steps")
    p.add_argument("--guidance_scale", type=float, default=6.0,
                   help="classifier-free guidance scale")
    p.add_argument("--num_frames", type=int, default=None,
                   help="default: the checkpoint's (49; 81 for 1.5; 121 for Wan2.2)")
    p.add_argument("--height", type=int, default=None,
                   help="default: the checkpoint's (480; 768 for 1.5; 704 for Wan2.2)")
    p.add_argument("--width", type=int, default=None,
                   help="default: the checkpoint's (720; 1360 for 1.5; 1280 for Wan2.2)")
    p.add_argument("--fps", type=float, default=8, help="frame rate of the written mp4")
    p.add_argument("--offload", choices=OFFLOAD_MODES, default="none", help="CPU offload to save GPU memory")
    add_search_arguments(p)  # --best_of, --search beam, --verifier ...
    apply_constants(p, constants or {})
    return p


def inference_main(kind: str, argv: Sequence[str] | None, constants: Mapping[str, Any]) -> int:
    """Body of the inference scripts. Writes ``<output_dir>/<name>_seed<seed>.mp4`` per prompt.

    ``constants``: the script's UPPER_CASE constants (``utils.scripts.script_constants``), defaults of
    the options of the same name; the command line wins.

    ``<name>`` is the prompt's slug (t2v) or the image file's stem (i2v). Beside each video its
    settings record ``<name>_seed<seed>.json`` (``generate/outputs.py``; ``--skip_existing`` keeps
    a video only when the record matches); a search writes ``<name>_seed<seed>_<tag>.mp4`` and
    ``.search.json`` instead (``generate/search_cli.py``).

    Returns:
        0 when every video was written, 1 when some batch entries failed (each reported), 2 for a
        configuration error (bad model folder, bad ``--lora_path``, bad size, bad JSON): the error
        is printed to stderr and nothing is generated.

    Raises:
        SystemExit(2): a constant names no option (before anything is loaded), or a bad flag.
    """
    parser = build_inference_parser(kind)
    constants = apply_constants(parser, constants)  # lower-case keys
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_expected_messages()

    def reparse(family: Mapping[str, Any]) -> argparse.Namespace:
        return build_inference_parser(kind, {**constants, **family}).parse_args(argv)

    try:
        return _run_inference(kind, args, reparse)
    except (GenerationConfigError, LoraAdapterError, JSONInputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run_inference(kind: str, args: argparse.Namespace, reparse) -> int:
    """``reparse(family_defaults)``: the command line parsed again with a model family's defaults."""
    image_arg = getattr(args, "image", None)
    if args.prompt_json:
        if args.prompt or image_arg:
            raise GenerationConfigError("give either PROMPT" + (" IMAGE" if kind == "i2v" else "")
                                        + " or --prompt_json, not both")
        entries = load_prompt_entries(args.prompt_json, args.num_prompts, need_image=(kind == "i2v"))
    else:
        if not args.prompt:
            raise GenerationConfigError("no prompt: give PROMPT" + (" IMAGE" if kind == "i2v" else "")
                                        + " or --prompt_json")
        entry = PromptEntry("cli", args.prompt)
        if kind == "i2v":
            if not image_arg:
                raise GenerationConfigError("image-to-video needs an IMAGE argument")
            if not Path(image_arg).is_file():
                raise GenerationConfigError(f"image not found: {image_arg}")
            entry.image_path = str(image_arg)
        entries = [entry]
    if args.lora_path is not None:
        validate_adapter_dir(args.lora_path)
    searcher = searcher_from_args(args)  # None: plain generation
    if not args.base_model:
        raise GenerationConfigError("no base model: set BASE_MODEL in the script or give --base_model")
    out_dir = Path(args.output_dir)
    model = read_model_defaults(args.base_model)
    if model.family == "wan":
        args = reparse(WAN_SCRIPT_DEFAULTS)  # Wan's steps / guidance / fps where the command line sets none
    if searcher is not None and model.family != "cogvideox":
        raise GenerationConfigError(
            f"--best_of / --search are implemented for CogVideoX only, not {args.base_model}")
    num_frames, height, width = resolve_video_size(model, args.num_frames, args.height, args.width)
    lora_scale = args.lora_scale
    if lora_scale is None:
        lora_scale = default_lora_scale(model, args.lora_path)
        if lora_scale != 1.0:
            logger.info("LoRA scale %g (the released inference's; --lora_scale overrides)", lora_scale)

    def record(entry: PromptEntry) -> dict[str, Any]:
        return generation_record(
            kind=kind, prompt=entry.prompt, image_path=entry.image_path, base_model=args.base_model,
            lora_path=args.lora_path, lora_scale=lora_scale, seed=args.seed,
            num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
            num_frames=num_frames, height=height, width=width, fps=args.fps,
        )  # fmt: skip

    def target(entry: PromptEntry) -> tuple[Path, Path, dict[str, Any]]:
        """(video, its settings record, the settings it must match) of this entry."""
        name = output_name(kind, entry.prompt, entry.image_path)
        if searcher is not None:
            return searcher.targets(out_dir, name, args.seed, record(entry), args.num_inference_steps)
        video = output_path(out_dir, name, args.seed)
        return video, record_path(video), record(entry)

    if args.skip_existing:
        todo = []
        for entry in entries:
            if entry.error:
                todo.append(entry)
                continue
            video, rec, expected = target(entry)
            why = stale_reason(video, rec, expected, args.lora_path)
            if why is None:
                logger.info("kept %s (its settings record %s matches this run)", video, rec.name)
            else:
                if video.exists() or rec.exists():
                    logger.info("generating %s again: %s", video, why)
                todo.append(entry)
        entries = todo
        if not entries:
            return 0
    pipe = load_pipeline(
        args.base_model,
        kind,
        gpu_id=args.gpu_id,
        lora_path=args.lora_path,
        lora_scale=lora_scale,
        merge_lora=args.merge_lora,
        offload=args.offload,
    )
    failures = 0
    for entry in entries:
        if entry.error:
            logger.error("skipping: %s", entry.error)
            failures += 1
            continue
        image = None
        if kind == "i2v":
            try:
                image = load_image(entry.image_path, height, width)
            except GenerationConfigError as e:
                logger.error("skipping %r: %s", entry.key, e)
                failures += 1
                continue
        video, _rec, expected = target(entry)
        if searcher is not None:
            failures += not searcher.generate_and_save(
                pipe, prompt=entry.prompt, image=image, video_path=video, expected=expected, seed=args.seed,
                fps=args.fps, num_frames=num_frames, height=height, width=width,
                num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
            )  # fmt: skip
            continue
        frames = generate_video(
            pipe,
            entry.prompt,
            image=image,
            seed=args.seed,
            num_frames=num_frames,
            height=height,
            width=width,
            num_inference_steps=args.num_inference_steps,
            guidance_scale=args.guidance_scale,
        )
        path = save_video_with_record(frames, video, expected, fps=args.fps)
        print(f"wrote {path} ({frames.shape[0]} frames, {frames.shape[1]}x{frames.shape[2]})")
    return 1 if failures else 0
