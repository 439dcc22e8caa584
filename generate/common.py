"""Shared code of the CogVideoX generation scripts: devices, pipeline loading, defaults, prompts.

Used by ``generate/t2v_inference.py``, ``generate/i2v_inference.py`` and the candidate generator
(``generate/candidates.py``, run by ``train_dpo/*/01_generate.py``). The heavy lifting is done by
diffusers' ``CogVideoXPipeline`` (text-to-video, CogVideoX-5B and CogVideoX1.5-5B) and
``CogVideoXImageToVideoPipeline`` (image-to-video, CogVideoX-5B-I2V); this module only picks the
device and dtype, applies a LoRA adapter (``utils.lora``), and reads the generation size the
checkpoint was trained for.

Video size defaults (read from the checkpoint, not hard-coded):

* frames = ``transformer.config.sample_frames``;
* height/width = ``transformer.config.sample_height/sample_width`` x the VAE's spatial compression
  (``2 ** (len(vae.config.block_out_channels) - 1)`` = 8);
* except CogVideoX1.5, whose config carries a placeholder 300 x 300 latent size, see
  :func:`model_defaults`.

That gives CogVideoX-5B / 5B-I2V 49 frames 480x720, CogVideoX1.5-5B 81 frames 768x1360, and the
tiny test models (``utils.tiny_models``) their own sizes.

Wan2.2-TI2V-5B (``model_index.json`` ``_class_name`` ``WanPipeline``) is dispatched to
``generate/wan.py``: its pipelines, defaults (121 frames 704x1280, 50 steps, guidance 5.0, 24 fps)
and LoRA key conversion.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from utils.hub import ModelNotAvailableError, check_hub_model
from utils.io_utils import JSONInputError, read_json
from utils.launcher import launch_info
from utils.log_filters import quiet_expected_messages
from utils.lora import LoraAdapterError, load_lora_adapter, read_adapter_config, validate_adapter_dir

logger = logging.getLogger(__name__)

__all__ = [
    "KINDS",
    "OFFLOAD_MODES",
    "COGVIDEOX15_PLACEHOLDER_SAMPLE_SIZE",
    "COGVIDEOX15_TRAINED_SIZE",
    "GenerationConfigError",
    "ModelDefaults",
    "PromptEntry",
    "launcher_info",
    "select_device",
    "select_dtype",
    "model_defaults",
    "default_lora_scale",
    "read_model_defaults",
    "pipeline_defaults",
    "resolve_video_size",
    "load_pipeline",
    "load_image",
    "generate_video",
    "save_video",
    "load_prompt_entries",
    "build_inference_parser",
    "inference_main",
]

KINDS = ("t2v", "i2v")
OFFLOAD_MODES = ("none", "model", "sequential")

# THUDM/CogVideoX1.5-5B (and -I2V) ship transformer/config.json with sample_height = sample_width =
# 300 (a 2400 x 2400 px placeholder, not a training size); the model was trained at 768 x 1360 px,
# 81 frames (THUDM's model card and diffusers' CogVideoX1.5 docs). Recognised by patch_size_t being
# set (only CogVideoX1.5 has temporal patches) together with that placeholder.
COGVIDEOX15_PLACEHOLDER_SAMPLE_SIZE = 300
COGVIDEOX15_TRAINED_SIZE = (768, 1360)  # (height, width) in pixels
# The released CogVideoX1.5 inference (upstream generate/CogVideoX1.5-5B.py, --lora_weight 0.2) sets
# PEFT's LoRA scaling to 0.2 absolute (delta = 0.2 B A) instead of alpha / r = 2 as trained; our
# --lora_scale multiplies alpha / r, so its 1.5 default is 0.2 r / alpha (0.1 for the released r 64,
# alpha 128 adapter), see default_lora_scale.
COGVIDEOX15_RELEASED_LORA_SCALING = 0.2


class GenerationConfigError(ValueError):
    """Bad generation settings: unknown model folder, wrong model kind, invalid size, bad image."""


@dataclass(frozen=True)
class ModelDefaults:
    """Video size a checkpoint was trained for.

    Attributes:
        num_frames: pixel frames (``8k + 1``), e.g. 49.
        height, width: pixels, e.g. 480 x 720.
        frame_multiple: temporal VAE compression (4); valid frame counts are ``2 * frame_multiple * k + 1``
            (an odd number of latent frames, see :func:`resolve_video_size`).
        size_multiple: height/width must be multiples of this (VAE scale x patch size, 16).
        fixed_size: True when the transformer uses a learned position table (CogVideoX-5B-I2V): only
            this height/width and at most this many frames work.
        lora_scaling: absolute LoRA scaling (the factor on ``B @ A``) that the released inference
            applies to this model's adapter, or None for "as trained" (see :func:`default_lora_scale`).
        frame_step: valid frame counts are ``frame_step * k + 1``; None: ``2 * frame_multiple``
            (CogVideoX, see :func:`resolve_video_size`); Wan2.2: 4.
        lora_multiplier: default ``--lora_scale`` (multiplier of the trained ``alpha / r``) of the
            released inference, or None (Wan2.2-TI2V: 0.2, see ``generate/wan.py``).
        family: ``"cogvideox"`` or ``"wan"`` (``generate/wan.py``).
    """

    num_frames: int
    height: int
    width: int
    frame_multiple: int = 4
    size_multiple: int = 16
    fixed_size: bool = False
    lora_scaling: float | None = None
    frame_step: int | None = None
    lora_multiplier: float | None = None
    family: str = "cogvideox"


@dataclass
class PromptEntry:
    """One prompt of a prompts/captions JSON file.

    Attributes:
        key: the entry's id (dict key, list item ``"id"``, or the 5-digit list index).
        prompt: text prompt (None when missing).
        image_path: resolved image file for image-to-video (None for text-to-video or when missing).
        error: why the entry cannot be generated (None when it is fine); names the file and field.
    """

    key: str
    prompt: str | None
    image_path: str | None = None
    error: str | None = None


# ------------------------------------------------------------------------------------------------
# device, dtype, defaults
# ------------------------------------------------------------------------------------------------


def launcher_info():
    """``utils.launcher.launch_info()``, with inconsistent launcher variables as a configuration error.

    Raises:
        GenerationConfigError: e.g. ``RANK=4`` with ``WORLD_SIZE=4`` (the message names the variables).
    """
    try:
        return launch_info()
    except ValueError as e:
        raise GenerationConfigError(f"inconsistent launcher environment (torchrun/srun variables): {e}") from e


def select_device(gpu_id: int | None = None):
    """``cuda:<gpu_id>`` when CUDA is available, else CPU (with a warning if a GPU was asked for).

    ``gpu_id`` None: the launcher's local rank (``LOCAL_RANK`` of torchrun, ``SLURM_LOCALID`` of
    srun) modulo the visible devices, else 0.

    Returns:
        ``torch.device``.
    Raises:
        GenerationConfigError: ``gpu_id`` is not a visible CUDA device, or inconsistent launcher
            variables (:func:`launcher_info`).
    """
    import torch

    if torch.cuda.is_available():
        if gpu_id is None:  # under torchrun/srun: this process's GPU on its node (utils/launcher.py)
            local = launcher_info().local_rank
            idx = 0 if local is None else local % torch.cuda.device_count()
        else:
            idx = int(gpu_id)
        if not 0 <= idx < torch.cuda.device_count():
            raise GenerationConfigError(
                f"--gpu_id {idx}: only {torch.cuda.device_count()} CUDA device(s) visible"
            )
        return torch.device("cuda", idx)
    if gpu_id is not None:
        logger.warning("--gpu_id %s given but CUDA is not available; running on CPU", gpu_id)
    return torch.device("cpu")


def select_dtype(device) -> Any:
    """bfloat16 on CUDA (the dtype CogVideoX-5B was trained in), float32 on CPU (with a warning)."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.bfloat16
    logger.warning(
        "running on CPU in float32: fine for the tiny test models, but the real 5B models need a "
        "GPU (hours per video on CPU)"
    )
    return torch.float32


