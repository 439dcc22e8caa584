"""Loading and running a diffusers video pipeline (CogVideoX, Wan2.2-TI2V-5B) for generation.

The contract of :func:`load_pipeline`: a ``CogVideoXPipeline`` (text-to-video: CogVideoX-5B,
CogVideoX1.5-5B) or ``CogVideoXImageToVideoPipeline`` (image-to-video: CogVideoX-5B-I2V), or for a
Wan2.2-TI2V-5B folder ``WanPipeline`` / ``WanImageToVideoPipeline`` (``generate/wan.py``), of the
asked kind, on the device of :func:`select_device`, in the dtype of ``utils.device.compute_dtype``,
with an optional LoRA adapter applied (``utils.lora``) and the VAE memory savers of
``utils.vae_tiling`` on. :func:`generate_video` runs it once from a CPU-seeded noise and returns
uint8 frames. Bad settings raise :class:`GenerationConfigError` (exit code 2 in the scripts).

Used by the inference scripts (``generate/inference_cli.py``), the candidate generator
(``generate/candidates.py``), test-time search, evaluation and the benchmarks.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from generate.wan import is_wan_model, load_wan_pipeline
from utils.device import compute_dtype
from utils.frames import center_crop_resize
from utils.hub import ModelNotAvailableError, check_hub_model
from utils.launcher import launch_info
from utils.lora import validate_adapter_dir
from utils.lora_apply import load_lora_adapter
from utils.model_facts import pipeline_takes_image, requires_image_latents
from utils.vae_tiling import enable_vae_memory_savers
from utils.video_writer import write_video

logger = logging.getLogger(__name__)

__all__ = [
    "KINDS",
    "OFFLOAD_MODES",
    "GenerationConfigError",
    "launcher_info",
    "select_device",
    "check_base_model",
    "load_pipeline",
    "load_image",
    "generate_video",
    "save_video",
]

KINDS = ("t2v", "i2v")
OFFLOAD_MODES = ("none", "model", "sequential")


class GenerationConfigError(ValueError):
    """Bad generation settings: unknown model folder, wrong model kind, invalid size, bad image."""


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


def check_base_model(base_model: str) -> None:
    """Fail early when ``base_model`` is neither a diffusers pipeline folder nor an available hub id.

    Raises:
        GenerationConfigError: a folder without ``model_index.json``, a missing path, or a hub id
            that is not downloaded and cannot be (``utils.hub.check_hub_model``).
    """
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
        dtype: torch dtype; default ``utils.device.compute_dtype`` of the device (bf16 from sm_80 on,
            fp16 on older GPUs, fp32 on CPU, with a warning that the real models need a GPU).
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
        ``utils.vae_tiling.vae_tiling_is_exact``). ``pipe.videogpa_device`` holds the execution device.
    Raises:
        GenerationConfigError: unknown kind/offload, missing model folder, a model of the other kind
            (``utils.model_facts.requires_image_latents`` of its transformer), load failure.
        LoraAdapterError: bad ``lora_path``.
    """
    if kind not in KINDS:
        raise GenerationConfigError(f"kind must be one of {KINDS}, got {kind!r}")
    if offload not in OFFLOAD_MODES:
        raise GenerationConfigError(f"offload must be one of {OFFLOAD_MODES}, got {offload!r}")
    check_base_model(str(base_model))
    if lora_path is not None:
        validate_adapter_dir(lora_path)  # fail before the (slow) model load
    device = select_device(gpu_id)
    if dtype is None:
        dtype = compute_dtype(device)
        if device.type == "cpu":
            logger.warning(
                "running on CPU in float32: fine for the tiny test models, but the real 5B models need a "
                "GPU (hours per video on CPU)"
            )
    is_wan = is_wan_model(base_model)
    if is_wan:  # Wan2.2-TI2V-5B: both kinds from one folder, its own LoRA key names
        pipe, apply_lora = load_wan_pipeline(base_model, kind, dtype)
    else:
        pipe, apply_lora = _load_cogvideox_pipeline(base_model, kind, dtype), load_lora_adapter

    if lora_path is not None:
        apply_lora(pipe.transformer, lora_path, scale=lora_scale, merge=merge_lora)

    # Wan: decoded whole (no tiling), as in its model card and the released run
    enable_vae_memory_savers(pipe.vae, tiling=not is_wan)

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
    """``CogVideoXPipeline`` / ``CogVideoXImageToVideoPipeline`` of ``base_model`` in ``dtype``;
    GenerationConfigError for a load failure or a model of the other kind."""
    # diffusers takes seconds to import: --help and configuration errors answer without it
    from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline

    cls = CogVideoXImageToVideoPipeline if kind == "i2v" else CogVideoXPipeline
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = cls.from_pretrained(str(base_model), torch_dtype=dtype)
    except Exception as e:
        raise GenerationConfigError(f"cannot load {cls.__name__} from {base_model}: {e}") from e

    tcfg = pipe.transformer.config
    if requires_image_latents(tcfg) != (kind == "i2v"):
        other = "text-to-video" if kind == "i2v" else "image-to-video"
        raise GenerationConfigError(
            f"{base_model} looks like a {other} model (transformer in_channels {tcfg.in_channels}, "
            f"out_channels {tcfg.out_channels}); use the {'t2v' if kind == 'i2v' else 'i2v'} script for it"
        )
    return pipe


def load_image(path: str | os.PathLike, height: int, width: int):
    """Read an image as RGB, centre-crop it to ``width/height`` aspect and resize (bicubic) to that size.

    Returns:
        ``PIL.Image.Image`` RGB of size ``(width, height)``.
    Raises:
        GenerationConfigError: missing or unreadable file (the message names it).
    """
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
    is_i2v = pipeline_takes_image(pipe)
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
    """Write uint8 ``[T, H, W, 3]`` frames to ``path`` (mp4, atomic) with ``utils.video_writer.write_video``."""
    return Path(write_video(path, frames, fps=fps))
