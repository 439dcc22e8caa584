"""Wan2.2 (TI2V-5B) as a model family of the Diffusion-DPO trainer: flow matching, ``[C, F, H, W]``
latents, an optional clean first frame (text-image-to-video).

Objective (rectified flow / flow matching, as the released VideoGPA Wan trainer
``train/Wan2.2-TI2V-5B/03_train.py`` of Hongyang-Du/VideoGPA)::

    t     ~ U{1, ..., T - 1}               T = scheduler num_train_timesteps (1000): t in 1..999
    s     = t / T
    sigma = shift * s / (1 + (shift - 1) * s)        shift = the scheduler's flow_shift (5.0)
    z_t   = (1 - sigma) * z_0 + sigma * noise
    target velocity v = noise - z_0                  (the transformer predicts v; "flow_prediction")

Text-image-to-video (a batch with ``image_latents``): the first latent frame of ``z_t`` is replaced
by the clean condition latent of the image and its tokens get timestep 0, every other token the
sample's timestep -- the per-token ``timestep [B, seq_len]`` that diffusers'
``WanImageToVideoPipeline`` builds when ``expand_timesteps`` is set (Wan2.2-TI2V-5B):
``latent_model_input = (1 - first_frame_mask) * condition + first_frame_mask * latents``,
``timestep = (first_frame_mask[0][0][:, ::2, ::2] * t).flatten()`` per sample. Text-to-video (no
``image_latents``) gets the uniform per-token timestep of ``WanPipeline`` with ``expand_timesteps``
(mask of ones); a model without ``expand_timesteps`` (Wan2.1-style) gets ``timestep [B]``.

Decisions (and where they depart from the released trainer):

* Timestep the transformer sees: ``floor(T * sigma)`` (``timestep_input="sigma"``, the default), the value
  diffusers' flow scheduler (``UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=5)``) and
  the original Wan sampler (``FlowUniPCMultistepScheduler``: ``timesteps = sigmas * T``) give it at
  the noise level ``sigma`` at inference. The released trainer passes the *unshifted* ``t`` while
  noising with the shifted ``sigma`` (e.g. ``t = 500`` is ``sigma = 0.833``, a level inference
  labels ``833``): the adapter is then trained on inputs the sampler never produces. That is a
  strong reason to depart; ``timestep_input="released"`` reproduces the released behaviour.
* The loss covers every latent frame, the clean first frame included, as released (the target
  there is ``noise - z_0`` of a frame whose input holds no noise: in expectation over the noise it
  pulls that frame's output towards ``-z_0``, and the pipeline discards it at inference). Kept for
  fidelity to the released numbers; winner and loser share the condition frame and the noise, so
  the term acts mostly through attention from the other frames.
* Without an image the released trainer still gives the first-frame tokens timestep 0 (while that
  frame is noisy); here T2V batches follow ``WanPipeline`` (uniform timestep), as inference does.

Latent layout: the diffusers layout ``[C, F, H, W]`` per sample (``[N, C, F, H, W]`` batched), C = 48
for the Wan2.2 VAE; normalised ``(z - latents_mean) / latents_std`` per channel
(:mod:`train_dpo.encode_wan`). The transformer's output has the same layout: :meth:`prediction` is
the identity. Image latents: ``[C, 1, H, W]`` (one clean latent frame).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch

from train_dpo.families.base import ModelFamily
from utils.model_facts import config_value

__all__ = ["WanFamily", "TIMESTEP_INPUTS", "flow_sigmas"]

TIMESTEP_INPUTS = ("sigma", "released")


def flow_sigmas(
    timesteps: torch.Tensor, num_train_timesteps: int, shift: float, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Noise level of integer training timesteps under the shifted flow schedule.

    ``s = t / T``, ``sigma = shift * s / (1 + (shift - 1) * s)`` (computed in float64, returned in
    ``dtype``; the formula of diffusers' ``UniPCMultistepScheduler(use_flow_sigmas=True)`` and of the
    released trainer's ``get_sigma_from_timestep``).

    Args:
        timesteps: int ``[N]`` in ``[0, T]``.
        num_train_timesteps: ``T`` (1000).
        shift: flow shift (> 0; 5.0 for Wan2.2-TI2V-5B).

    Returns:
        ``[N]`` in [0, 1] (float32 by default), on ``timesteps.device``.
    """
    s = timesteps.to(torch.float64) / float(num_train_timesteps)
    return (shift * s / (1.0 + (shift - 1.0) * s)).to(dtype)