def model_defaults(transformer_config: Mapping[str, Any], vae_config: Mapping[str, Any]) -> ModelDefaults:
    """The frame count and resolution a checkpoint was trained for, from its configs.

    Args:
        transformer_config: ``transformer/config.json`` (or ``pipe.transformer.config``).
        vae_config: ``vae/config.json`` (or ``pipe.vae.config``).
    Returns:
        :class:`ModelDefaults`: frames = ``sample_frames``; height/width = ``sample_height/width`` x
        ``2 ** (len(block_out_channels) - 1)``; CogVideoX1.5's placeholder 300 x 300 latent size
        (``patch_size_t`` set) maps to its training size 768 x 1360.
    """
    scale = 2 ** (len(vae_config["block_out_channels"]) - 1)
    frames = int(transformer_config.get("sample_frames") or 49)
    sh, sw = int(transformer_config["sample_height"]), int(transformer_config["sample_width"])
    height, width = sh * scale, sw * scale
    if transformer_config.get("patch_size_t") and sh == sw == COGVIDEOX15_PLACEHOLDER_SAMPLE_SIZE:
        # CogVideoX1.5: the config's square sample size is a placeholder, see COGVIDEOX15_TRAINED_SIZE.
        height, width = COGVIDEOX15_TRAINED_SIZE
    is_t2v = transformer_config.get("in_channels") == transformer_config.get("out_channels")
    is_15_t2v = bool(transformer_config.get("patch_size_t")) and is_t2v
    lora_scaling = COGVIDEOX15_RELEASED_LORA_SCALING if is_15_t2v else None
    return ModelDefaults(
        num_frames=frames,
        height=height,
        width=width,
        frame_multiple=int(vae_config.get("temporal_compression_ratio") or 4),
        size_multiple=scale * int(transformer_config.get("patch_size") or 2),
        fixed_size=bool(transformer_config.get("use_learned_positional_embeddings")),
        lora_scaling=lora_scaling,
    )


