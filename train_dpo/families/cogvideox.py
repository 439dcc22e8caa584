"""The CogVideoX family of the Diffusion-DPO trainer: CogVideoX-5B, -5B-I2V and CogVideoX1.5-5B.

Contract: :class:`CogVideoXFamily` implements :class:`train_dpo.families.base.ModelFamily` for a
``CogVideoXTransformer3DModel``; the module-level functions build the transformer's inputs exactly
as the diffusers pipelines do (the train/inference parity test compares them call for call).
What differs between the three models is read from the transformer's config:

* **rotary position embeddings** (``use_rotary_positional_embeddings``): built exactly like
  ``CogVideoXPipeline._prepare_rotary_positional_embeddings`` - CogVideoX 1.0 with
  ``get_resize_crop_region_for_grid`` against ``sample_height/width // patch_size``; CogVideoX 1.5
  (``patch_size_t`` set) with ``grid_type="slice"``, ``max_size`` = the same base size and
  ``ceil(F / patch_size_t)`` temporal positions;
* **temporal patching** (CogVideoX1.5, ``patch_size_t = 2``): the latent frame count must be a
  multiple of ``patch_size_t``. At inference the pipeline adds ``patch_size_t - F % patch_size_t``
  extra latent frames *in front* (noise) and drops them after denoising; for training the CogVideoX
  fine-tuning scripts (THUDM/CogVideo ``finetune/models/cogvideox*_t2v/lora_trainer.py``) prepend
  copies of the first latent frame. :func:`pad_latent_frames` does the latter (81 px frames -> 21
  latent frames -> 22). The I2V image latents are already stored at the padded length
  (``prepare_latents`` pads them), so only the video latents are padded;
* **image conditioning** (I2V, :func:`utils.model_facts.requires_image_latents`): noisy latents
  first, then the image latents, concatenated on the channel axis
  (``torch.cat([latents, image_latents], dim=2)``);
* **ofs embedding** (``ofs_embed_dim``, CogVideoX1.5-I2V): ``latents.new_full((1,), 2.0)`` as the
  pipeline passes it.

Noise and target (v-prediction on the DDPM schedule of ``CogVideoXDDIMScheduler``):
``t ~ U{0, ..., T-1}``, ``x_t = scheduler.add_noise(x0, eps, t)``,
``v = scheduler.get_velocity(x0, eps, t) = sqrt(abar_t) eps - sqrt(1 - abar_t) x0``.
Latents are ``[B, F, C, H, W]`` (frames before channels), float32, VAE-scaled.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

from train_dpo.families.base import ModelFamily
from utils.hub import check_hub_model
from utils.model_facts import config_value, requires_image_latents

__all__ = [
    "CogVideoXFamily",
    "pad_latent_frames",
    "prepare_rotary_positional_embeddings",
    "build_transformer_inputs",
]


def pad_latent_frames(latents: torch.Tensor, patch_size_t: int | None) -> torch.Tensor:
    """Prepend copies of the first latent frame until ``F`` is a multiple of ``patch_size_t``.

    Args:
        latents: ``[B, F, C, H, W]`` (or ``[F, C, H, W]``).
        patch_size_t: transformer ``patch_size_t``; None (CogVideoX 1.0) returns ``latents``.

    Returns:
        ``[B, F', C, H, W]`` with ``F' = ceil(F / p_t) * p_t``; frames ``F' - F`` .. are the input.

    CogVideoX1.5 at 81 frames: 21 latent frames -> 22 (one copy of frame 0 in front), as the
    THUDM/CogVideo fine-tuning scripts do (for ``p_t = 2`` their ``F % p_t`` copies coincide).
    """
    if not patch_size_t or patch_size_t <= 1:
        return latents
    fdim = latents.dim() - 4
    n = latents.shape[fdim]
    extra = (-n) % patch_size_t
    if extra == 0:
        return latents
    first = latents.narrow(fdim, 0, 1)
    reps = [1] * latents.dim()
    reps[fdim] = extra
    return torch.cat([first.repeat(*reps), latents], dim=fdim)


def prepare_rotary_positional_embeddings(
    transformer_config,
    height: int,
    width: int,
    num_frames: int,
    vae_scale_factor_spatial: int = 8,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """3-D RoPE ``(freqs_cos, freqs_sin)`` as ``CogVideoXPipeline._prepare_rotary_positional_embeddings``.

    Args:
        transformer_config: the transformer's config (``patch_size``, ``patch_size_t``,
            ``sample_height``, ``sample_width``, ``attention_head_dim``).
        height, width: video size in pixels (latent size x ``vae_scale_factor_spatial``).
        num_frames: latent frames *after* padding to a multiple of ``patch_size_t``.
        vae_scale_factor_spatial: 8 for every CogVideoX VAE.

    Returns:
        Two float32 tensors ``[num_tokens, attention_head_dim]``.
    """
    p = config_value(transformer_config, "patch_size")
    p_t = config_value(transformer_config, "patch_size_t")
    head_dim = config_value(transformer_config, "attention_head_dim")
    grid_height = height // (vae_scale_factor_spatial * p)
    grid_width = width // (vae_scale_factor_spatial * p)
    base_size_width = config_value(transformer_config, "sample_width") // p
    base_size_height = config_value(transformer_config, "sample_height") // p
    if p_t is None:  # CogVideoX 1.0
        grid_crops_coords = get_resize_crop_region_for_grid(
            (grid_height, grid_width), base_size_width, base_size_height
        )
        return get_3d_rotary_pos_embed(
            embed_dim=head_dim,
            crops_coords=grid_crops_coords,
            grid_size=(grid_height, grid_width),
            temporal_size=num_frames,
            device=device,
        )
    base_num_frames = (num_frames + p_t - 1) // p_t  # CogVideoX 1.5
    return get_3d_rotary_pos_embed(
        embed_dim=head_dim,
        crops_coords=None,
        grid_size=(grid_height, grid_width),
        temporal_size=base_num_frames,
        grid_type="slice",
        max_size=(base_size_height, base_size_width),
        device=device,
    )


def build_transformer_inputs(
    transformer_config,
    noisy_latents: torch.Tensor,
    timesteps: torch.Tensor,
    prompt_embeds: torch.Tensor,
    image_latents: torch.Tensor | None = None,
    vae_scale_factor_spatial: int = 8,
    rotary_cache: dict | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``CogVideoXTransformer3DModel.forward`` as the pipelines pass them.

    Args:
        transformer_config: the transformer's config.
        noisy_latents: ``[B, F, C, H, W]``, ``F`` already a multiple of ``patch_size_t``.
        timesteps: int64 ``[B]``.
        prompt_embeds: ``[B, 226, D]``.
        image_latents: ``[B, F, C, H, W]`` for I2V models (``in_channels == 2 * C``), else None.
        vae_scale_factor_spatial: 8 for every CogVideoX VAE.
        rotary_cache: optional dict reused across calls (key: size, frames, device, inference mode).
            Source: diffusers ``CogVideoXPipeline`` / ``CogVideoXImageToVideoPipeline.__call__``.

    Returns:
        ``{"hidden_states", "encoder_hidden_states", "timestep", "image_rotary_emb"}`` plus ``"ofs"``
        when ``ofs_embed_dim`` is set (I2V pipeline semantics).

    Raises:
        ValueError: I2V model without ``image_latents`` (or T2V with them), frame count not a
            multiple of ``patch_size_t``, or image/video latent shapes that differ.
    """
    in_ch = config_value(transformer_config, "in_channels")
    p_t = config_value(transformer_config, "patch_size_t")
    _, f, c, h, w = noisy_latents.shape
    if p_t and f % p_t:
        raise ValueError(f"latent frames {f} not a multiple of patch_size_t {p_t}; use pad_latent_frames")
    needs_image = requires_image_latents(transformer_config)
    hidden = noisy_latents
    if image_latents is not None:
        if not needs_image:
            raise ValueError(f"image_latents given to a text-to-video transformer (in_channels {in_ch})")
        if image_latents.shape != noisy_latents.shape:
            raise ValueError(
                f"image latents {tuple(image_latents.shape)} and video latents "
                f"{tuple(noisy_latents.shape)} differ"
            )
        hidden = torch.cat([noisy_latents, image_latents.to(noisy_latents.dtype)], dim=2)
    elif needs_image:
        raise ValueError(f"image-to-video transformer (in_channels {in_ch}) needs image_latents")
    if hidden.shape[2] != in_ch:
        raise ValueError(
            f"transformer expects {in_ch} input channels, got {hidden.shape[2]} (latents of another model?)"
        )
    inputs: dict[str, Any] = {
        "hidden_states": hidden,
        "encoder_hidden_states": prompt_embeds,
        "timestep": timesteps,
    }
    rotary = None
    if config_value(transformer_config, "use_rotary_positional_embeddings"):
        # inference-mode tensors (validation) must not be reused by training: autograd refuses them
        key = (h, w, f, str(noisy_latents.device), torch.is_inference_mode_enabled())
        if rotary_cache is not None and key in rotary_cache:
            rotary = rotary_cache[key]
        else:
            rotary = prepare_rotary_positional_embeddings(
                transformer_config, h * vae_scale_factor_spatial, w * vae_scale_factor_spatial, f,
                vae_scale_factor_spatial, noisy_latents.device,
            )  # fmt: skip
            if rotary_cache is not None:
                rotary_cache[key] = rotary
    inputs["image_rotary_emb"] = rotary
    if config_value(transformer_config, "ofs_embed_dim") is not None:
        inputs["ofs"] = noisy_latents.new_full((1,), fill_value=2.0)
    return inputs


