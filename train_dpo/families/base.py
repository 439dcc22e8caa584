"""The model-family interface of the Diffusion-DPO trainer.

The LightningModule knows no model: everything that differs between video diffusion families
(CogVideoX: v-prediction on a DDPM schedule, ``[F, C, H, W]`` latents, image latents concatenated on
channels; Wan2.2: flow matching, ``[C, F, H, W]`` latents, a clean first frame for TI2V) is behind
one :class:`ModelFamily` object per run. One training step, for any family::

    x0 = family.prepare_latents(torch.cat([latents_w, latents_l]))     # e.g. CogVideoX1.5 frame padding
    noise = torch.randn(x0[:B].shape, generator=g)                     # one draw for winner and loser
    t = family.sample_timesteps(B, g)                                   # int64 [B]
    inputs, target = family.model_inputs(x0, repeat(noise), repeat(t), prompt_embeds, image_latents)
    pred = family.prediction(transformer(**inputs, return_dict=False)[0])   # same shape as target
    loss = diffusion_dpo_loss(pred_w, pred_l, ref_w, ref_l, target_w, target_l)

The random draws happen in that order (noise first, then the timesteps) with a CPU generator, so a
resumed run replays exactly the draws of an uninterrupted one.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch


class ModelFamily(ABC):
    """What the Diffusion-DPO trainer needs to know about one family of video diffusion models.

    An instance is bound to one loaded model (its transformer config and noise schedule), made by
    :meth:`load` from a checkpoint folder or hub id, or built directly from components in tests.

    Class attributes:
        name: the family's name (``"cogvideox"``, ``"wan"``).
        lora_targets: the LoRA target modules of the released adapters of this family.
        load_options: the keyword options of :meth:`load` beyond ``base_model`` and ``dtype``, each
            also a :class:`~train_dpo.config.DPOTrainConfig` field (None there: the family's
            default); :func:`train_dpo.families.load_family` refuses one a family does not take.
    """

    name: ClassVar[str]
    lora_targets: ClassVar[tuple[str, ...]]
    load_options: ClassVar[tuple[str, ...]] = ()

    # ---- loading ------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def load(
        cls, base_model: str | os.PathLike, dtype: torch.dtype, **options
    ) -> tuple[torch.nn.Module, "ModelFamily"]:
        """Load the transformer (weights in ``dtype``) of the pipeline folder or hub id ``base_model``
        and return it with the family object bound to it. Loads nothing else heavy (no VAE, no text
        encoder: training reads encoded latents). ``options``: the family's :attr:`load_options`.

        Raises:
            utils.hub.HubModelError (via ``check_hub_model``): the model is neither a local folder nor
            in the hub cache and cannot be downloaded.
        """

    # ---- model facts ----------------------------------------------------------------------------
    @abstractmethod
    def requires_image(self) -> bool:
        """True when every sample needs image-conditioning latents (CogVideoX-I2V); False when
        images are not accepted (CogVideoX T2V) or optional (Wan2.2-TI2V: batches with or without)."""

    @abstractmethod
    def check_item(self, item: dict[str, Any]) -> None:
        """Check one dataset item (``latents_w`` ``latents_l``, ``prompt_embeds``, optional
        ``image_latents``; unbatched) against the model before training starts.

        Raises:
            ValueError: a message naming what does not fit (channels, text width, missing or
                unexpected image latents, shapes) and the likely cause (encoded for another model).
        """

    # ---- one training evaluation --------------------------------------------------------------
    def prepare_latents(self, x0: torch.Tensor) -> torch.Tensor:
        """Clean latents ``[B, ...]`` (the stored layout, batched) as the transformer takes them
        (e.g. CogVideoX1.5 pads the latent frames to a multiple of ``patch_size_t``). Identity by
        default. Runs before the noise is drawn: the noise has the shape of its result."""
        return x0

    @abstractmethod
    def sample_timesteps(self, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        """Training timesteps, int64 ``[batch_size]`` on the CPU, drawn with ``generator``."""

    @abstractmethod
    def model_inputs(
        self,
        x0: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        prompt_embeds: torch.Tensor,
        image_latents: torch.Tensor | None = None,
    ) -> tuple[dict[str, Any], torch.Tensor]:
        """Noise ``x0`` and build the transformer's keyword arguments, as the family's diffusers
        pipeline calls its transformer.

        Args:
            x0: clean latents from :meth:`prepare_latents`, float32 ``[N, ...]``.
            noise: standard normal, same shape as ``x0``.
            timesteps: int64 ``[N]``.
            prompt_embeds: text-encoder states ``[N, L, D]``.
            image_latents: image-conditioning latents ``[N, ...]`` or None.

        Returns:
            ``(inputs, target)``: ``transformer(**inputs, return_dict=False)[0]`` is the model's
            prediction, and ``target`` (float32) is what :meth:`prediction` of it is regressed onto
            (v-prediction ``v = sqrt(a) eps - sqrt(1 - a) x0`` for CogVideoX, velocity
            ``noise - x0`` for flow matching).

        Raises:
            ValueError: image latents missing for a model that requires them, or given to one that
                does not accept them; shapes that do not fit.
        """

    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        """The transformer's output as a tensor comparable with ``target`` (identity by default)."""
        return output