def default_lora_scale(defaults: ModelDefaults, lora_path: str | os.PathLike | None) -> float:
    """The ``--lora_scale`` (multiplier of the trained ``alpha / r``) when none is given.

    1.0 (the adapter as trained), except for a model whose released inference used another
    absolute scaling (CogVideoX1.5 T2V: 0.2, upstream ``generate/CogVideoX1.5-5B.py:generate``):
    ``defaults.lora_scaling * r / alpha`` of the adapter at ``lora_path`` (0.1 for the released
    ``VideoGPA-T2V1.5-lora``, r 64, alpha 128), which gives the same ``0.2 B @ A``; or a model whose
    released inference multiplied ``alpha / r`` itself: ``defaults.lora_multiplier`` (Wan2.2-TI2V:
    0.2, upstream ``generate/Wan2.2-TI2V-5B.py --lora_weight``).

    Raises:
        LoraAdapterError: unreadable ``adapter_config.json``.
    """
    multiplier = getattr(defaults, "lora_multiplier", None)  # a multiplier of alpha / r (Wan2.2-TI2V: 0.2)
    if multiplier is not None and lora_path is not None:
        return float(multiplier)
    if defaults.lora_scaling is None or lora_path is None:
        return 1.0
    cfg = read_adapter_config(lora_path)
    return float(defaults.lora_scaling) * float(cfg.r) / float(cfg.lora_alpha)


def _check_base_model(base_model: str) -> None:
    p = Path(base_model)
    if p.exists():
        if not (p / "model_index.json").is_file():
            raise GenerationConfigError(f"{p} is not a diffusers pipeline folder (no model_index.json)")
        return
    parts = str(base_model).split("/")
    looks_like_hub_id = len(parts) == 2 and all(parts) and not str(base_model).startswith((".", "~"))
    if not looks_like_hub_id:
        raise GenerationConfigError(f"base model folder not found: {base_model}")
    try:
        check_hub_model(base_model, ("model_index.json",), "video model", "--base_model")
    except ModelNotAvailableError as e:
        raise GenerationConfigError(str(e)) from e