class WanFamily(ModelFamily):
    """Wan2.2 flow-matching Diffusion-DPO family (see the module docstring for the objective).

    Args:
        transformer_config: the ``WanTransformer3DModel`` config (``in_channels`` = ``out_channels``,
            ``patch_size`` (1, 2, 2), ``text_dim``).
        flow_shift: the scheduler's ``flow_shift`` (5.0 for Wan2.2-TI2V-5B).
        num_train_timesteps: the scheduler's ``num_train_timesteps`` (1000).
        expand_timesteps: the pipeline's ``expand_timesteps`` (``model_index.json``; True for
            Wan2.2-TI2V-5B): per-token timesteps ``[N, seq_len]``; False: ``[N]``.
        timestep_input: ``"sigma"`` (transformer timestep ``T * sigma``, as at inference) or
            ``"released"`` (the unshifted ``t`` of the released trainer).

    Raises:
        ValueError: a transformer whose in/out channels differ (Wan2.1-I2V: mask + image channels,
            not supported), a CLIP image branch (``image_dim``), a temporal patch size other than 1,
            a bad ``timestep_input`` or shift.
    """

    name: ClassVar[str] = "wan"
    # diffusers names of the released adapter's targets (original Wan: q, k, v, o of every attention)
    lora_targets: ClassVar[tuple[str, ...]] = ("to_q", "to_k", "to_v", "to_out.0")
    load_options: ClassVar[tuple[str, ...]] = ("timestep_input",)

    def __init__(
        self,
        transformer_config: Any,
        flow_shift: float,
        num_train_timesteps: int = 1000,
        expand_timesteps: bool = True,
        timestep_input: str = "sigma",
    ):
        in_ch = config_value(transformer_config, "in_channels")
        out_ch = config_value(transformer_config, "out_channels") or in_ch
        if in_ch != out_ch:
            raise ValueError(f"Wan transformer with in_channels {in_ch} != out_channels {out_ch} "
                             "(Wan2.1 image-to-video) is not supported: Wan2.2-TI2V/T2V only")
        if config_value(transformer_config, "image_dim") is not None:
            raise ValueError("Wan transformer with a CLIP image branch (image_dim) is not supported")
        patch = tuple(int(p) for p in config_value(transformer_config, "patch_size", (1, 2, 2)))
        if len(patch) != 3 or patch[0] != 1:
            raise ValueError(f"Wan patch_size must be (1, p, p), got {patch}")
        if timestep_input not in TIMESTEP_INPUTS:
            raise ValueError(f"timestep_input must be one of {TIMESTEP_INPUTS}, got {timestep_input!r}")
        if not float(flow_shift) > 0:
            raise ValueError(f"flow_shift must be > 0, got {flow_shift}")
        self.channels = int(in_ch)
        self.text_dim = int(config_value(transformer_config, "text_dim"))
        self.patch_size = patch
        self.flow_shift = float(flow_shift)
        self.num_train_timesteps = int(num_train_timesteps)
        self.expand_timesteps = bool(expand_timesteps)
        self.timestep_input = timestep_input

    # ---- loading ------------------------------------------------------------------------------
    @classmethod
    def load(
        cls, base_model: str | os.PathLike, dtype: torch.dtype, timestep_input: str = "sigma"
    ) -> tuple[torch.nn.Module, WanFamily]:
        """``WanTransformer3DModel`` of the pipeline folder / hub id ``base_model`` (weights in ``dtype``)
        and the family bound to it: ``flow_shift`` and ``num_train_timesteps`` from
        ``scheduler/scheduler_config.json``, ``expand_timesteps`` from ``model_index.json``.

        Raises:
            utils.hub.ModelNotAvailableError: not a local folder and not in the hub cache.
            ValueError: the scheduler config has no ``flow_shift`` (not a Wan flow-matching scheduler;
                a configuration error: ``04_train.py`` exits 2 naming the folder).
        """
        from diffusers import DiffusionPipeline, UniPCMultistepScheduler, WanTransformer3DModel

        from utils.hub import check_hub_model

        check_hub_model(base_model, ("model_index.json",), "Wan model", "--base_model")
        transformer = WanTransformer3DModel.from_pretrained(
            str(base_model), subfolder="transformer", torch_dtype=dtype
        )
        # load_config only reads scheduler/scheduler_config.json (whatever the scheduler class)
        sched = UniPCMultistepScheduler.load_config(str(base_model), subfolder="scheduler")
        if "flow_shift" not in sched:
            raise ValueError(f"{base_model}: scheduler config has no flow_shift (not a Wan flow scheduler)")
        index = DiffusionPipeline.load_config(str(base_model))
        family = cls(
            transformer.config,
            flow_shift=sched["flow_shift"],
            num_train_timesteps=sched.get("num_train_timesteps", 1000),
            expand_timesteps=bool(index.get("expand_timesteps", False)),
            timestep_input=timestep_input,
        )
        return transformer, family

    # ---- model facts ----------------------------------------------------------------------------
    def requires_image(self) -> bool:
        """False: Wan2.2-TI2V takes a first-frame image optionally (batches with or without)."""
        return False

    def check_item(self, item: dict[str, Any]) -> None:
        """Check latents ``[48, F, H, W]``, ``prompt_embeds [L, text_dim]`` and optional
        ``image_latents [48, 1, H, W]`` against the model (see :meth:`ModelFamily.check_item`)."""
        hint = "(encoded for another model? encode with train_dpo/Wan2.2-TI2V-5B_lora/03_encode.py)"
        lat = item["latents_w"]
        if lat.dim() != 4 or lat.shape[0] != self.channels:
            raise ValueError(f"latents have shape {tuple(lat.shape)}; this Wan model takes "
                             f"[{self.channels}, F, H, W] {hint}")
        if tuple(item["latents_l"].shape) != tuple(lat.shape):
            raise ValueError(f"winner and loser latents differ in shape: {tuple(lat.shape)} vs "
                             f"{tuple(item['latents_l'].shape)}")
        _, p_h, p_w = self.patch_size
        if lat.shape[2] % p_h or lat.shape[3] % p_w:
            raise ValueError(f"latent size {tuple(lat.shape[2:])} is not a multiple of the patch size "
                             f"{(p_h, p_w)} {hint}")
        pe = item["prompt_embeds"]
        if pe.dim() != 2 or pe.shape[1] != self.text_dim:
            raise ValueError(f"prompt_embeds have shape {tuple(pe.shape)}; this model takes "
                             f"[L, {self.text_dim}] (UMT5) {hint}")
        img = item.get("image_latents")
        if img is not None:
            want = (self.channels, 1, *lat.shape[2:])
            if tuple(img.shape) != want:
                raise ValueError(f"image_latents have shape {tuple(img.shape)}; expected {want} "
                                 f"(one clean latent frame of the video's size) {hint}")

    # ---- one training evaluation --------------------------------------------------------------
    def sample_timesteps(self, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        """``t ~ U{1, ..., T - 1}`` (``torch.randint(1, T)``, as released), int64 ``[batch_size]``."""
        return torch.randint(1, self.num_train_timesteps, (batch_size,), generator=generator)

    def model_timesteps(self, timesteps: torch.Tensor) -> torch.Tensor:
        """The timestep the transformer sees per sample, int64 ``[N]``: ``floor(T * sigma(t))``
        (``timestep_input="sigma"``; the flow schedulers store ``timesteps = sigmas * T`` as int64,
        so this is the value a sampler step at noise level ``sigma`` feeds) or ``t`` itself
        (``"released"``)."""
        if self.timestep_input == "released":
            return timesteps.to(torch.int64)
        sigma = flow_sigmas(timesteps, self.num_train_timesteps, self.flow_shift, torch.float64)
        return (sigma * self.num_train_timesteps).to(torch.int64)

    def model_inputs(
        self,
        x0: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        prompt_embeds: torch.Tensor,
        image_latents: torch.Tensor | None = None,
    ) -> tuple[dict[str, Any], torch.Tensor]:
        """Flow-matching noising and the ``WanTransformer3DModel`` keyword arguments.

        Args:
            x0: clean latents float32 ``[N, C, F, H, W]``.
            noise: standard normal, same shape.
            timesteps: int64 ``[N]`` in 1..T-1.
            prompt_embeds: ``[N, L, text_dim]`` (UMT5 states, zero-padded to 512).
            image_latents: ``[N, C, 1, H, W]`` clean condition latents (TI2V) or None (T2V).

        Returns:
            ``({"hidden_states": z_t [N, C, F, H, W], "timestep": float32 [N, F*H*W/4] (int64 [N]
            without ``expand_timesteps``),
            "encoder_hidden_states": prompt_embeds}, target)`` with ``target = noise - x0`` (float32,
            every frame).

        Raises:
            ValueError: shapes that do not fit.
        """
        if x0.dim() != 5 or x0.shape[1] != self.channels:
            raise ValueError(f"x0 must be [N, {self.channels}, F, H, W], got {tuple(x0.shape)}")
        if noise.shape != x0.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} != x0 shape {tuple(x0.shape)}")
        n, _, f, h, w = x0.shape
        if timesteps.shape != (n,):
            raise ValueError(f"timesteps must be [{n}], got {tuple(timesteps.shape)}")
        device = x0.device
        sigma = flow_sigmas(timesteps, self.num_train_timesteps, self.flow_shift).to(device)
        sigma = sigma.view(n, 1, 1, 1, 1)
        z_t = (1.0 - sigma) * x0 + sigma * noise
        t_model = self.model_timesteps(timesteps).to(device)
        if image_latents is not None:
            if tuple(image_latents.shape) != (n, self.channels, 1, h, w):
                raise ValueError(f"image_latents must be [{n}, {self.channels}, 1, {h}, {w}], "
                                 f"got {tuple(image_latents.shape)}")
            z_t = torch.cat([image_latents.to(z_t.dtype), z_t[:, :, 1:]], dim=2)
        if self.expand_timesteps:
            _, p_h, p_w = self.patch_size
            per_frame = (h // p_h) * (w // p_w)
            mask = torch.ones(f, per_frame, device=device, dtype=torch.float32)
            if image_latents is not None:
                mask[0] = 0.0  # the clean condition frame: timestep 0
            timestep = mask.flatten().unsqueeze(0) * t_model.unsqueeze(1)  # [N, F * per_frame]
        else:
            if image_latents is not None:
                raise ValueError("image latents need a model with expand_timesteps (Wan2.2-TI2V)")
            timestep = t_model
        inputs = {"hidden_states": z_t, "timestep": timestep, "encoder_hidden_states": prompt_embeds}
        return inputs, (noise - x0).float()
