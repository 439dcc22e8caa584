"""The video size (and LoRA scaling) a CogVideoX checkpoint was trained for, read from its configs.

Defaults are read from the checkpoint, not hard-coded:

* frames = ``transformer.config.sample_frames``;
* height/width = ``transformer.config.sample_height/sample_width`` x the VAE's spatial compression
  (``2 ** (len(vae.config.block_out_channels) - 1)`` = 8);
* except CogVideoX1.5, whose config carries a placeholder 300 x 300 latent size, see
  :func:`model_defaults`.

That gives CogVideoX-5B / 5B-I2V 49 frames 480x720, CogVideoX1.5-5B 81 frames 768x1360, and the
tiny test models (``utils.tiny_models``) their own sizes. Wan2.2-TI2V-5B (``model_index.json``
``_class_name`` ``WanPipeline``) takes its defaults from ``generate/wan.py`` (121 frames 704x1280). :func:`resolve_video_size` fills a
user's partial size from these and rejects sizes the model cannot generate
(``generate.pipeline.GenerationConfigError``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from generate.pipeline import GenerationConfigError, check_base_model
from generate.wan import WAN_PIPELINE_NAMES, is_wan_model, wan_model_defaults
from utils.lora import read_adapter_config
from utils.model_facts import requires_image_latents

__all__ = [
    "COGVIDEOX15_PLACEHOLDER_SAMPLE_SIZE",
    "COGVIDEOX15_TRAINED_SIZE",
    "COGVIDEOX15_RELEASED_LORA_SCALING",
    "ModelDefaults",
    "model_defaults",
    "default_lora_scale",
    "read_model_defaults",
    "pipeline_defaults",
    "resolve_video_size",
]

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
    is_15_t2v = bool(transformer_config.get("patch_size_t")) and not requires_image_latents(transformer_config)
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
    if defaults.lora_multiplier is not None and lora_path is not None:  # Wan2.2-TI2V: 0.2 x alpha / r
        return float(defaults.lora_multiplier)
    if defaults.lora_scaling is None or lora_path is None:
        return 1.0
    cfg = read_adapter_config(lora_path)
    return float(defaults.lora_scaling) * float(cfg.r) / float(cfg.lora_alpha)


def read_model_defaults(base_model: str | os.PathLike) -> ModelDefaults:
    """:func:`model_defaults` of a pipeline folder or hub id, reading only its two config files.

    Raises:
        GenerationConfigError: the folder does not exist / is not a pipeline, or the configs can't be read.
    """
    # diffusers takes seconds to import: only this config reader needs it
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

    check_base_model(str(base_model))
    if is_wan_model(base_model):
        return wan_model_defaults()
    try:
        tcfg = CogVideoXTransformer3DModel.load_config(str(base_model), subfolder="transformer")
        vcfg = AutoencoderKLCogVideoX.load_config(str(base_model), subfolder="vae")
    except Exception as e:
        raise GenerationConfigError(f"cannot read the model configs of {base_model}: {e}") from e
    return model_defaults(tcfg, vcfg)


def pipeline_defaults(pipe) -> ModelDefaults:
    """:func:`model_defaults` of a loaded pipeline (Wan: ``generate.wan.wan_model_defaults``)."""
    if type(pipe).__name__ in WAN_PIPELINE_NAMES:
        return wan_model_defaults()
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