def read_model_defaults(base_model: str | os.PathLike) -> ModelDefaults:
    """:func:`model_defaults` of a pipeline folder or hub id, reading only its two config files.

    Raises:
        GenerationConfigError: the folder does not exist / is not a pipeline, or the configs can't be read.
    """
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

    from generate.wan import is_wan_model, wan_model_defaults

    _check_base_model(str(base_model))
    if is_wan_model(base_model):
        return wan_model_defaults()
    try:
        tcfg = CogVideoXTransformer3DModel.load_config(str(base_model), subfolder="transformer")
        vcfg = AutoencoderKLCogVideoX.load_config(str(base_model), subfolder="vae")
    except Exception as e:
        raise GenerationConfigError(f"cannot read the model configs of {base_model}: {e}") from e
    return model_defaults(tcfg, vcfg)


def pipeline_defaults(pipe) -> ModelDefaults:
    """:func:`model_defaults` of a loaded pipeline."""
    return model_defaults(pipe.transformer.config, pipe.vae.config)


def resolve_video_size(
    defaults: ModelDefaults,
    num_frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
) -> tuple[int, int, int]:
    """Fill unset values from ``defaults`` and validate them.

    Returns:
        ``(num_frames, height, width)``.
    Raises:
        GenerationConfigError: frames not ``8k + 1``, height/width not multiples of
            ``size_multiple``, or a size other than the trained one for a learned-position model.
    """
    f = int(num_frames if num_frames is not None else defaults.num_frames)
    h = int(height if height is not None else defaults.height)
    w = int(width if width is not None else defaults.width)
    # The VAE compresses 4 frames into one latent frame after the first; its decoder only restores
    # 1 + 4 (L - 1) frames for an odd number L of latent frames (an even L comes back as 4 L frames),
    # hence 8k + 1 (49 = 13 latent frames, 81 = 21).
    m = defaults.frame_step or 2 * defaults.frame_multiple
    if f < 1 or (f - 1) % m:
        raise GenerationConfigError(f"num_frames must be {m}k + 1 (e.g. {defaults.num_frames}), got {f}")
    s = defaults.size_multiple
    if h < s or w < s or h % s or w % s:
        raise GenerationConfigError(f"height and width must be positive multiples of {s}, got {h}x{w}")
    if defaults.fixed_size and ((h, w) != (defaults.height, defaults.width) or f > defaults.num_frames):
        raise GenerationConfigError(
            f"this model has a learned position table: only {defaults.height}x{defaults.width} and at "
            f"most {defaults.num_frames} frames are possible, got {f} frames {h}x{w}"
        )
    return f, h, w


# ------------------------------------------------------------------------------------------------
# pipeline
# ------------------------------------------------------------------------------------------------


def _vae_tiling_is_exact(vae) -> bool:
    """True when diffusers' tiled encode/decode of this VAE returns the input size.

    diffusers' CogVideoX tiled decode steps over latent tiles by ``int(tile_latent * (1 - overlap))``
    and crops sample tiles to ``tile_sample - int(tile_sample * overlap)``; these agree for the real
    VAE (tiles of 240 x 360 px) but not for very small VAEs (the tiny test models), where tiling
    would return a frame of the wrong size.
    """
    try:
        scale = 2 ** (len(vae.config.block_out_channels) - 1)
        checks = []
        for dim in ("height", "width"):
            ts = getattr(vae, f"tile_sample_min_{dim}")
            tl = getattr(vae, f"tile_latent_min_{dim}")
            ov = getattr(vae, f"tile_overlap_factor_{dim}")
            checks.append(int(tl * (1 - ov)) * scale == ts - int(ts * ov))  # decode
            checks.append(int(ts * (1 - ov)) == (tl - int(tl * ov)) * scale)  # encode
        return all(checks)
    except (AttributeError, TypeError):
        return True


