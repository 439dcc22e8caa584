"""Wan2.2-TI2V-5B in the generation scripts: which pipeline, its defaults, its LoRA format.

``generate/t2v_inference.py`` and ``generate/i2v_inference.py`` take
``--base_model Wan-AI/Wan2.2-TI2V-5B-Diffusers`` (or a local copy); ``generate/pipeline.py`` and ``generate/model_defaults.py`` ask
:func:`is_wan_model` (``model_index.json`` ``_class_name``) and hands Wan folders to this module.
Wan2.2-TI2V-5B is one model for both modes (its ``model_index.json`` names ``WanPipeline`` with
``expand_timesteps`` true): text-to-video runs diffusers' ``WanPipeline``, image-to-video
``WanImageToVideoPipeline`` on the same folder, where the first latent frame is the clean latent of
the image (timestep 0 for its tokens) instead of extra input channels as in CogVideoX-I2V.

Defaults (sources):

=========================  ==============  ===================================================
setting                    value           source
=========================  ==============  ===================================================
frames, height x width     121, 704x1280   diffusers model card of Wan-AI/Wan2.2-TI2V-5B-Diffusers;
                                           official ``wan/configs/wan_ti2v_5B.py`` (frame_num
                                           121, size 1280*704). Released VideoGPA run: 81 frames
                                           (upstream ``generate/Wan2.2-TI2V-5B.py --frame_num``)
steps, guidance scale      50, 5.0         model card; ``sample_steps``, ``sample_guide_scale``
fps of the mp4             24              model card; ``sample_fps``
flow shift                 5.0             the checkpoint's ``scheduler_config.json``
                                           (``sample_shift``); not changed here
negative prompt            Wan's default   ``wan_shared_cfg.sample_neg_prompt`` of the official
                                           code, used by upstream VideoGPA (``WanTI2V.generate``
                                           with ``n_prompt=""``); diffusers' default is empty
LoRA scale                 0.2             upstream ``--lora_weight 0.2``: multiplies peft's
                                           ``alpha / r`` scaling, as our ``--lora_scale`` does
VAE dtype                  float32         model card (``AutoencoderKLWan`` in float32, the rest
                                           in bfloat16)
=========================  ==============  ===================================================

Valid sizes: frames ``4k + 1`` (the VAE's temporal stride 4), height and width multiples of 32
(VAE stride 16 x patch 2).
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "WAN_PIPELINE_NAMES",
    "WAN_SCRIPT_DEFAULTS",
    "WAN_NEGATIVE_PROMPT",
    "WAN_LORA_SCALE",
    "is_wan_model",
    "wan_model_defaults",
    "load_wan_pipeline",
]

WAN_PIPELINE_NAMES = ("WanPipeline", "WanImageToVideoPipeline")
WAN_NUM_FRAMES, WAN_HEIGHT, WAN_WIDTH = 121, 704, 1280
WAN_SCRIPT_DEFAULTS = {"num_inference_steps": 50, "guidance_scale": 5.0, "fps": 24}
WAN_LORA_SCALE = 0.2
# wan_shared_cfg.sample_neg_prompt of the official Wan2.1 / Wan2.2 code (Wan-Video/Wan2.2 wan/configs).
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，"
    "整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，"
    "画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
    "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)


def _config_error(message: str) -> Exception:
    from generate.pipeline import GenerationConfigError

    return GenerationConfigError(message)


def _model_index(base_model: str | os.PathLike) -> dict[str, Any]:
    from diffusers import DiffusionPipeline

    try:
        return dict(DiffusionPipeline.load_config(str(base_model)))
    except Exception as e:
        raise _config_error(f"cannot read model_index.json of {base_model}: {e}") from e


def is_wan_model(base_model: str | os.PathLike) -> bool:
    """True when ``base_model`` (folder or hub id) is a diffusers Wan pipeline (``model_index.json``
    ``_class_name`` ``WanPipeline`` / ``WanImageToVideoPipeline``).

    Raises:
        GenerationConfigError: ``model_index.json`` cannot be read.
    """
    return _model_index(base_model).get("_class_name") in WAN_PIPELINE_NAMES


def wan_model_defaults():
    """``generate.model_defaults.ModelDefaults`` of Wan2.2-TI2V-5B: 121 frames 704 x 1280, frames 4k + 1,
    sizes multiples of 32, LoRA scale 0.2 (see the module docstring for sources)."""
    from generate.model_defaults import ModelDefaults

    return ModelDefaults(
        num_frames=WAN_NUM_FRAMES,
        height=WAN_HEIGHT,
        width=WAN_WIDTH,
        frame_multiple=4,
        size_multiple=32,
        frame_step=4,
        lora_multiplier=WAN_LORA_SCALE,
        family="wan",
    )


def load_wan_pipeline(base_model: str | os.PathLike, kind: str, dtype):
    """Load Wan2.2-TI2V-5B for ``kind`` ("t2v": ``WanPipeline``, "i2v": ``WanImageToVideoPipeline``).

    The VAE is loaded in float32 (model card), everything else in ``dtype``. The pipeline gets
    ``videogpa_negative_prompt`` = :data:`WAN_NEGATIVE_PROMPT`, used by ``generate.pipeline.generate_video``
    when no negative prompt is given.

    Returns:
        ``(pipe, apply_lora)`` where ``apply_lora(transformer, path, scale=, merge=)`` is
        ``utils.wan_lora.load_wan_lora_adapter`` (original-Wan or diffusers key names).
    Raises:
        GenerationConfigError: load failure, or a Wan model other than TI2V-5B (``expand_timesteps``
            false, or transformer in_channels != VAE ``z_dim``: Wan2.1 / Wan2.2-A14B, which need
            other conditioning and are not supported here).
    """
    import torch
    from diffusers import AutoencoderKLWan, WanImageToVideoPipeline, WanPipeline

    from utils.wan_lora import load_wan_lora_adapter

    cls = WanImageToVideoPipeline if kind == "i2v" else WanPipeline
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            vae = AutoencoderKLWan.from_pretrained(str(base_model), subfolder="vae",
                                                   torch_dtype=torch.float32)
            pipe = cls.from_pretrained(str(base_model), vae=vae, torch_dtype=dtype)
    except Exception as e:
        raise _config_error(f"cannot load {cls.__name__} from {base_model}: {e}") from e
    in_ch, z_dim = int(pipe.transformer.config.in_channels), int(pipe.vae.config.z_dim)
    if not pipe.config.get("expand_timesteps") or in_ch != z_dim:
        raise _config_error(
            f"{base_model} is a Wan model but not Wan2.2-TI2V-5B (expand_timesteps "
            f"{pipe.config.get('expand_timesteps')}, transformer in_channels {in_ch}, VAE z_dim {z_dim}); "
            "only Wan2.2-TI2V-5B is supported"
        )
    pipe.videogpa_negative_prompt = WAN_NEGATIVE_PROMPT
    return pipe, load_wan_lora_adapter
