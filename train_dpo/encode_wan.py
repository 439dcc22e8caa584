"""Latent encoding for Wan2.2 (TI2V-5B) Diffusion-DPO training, in the file format and with the
JSON/resume machinery of :mod:`train_dpo.encode` (this module only supplies the Wan encoder).

Per video: ``NUM_FRAMES`` frames (``utils.video_utils.load_frames``, as for CogVideoX) ->
``x / 255 * 2 - 1`` -> ``AutoencoderKLWan.encode(video).latent_dist.mode()`` (the posterior mean,
as the released ``train/Wan2.2-TI2V-5B/02_encode.py``, whose ``Wan2_2_VAE.encode`` returns the
normalised mean, and as the pipelines' ``retrieve_latents(..., sample_mode="argmax")``) ->
``(z - latents_mean) / latents_std`` per channel (``vae.config``; the inverse of the pipelines'
decode step ``latents / (1 / latents_std) + latents_mean``) -> ``[C, F, h, w]`` (the diffusers layout,
C = 48, ``F = (T - 1) // 4 + 1``, ``h, w = H / 16, W / 16``: 121 x 704 x 1280 -> 48 x 31 x 44 x 80).

Per group: ``prompt_embeds [512, D]`` from the pipeline's own ``encode_prompt`` (UMT5, no CFG,
``max_sequence_length`` 512: the states of the real tokens, zero-padded to 512, as diffusers does);
when the group has an ``image_path``, ``image_latents [C, 1, h, w]``: the first-frame condition
exactly as ``WanImageToVideoPipeline.prepare_latents`` (``expand_timesteps``) computes it from the
image: the image loaded like the generation scripts load it (``generate.pipeline.load_image``: centre
crop to the aspect, bicubic resize), ``video_processor.preprocess`` at ``HEIGHT x WIDTH``, encoded as
one frame, ``latent_dist.mode()``, normalised as above. (The released encoder resizes to cover and
centre-crops with Lanczos; here the condition is the one the diffusers pipeline gives the model at
generation, from the image as our generation scripts load it.)

Nothing is random: no seed is involved. The VAE runs in float32 (as released: ``Wan2_2_VAE``
default dtype; diffusers' Wan examples too), the text encoder in the device's compute dtype
(``utils.device.compute_dtype``: bf16 on Ampere+, as released ``t5_dtype``).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from train_dpo.encode import EncodeConfig, resolve_device_dtype, video_frames_to_tensor

__all__ = ["WanEncoder", "load_wan_encode_pipeline", "normalize_wan_latents", "wan_vae_mean_latents"]


def load_wan_encode_pipeline(
    base_model: str | os.PathLike,
    device: str | torch.device | None = None,
    text_dtype: torch.dtype | None = None,
    vae_slicing: bool = True,
    vae_tiling: bool = False,
):
    """The Wan pipeline of ``base_model`` without its transformer (tokenizer, UMT5, VAE, scheduler).

    Args:
        base_model: diffusers pipeline folder or hub id (``Wan-AI/Wan2.2-TI2V-5B-Diffusers``).
        device: None: CUDA when available (``utils.device.resolve_device``).
        text_dtype: text-encoder dtype (None: ``utils.device.compute_dtype(device)``); the VAE is float32.
        vae_slicing, vae_tiling: ``AutoencoderKLWan`` memory savers (tiling changes the latents; off
            as released).

    Raises:
        utils.hub.ModelNotAvailableError: not a local folder and not in the hub cache.
    """
    from diffusers import AutoencoderKLWan, DiffusionPipeline

    from utils.device import compute_dtype, resolve_device
    from utils.hub import check_hub_model

    check_hub_model(base_model, ("model_index.json",), "Wan model", "--base_model")
    dev = resolve_device(device)
    text_dtype = text_dtype or compute_dtype(dev)
    vae = AutoencoderKLWan.from_pretrained(str(base_model), subfolder="vae", torch_dtype=torch.float32)
    pipe = DiffusionPipeline.from_pretrained(
        str(base_model), vae=vae, transformer=None, torch_dtype=text_dtype
    )
    pipe.to(dev)
    if vae_slicing:
        pipe.vae.enable_slicing()
    if vae_tiling:
        pipe.vae.enable_tiling()
    for m in (pipe.vae, pipe.text_encoder):
        m.eval().requires_grad_(False)
    return pipe


def normalize_wan_latents(latents: torch.Tensor, vae_config: Any) -> torch.Tensor:
    """``(z - latents_mean) * (1 / latents_std)`` per channel, in the operation order and dtype of
    ``WanImageToVideoPipeline.prepare_latents`` (float32 statistics).

    Args:
        latents: raw VAE latents ``[B, C, F, h, w]``, cast to float32.
        vae_config: ``AutoencoderKLWan`` config (``z_dim``, ``latents_mean``, ``latents_std``).

    Returns:
        float32 ``[B, C, F, h, w]``, ~zero mean / unit variance per channel.
    """
    z = latents.float()
    shape = (1, vae_config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae_config.latents_mean).view(shape).to(z.device, z.dtype)
    inv_std = 1.0 / torch.tensor(vae_config.latents_std).view(shape).to(z.device, z.dtype)
    return (z - mean) * inv_std


@torch.no_grad()
def wan_vae_mean_latents(vae, video: torch.Tensor) -> torch.Tensor:
    """Normalised posterior-mean latents of a video or image.

    Args:
        vae: ``AutoencoderKLWan``.
        video: ``[B, 3, T, H, W]`` in [-1, 1] (``T = 4k + 1``; 1 for an image), cast to the VAE's dtype.

    Returns:
        float32 ``[B, C, (T - 1) // 4 + 1, H / s, W / s]`` (``s = vae.config.scale_factor_spatial``).
    """
    if video.dim() != 5:
        raise ValueError(f"video must be [B, 3, T, H, W], got {tuple(video.shape)}")
    video = video.to(device=vae.device, dtype=vae.dtype)
    return normalize_wan_latents(vae.encode(video).latent_dist.mode(), vae.config)


class WanEncoder:
    """The :class:`train_dpo.encode.Encoder` of Wan2.2 (for :func:`train_dpo.encode.encode_dataset`).

    Images are optional (``image_mode = "optional"``): a group with ``image_path`` gets
    ``image_latents``, one without is text-to-video.
    """

    image_mode = "optional"

    def __init__(self, pipe, cfg: EncodeConfig):
        self.pipe, self.cfg = pipe, cfg
        self.meta = {
            "latents_layout": "CFHW",
            "latents_normalization": "(z - latents_mean) / latents_std",
            "posterior": "mean",
            "vae_tiling": bool(getattr(pipe.vae, "use_tiling", False)),
        }

    @classmethod
    def from_config(cls, cfg: EncodeConfig, pipe=None) -> WanEncoder:
        """Bind to ``pipe``, or load ``cfg.base_model`` (:func:`load_wan_encode_pipeline`) when None.

        Raises:
            ValueError: ``cfg.dtype`` not one of bf16/fp16/fp32.
        """
        if pipe is None:
            device, text_dtype = resolve_device_dtype(cfg.device, cfg.dtype)
            pipe = load_wan_encode_pipeline(cfg.base_model, device, text_dtype, cfg.vae_slicing, cfg.vae_tiling)
        return cls(pipe, cfg)

    @torch.no_grad()
    def encode_condition(self, prompt: str, image=None) -> dict[str, torch.Tensor]:
        """``{"prompt_embeds": [L, D]}`` (``L = cfg.max_sequence_length``, 512) and, for an image,
        ``"image_latents" [C, 1, h, w]`` (:meth:`image_latents`)."""
        embeds, _ = self.pipe.encode_prompt(
            prompt=prompt,
            do_classifier_free_guidance=False,
            num_videos_per_prompt=1,
            max_sequence_length=self.cfg.max_sequence_length,
            device=self.pipe.vae.device,
        )
        out = {"prompt_embeds": embeds[0]}
        if image is not None:
            out["image_latents"] = self.image_latents(image)
        return out

    @torch.no_grad()
    def image_latents(self, image) -> torch.Tensor:
        """First-frame condition latents, as ``WanImageToVideoPipeline`` (``expand_timesteps``) builds them.

        Args:
            image: a path (``generate.pipeline.load_image`` at ``cfg.height x cfg.width``) or a PIL
                image / tensor for ``video_processor.preprocess``.

        Returns:
            float32 ``[C, 1, h, w]``.
        """
        c = self.cfg
        if isinstance(image, (str, os.PathLike)):
            from generate.pipeline import load_image

            image = load_image(image, c.height, c.width)
        pixels = self.pipe.video_processor.preprocess(image, height=c.height, width=c.width)
        pixels = pixels.to(self.pipe.vae.device, dtype=torch.float32).unsqueeze(2)  # [1, 3, 1, H, W]
        return wan_vae_mean_latents(self.pipe.vae, pixels)[0]

    def encode_video(self, frames, key: str) -> torch.Tensor:
        """Normalised mean latents ``[C, F, h, w]`` (float32) of uint8 ``frames [T, H, W, 3]``;
        ``key`` (the video path) is unused: nothing is sampled."""
        return wan_vae_mean_latents(self.pipe.vae, video_frames_to_tensor(frames))[0]