def load_pipeline(
    base_model: str | os.PathLike,
    kind: str = "t2v",
    *,
    gpu_id: int | None = None,
    dtype=None,
    lora_path: str | os.PathLike | None = None,
    lora_scale: float = 1.0,
    merge_lora: bool = False,
    offload: str = "none",
    progress_bar: bool = True,
):
    """Load a CogVideoX or Wan2.2-TI2V-5B pipeline, optionally with a LoRA adapter, ready to generate.

    Args:
        base_model: diffusers pipeline folder or hub id (``THUDM/CogVideoX-5b``, ``THUDM/CogVideoX-5b-I2V``,
            ``THUDM/CogVideoX1.5-5B``, ``Wan-AI/Wan2.2-TI2V-5B-Diffusers``, a tiny model from
            ``utils.tiny_models``). Wan folders (``model_index.json``) go to ``generate/wan.py``.
        kind: ``"t2v"`` (``CogVideoXPipeline``; ``WanPipeline``) or ``"i2v"``
            (``CogVideoXImageToVideoPipeline``; ``WanImageToVideoPipeline``).
        gpu_id: CUDA device index (default 0); CPU when CUDA is unavailable.
        dtype: torch dtype; default bf16 on CUDA, fp32 on CPU (:func:`select_dtype`).
        lora_path: PEFT LoRA adapter folder (see ``utils.lora``; Wan: also original-Wan key names,
            ``utils.wan_lora``); applied to the transformer.
        lora_scale: multiplier of the LoRA delta (0 = base model).
        merge_lora: fold the LoRA into the weights (faster inference, cannot be undone).
        offload: ``"none"`` (whole pipeline on the GPU), ``"model"`` (``enable_model_cpu_offload``,
            one component on the GPU at a time) or ``"sequential"`` (``enable_sequential_cpu_offload``,
            least memory, slowest). Ignored on CPU.
        progress_bar: show diffusers' per-step progress bar.
    Returns:
        The pipeline; VAE slicing on and VAE tiling on (CogVideoX, when exact for this VAE, see
        :func:`_vae_tiling_is_exact`). ``pipe.videogpa_device`` holds the execution device.
    Raises:
        GenerationConfigError: unknown kind/offload, missing model folder, a model of the other kind
            (i2v needs transformer in_channels = 2 x VAE latent channels, t2v equal), load failure.
        LoraAdapterError: bad ``lora_path``.
    """
    if kind not in KINDS:
        raise GenerationConfigError(f"kind must be one of {KINDS}, got {kind!r}")
    if offload not in OFFLOAD_MODES:
        raise GenerationConfigError(f"offload must be one of {OFFLOAD_MODES}, got {offload!r}")
    _check_base_model(str(base_model))
    if lora_path is not None:
        validate_adapter_dir(lora_path)  # fail before the (slow) model load
    device = select_device(gpu_id)
    dtype = dtype or select_dtype(device)

    from generate.wan import is_wan_model, load_wan_pipeline

    is_wan = is_wan_model(base_model)
    if is_wan:  # Wan2.2-TI2V-5B: both kinds from one folder, own LoRA key names
        pipe, apply_lora = load_wan_pipeline(base_model, kind, dtype)
    else:
        pipe, apply_lora = _load_cogvideox_pipeline(base_model, kind, dtype), load_lora_adapter

    if lora_path is not None:
        apply_lora(pipe.transformer, lora_path, scale=lora_scale, merge=merge_lora)

    pipe.vae.enable_slicing()
    # Wan: decoded whole, as in its model card and the released run
    if not is_wan and _vae_tiling_is_exact(pipe.vae):
        pipe.vae.enable_tiling()
    else:
        logger.debug("VAE tiling left off (Wan, or the tile geometry of this small VAE is not exact)")

    if device.type == "cuda" and offload == "model":
        pipe.enable_model_cpu_offload(gpu_id=device.index)
    elif device.type == "cuda" and offload == "sequential":
        pipe.enable_sequential_cpu_offload(gpu_id=device.index)
    else:
        if offload != "none":
            logger.warning("--offload %s has no effect on CPU", offload)
        pipe.to(device)
    pipe.set_progress_bar_config(disable=not progress_bar, leave=False)
    pipe.videogpa_device = device
    pipe.videogpa_kind = kind
    pipe.videogpa_base_model = str(base_model)
    return pipe