class CogVideoXFamily(ModelFamily):
    """CogVideoX-5B (T2V), CogVideoX-5B-I2V and CogVideoX1.5-5B in the Diffusion-DPO trainer.

    Args:
        transformer_config: the ``CogVideoXTransformer3DModel``'s config.
        scheduler: ``CogVideoXDDIMScheduler`` (v-prediction; its ``alphas_cumprod`` are those of
            ``CogVideoXDPMScheduler``) for ``add_noise`` / ``get_velocity`` and
            ``config.num_train_timesteps``.
        vae_scale_factor_spatial: pixels per latent (8 for every CogVideoX VAE).
    """

    name: ClassVar[str] = "cogvideox"
    lora_targets: ClassVar[tuple[str, ...]] = ("to_q", "to_k", "to_v", "to_out.0")

    def __init__(self, transformer_config: Any, scheduler: Any, vae_scale_factor_spatial: int = 8):
        self.config = transformer_config
        self.scheduler = scheduler
        self.vae_scale_factor_spatial = int(vae_scale_factor_spatial)
        self._rotary_cache: dict = {}

    @classmethod
    def load(
        cls, base_model: str | os.PathLike, dtype: torch.dtype
    ) -> tuple[torch.nn.Module, "CogVideoXFamily"]:
        """The transformer of the CogVideoX pipeline folder or hub id ``base_model`` (weights in
        ``dtype``) and its family object: scheduler ``CogVideoXDDIMScheduler``, VAE scale factor
        from ``vae/config.json`` (8 if absent). Loads no VAE or text encoder weights.

        Raises:
            utils.hub.ModelNotAvailableError: ``base_model`` is neither a folder nor obtainable.
        """
        check_hub_model(base_model, ("model_index.json",), "CogVideoX model", "--base_model")
        transformer = CogVideoXTransformer3DModel.from_pretrained(
            str(base_model), subfolder="transformer", torch_dtype=dtype
        )
        scheduler = CogVideoXDDIMScheduler.from_pretrained(str(base_model), subfolder="scheduler")
        try:
            vae_cfg = AutoencoderKLCogVideoX.load_config(str(base_model), subfolder="vae")
            sf = 2 ** (len(vae_cfg["block_out_channels"]) - 1)
        except Exception:  # noqa: BLE001 - no VAE folder: CogVideoX's VAE compresses 8x
            sf = 8
        return transformer, cls(transformer.config, scheduler, sf)

    def requires_image(self) -> bool:
        """True for the I2V transformers (``in_channels == 2 * out_channels``)."""
        return requires_image_latents(self.config)

    def check_item(self, item: dict[str, Any]) -> None:
        """Check one dataset item (``latents_w`` ``[F, C, H, W]``, ``prompt_embeds`` ``[226, D]``,
        ``image_latents`` for I2V) against the transformer before training starts.

        Raises:
            ValueError: I2V model without ``image_latents`` (or T2V with them), latent channels or
                text width that do not match, or image latents whose frame count differs from the
                padded video latents.
        """
        out_ch = config_value(self.config, "out_channels")
        text_dim = config_value(self.config, "text_embed_dim")
        p_t = config_value(self.config, "patch_size_t")
        lat = item["latents_w"]
        if lat.dim() != 4:
            raise ValueError(f"latents must be [F, C, H, W], got {tuple(lat.shape)}")
        f, c, h, w = lat.shape
        if c != out_ch:
            raise ValueError(f"latents have {c} channels, the transformer predicts {out_ch} (other model?)")
        if item["prompt_embeds"].shape[-1] != text_dim:
            raise ValueError(
                f"prompt embeddings have width {item['prompt_embeds'].shape[-1]}, the transformer expects "
                f"{text_dim} (encoded with another model?)"
            )
        is_i2v = self.requires_image()
        img = item.get("image_latents")
        if is_i2v and img is None:
            raise ValueError(
                "image-to-video model but the data has no image_latents (encode with the I2V 03_encode.py)"
            )
        if not is_i2v and img is not None:
            raise ValueError("text-to-video model but the data has image_latents (encoded for an I2V model?)")
        if img is not None:
            f_pad = f + ((-f) % p_t if p_t else 0)
            if tuple(img.shape) != (f_pad, c, h, w):
                raise ValueError(
                    f"image latents {tuple(img.shape)} do not match the video latents {(f_pad, c, h, w)}"
                )

    def prepare_latents(self, x0: torch.Tensor) -> torch.Tensor:
        """``[B, F, C, H, W]`` -> ``[B, F', C, H, W]``: :func:`pad_latent_frames` (CogVideoX1.5)."""
        return pad_latent_frames(x0, config_value(self.config, "patch_size_t"))

    def sample_timesteps(self, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        """``t ~ U{0, ..., num_train_timesteps - 1}``, int64 ``[batch_size]`` on the CPU."""
        return torch.randint(0, self.scheduler.config.num_train_timesteps, (batch_size,), generator=generator)

    def model_inputs(
        self,
        x0: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        prompt_embeds: torch.Tensor,
        image_latents: torch.Tensor | None = None,
    ) -> tuple[dict[str, Any], torch.Tensor]:
        """``x_t = add_noise(x0, noise, t)`` and its transformer inputs
        (:meth:`build_transformer_inputs`), target ``v = get_velocity(x0, noise, t)`` (float32,
        shape of ``x0``). See :meth:`ModelFamily.model_inputs`."""
        if self.requires_image() and image_latents is None:
            raise ValueError("I2V model: the batch has no image_latents (encode with the I2V 03_encode.py)")
        noisy = self.scheduler.add_noise(x0, noise, timesteps)
        target = self.scheduler.get_velocity(x0, noise, timesteps)
        return self.build_transformer_inputs(noisy, timesteps, prompt_embeds, image_latents), target

    def build_transformer_inputs(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        prompt_embeds: torch.Tensor,
        image_latents: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """:func:`build_transformer_inputs` with this model's config, VAE scale factor and RoPE cache."""
        return build_transformer_inputs(
            self.config, noisy_latents, timesteps, prompt_embeds, image_latents,
            self.vae_scale_factor_spatial, self._rotary_cache,
        )  # fmt: skip