def _load_cogvideox_pipeline(base_model, kind: str, dtype):
    from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline

    cls = CogVideoXImageToVideoPipeline if kind == "i2v" else CogVideoXPipeline
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = cls.from_pretrained(str(base_model), torch_dtype=dtype)
    except Exception as e:
        raise GenerationConfigError(f"cannot load {cls.__name__} from {base_model}: {e}") from e

    in_ch = int(pipe.transformer.config.in_channels)
    latent = int(pipe.vae.config.latent_channels)
    want = 2 * latent if kind == "i2v" else latent
    if in_ch != want:
        other = "text-to-video" if kind == "i2v" else "image-to-video"
        raise GenerationConfigError(
            f"{base_model} looks like a {other} model (transformer in_channels {in_ch}, VAE latent "
            f"channels {latent}); use the {'t2v' if kind == 'i2v' else 'i2v'} script for it"
        )
    return pipe


def load_image(path: str | os.PathLike, height: int, width: int):
    """Read an image as RGB, centre-crop it to ``width/height`` aspect and resize (bicubic) to that size.

    Returns:
        ``PIL.Image.Image`` RGB of size ``(width, height)``.
    Raises:
        GenerationConfigError: missing or unreadable file (the message names it).
    """
    from PIL import Image, UnidentifiedImageError

    from utils.video_utils import center_crop_resize

    p = Path(path)
    if not p.is_file():
        raise GenerationConfigError(f"image not found: {p}")
    try:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
        raise GenerationConfigError(f"cannot read image {p}: {e}") from e
    return Image.fromarray(center_crop_resize(arr, int(height), int(width)))


def generate_video(
    pipe,
    prompt: str,
    *,
    image=None,
    seed: int,
    num_frames: int,
    height: int,
    width: int,
    num_inference_steps: int = 50,
    guidance_scale: float = 6.0,
    negative_prompt: str | None = None,
) -> np.ndarray:
    """Run the pipeline once.

    The initial noise comes from a CPU ``torch.Generator`` seeded with ``seed``, so a seed gives the
    same noise on every device.

    Args:
        pipe: from :func:`load_pipeline`.
        prompt: text prompt.
        image: first frame for image-to-video (``PIL.Image`` of size ``(width, height)``, see
            :func:`load_image`); must be None for text-to-video.
        seed: noise seed.
        num_frames, height, width: video size (see :func:`resolve_video_size`).
        num_inference_steps: DDIM steps (50 in the paper setup).
        guidance_scale: classifier-free guidance scale (6.0).
        negative_prompt: optional negative prompt; None: the pipeline's ``videogpa_negative_prompt``
            (Wan2.2: Wan's default, ``generate/wan.py``), else none (CogVideoX).
    Returns:
        uint8 array ``[num_frames, height, width, 3]`` RGB, 0..255.
    Raises:
        GenerationConfigError: an image for a text-to-video pipeline, or none for image-to-video.
    """
    import torch

    if negative_prompt is None:
        negative_prompt = getattr(pipe, "videogpa_negative_prompt", None)
    kwargs = dict(
        prompt=prompt,
        negative_prompt=negative_prompt,
        num_frames=int(num_frames),
        height=int(height),
        width=int(width),
        num_inference_steps=int(num_inference_steps),
        guidance_scale=float(guidance_scale),
        generator=torch.Generator(device="cpu").manual_seed(int(seed)),
        output_type="np",
    )
    is_i2v = "image" in inspect.signature(pipe.__call__).parameters
    if is_i2v and image is None:
        raise GenerationConfigError("image-to-video needs an image")
    if image is not None and not is_i2v:
        raise GenerationConfigError(f"{type(pipe).__name__} is a text-to-video pipeline; it takes no image")
    if is_i2v:
        kwargs["image"] = image
    with torch.inference_mode():
        frames = pipe(**kwargs).frames[0]
    frames = np.asarray(frames, dtype=np.float32)
    return np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)


def save_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 8) -> Path:
    """Write uint8 ``[T, H, W, 3]`` frames to ``path`` (mp4, atomic) with ``utils.video_utils.write_video``."""
    from utils.video_utils import write_video

    return Path(write_video(path, frames, fps=fps))


# ------------------------------------------------------------------------------------------------
# prompts
# ------------------------------------------------------------------------------------------------


def _resolve_image(image: Any, json_path: Path, where: str) -> tuple[str | None, str | None]:
    """(resolved path, error). Relative paths: against the JSON file's folder, then the working dir."""
    if image is None or (isinstance(image, str) and not image.strip()):
        return None, f"{where}: missing 'image_prompt' (image-to-video needs a first frame)"
    if not isinstance(image, str):
        return None, f"{where}: 'image_prompt' must be a string path, got {type(image).__name__}"
    p = Path(image).expanduser()
    candidates = [p] if p.is_absolute() else [json_path.parent / p, Path.cwd() / p]
    for c in candidates:
        if c.is_file():
            return str(c.resolve()), None
    tried = " or ".join(str(c) for c in candidates)
    return None, f"{where}: image file not found: {tried}"


def load_prompt_entries(
    path: str | os.PathLike, num_prompts: int | None = None, need_image: bool = False
) -> list[PromptEntry]:
    """Read prompts from a JSON file in any of the supported formats.

    Formats:
        * ``{"<id>": {"text_prompt": "...", "image_prompt": "path.png"}, ...}`` (inference format)
        * ``[{"id": "<id>", "text_prompt": "...", "image_prompt": "..."}, ...]`` (``id`` optional:
          the 5-digit index is used) or a list of plain strings
        * ``{"<key>": "<caption>", ...}`` (captions JSON, e.g. DL3DV ``dl3dv_captions_1K.json``)

    Image paths may be absolute or relative to the JSON file's folder (then the working directory);
    they are only looked at when ``need_image`` (image-to-video).

    Args:
        path: the JSON file.
        num_prompts: keep only the first N entries (None = all).
        need_image: require an existing image file per entry.
    Returns:
        One :class:`PromptEntry` per entry, in file order. Bad entries (no text, no/missing image,
        wrong type) are returned with ``error`` set, naming the file and field, so callers can
        record them and go on.
    Raises:
        JSONInputError: missing/unreadable/malformed file, or a top level that is neither an object
            nor a list.
    """
    path = Path(path)
    data = read_json(path)
    if isinstance(data, dict):
        items = [(str(k), v) for k, v in data.items()]
    elif isinstance(data, list):
        items = []
        for i, v in enumerate(data):
            key = v.get("id") if isinstance(v, dict) else None
            items.append((str(key) if key not in (None, "") else f"{i:05d}", v))
    else:
        raise JSONInputError(f"{path}: expected a JSON object or list of prompts, got {type(data).__name__}")
    if num_prompts is not None:
        items = items[: max(0, int(num_prompts))]
    out = []
    for key, value in items:
        where = f"{path} entry {key!r}"
        if isinstance(value, str):
            text, image = value, None
        elif isinstance(value, dict):
            text, image = value.get("text_prompt"), value.get("image_prompt")
        else:
            out.append(PromptEntry(key, None, None, f"{where}: expected a caption string or an object, "
                                                   f"got {type(value).__name__}"))
            continue
        if not isinstance(text, str) or not text.strip():
            out.append(PromptEntry(key, None, None, f"{where}: missing or empty 'text_prompt'"))
            continue
        entry = PromptEntry(key, text.strip())
        if need_image:
            entry.image_path, entry.error = _resolve_image(image, path, where)
        out.append(entry)
    return out


# ------------------------------------------------------------------------------------------------
# command line of generate/t2v_inference.py and generate/i2v_inference.py
# ------------------------------------------------------------------------------------------------


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after each help text, except for None defaults (their help says it)."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def build_inference_parser(kind: str, defaults: Mapping[str, Any]) -> argparse.ArgumentParser:
    """The argparse parser of the inference scripts.

    Args:
        kind: ``"t2v"`` (positional PROMPT) or ``"i2v"`` (positional PROMPT IMAGE).
        defaults: the script's constants: ``base_model``, ``num_inference_steps``, ``guidance_scale``,
            ``seed``, ``fps``.
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
    p.add_argument("--base_model", default=defaults["base_model"], help="diffusers folder or hub id")
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
    p.add_argument("--seed", type=int, default=defaults["seed"], help="random seed of the initial noise")
    p.add_argument("--num_inference_steps", type=int, default=defaults["num_inference_steps"],
                   help="denoising steps")
    p.add_argument("--guidance_scale", type=float, default=defaults["guidance_scale"],
                   help="classifier-free guidance scale")
    p.add_argument("--num_frames", type=int, default=None,
                   help="default: the checkpoint's (49; 81 for 1.5; 121 for Wan2.2)")
    p.add_argument("--height", type=int, default=None,
                   help="default: the checkpoint's (480; 768 for 1.5; 704 for Wan2.2)")
    p.add_argument("--width", type=int, default=None,
                   help="default: the checkpoint's (720; 1360 for 1.5; 1280 for Wan2.2)")
    p.add_argument("--fps", type=float, default=defaults["fps"], help="frame rate of the written mp4")
    p.add_argument("--offload", choices=OFFLOAD_MODES, default="none", help="CPU offload to save GPU memory")
    from generate.search_cli import add_search_arguments  # --best_of, --search beam, --verifier ...

    add_search_arguments(p, defaults)
    return p


def inference_main(kind: str, argv: Sequence[str] | None, defaults: Mapping[str, Any]) -> int:
    """Body of the inference scripts. Writes ``<output_dir>/<name>_seed<seed>.mp4`` per prompt.

    ``<name>`` is the prompt's slug (t2v) or the image file's stem (i2v). Beside each video its
    settings record ``<name>_seed<seed>.json`` (``generate/outputs.py``; ``--skip_existing`` keeps
    a video only when the record matches); a search writes ``<name>_seed<seed>_<tag>.mp4`` and
    ``.search.json`` instead (``generate/search_cli.py``).

    Returns:
        0 when every video was written, 1 when some batch entries failed (each reported), 2 for a
        configuration error (bad model folder, bad ``--lora_path``, bad size, bad JSON): the error
        is printed to stderr and nothing is generated.
    """
    args = build_inference_parser(kind, defaults).parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_expected_messages()

    def reparse(family: Mapping[str, Any]) -> argparse.Namespace:
        return build_inference_parser(kind, {**defaults, **family}).parse_args(argv)

    try:
        return _run_inference(kind, args, reparse)
    except (GenerationConfigError, LoraAdapterError, JSONInputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run_inference(kind: str, args: argparse.Namespace, reparse=None) -> int:
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
    from generate.outputs import (generation_record, output_name, output_path, record_path, save_video_with_record,
                                  stale_reason)
    from generate.search_cli import searcher_from_args

    searcher = searcher_from_args(args)  # None: plain generation
    out_dir = Path(args.output_dir)
    model = read_model_defaults(args.base_model)
    if model.family == "wan" and reparse is not None:
        from generate.wan import WAN_SCRIPT_DEFAULTS

        args = reparse(WAN_SCRIPT_DEFAULTS)  # Wan's steps / guidance / fps where the command line sets none
    if searcher is not None and model.family != "cogvideox":
        raise GenerationConfigError(
            f"--best_of / --search are implemented for CogVideoX only, not {args.base_model}")
    num_frames, height, width = resolve_video_size(model, args.num_frames, args.height, args.width)
    lora_scale = args.lora_scale
    if lora_scale is None:
        lora_scale = default_lora_scale(model, args.lora_path)
        if lora_scale != 1.0:
            logger.info("LoRA scale %g (the released absolute scaling %g; --lora_scale overrides)",
                        lora_scale, model.lora_scaling)  # fmt: skip

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
