"""Diffusion-DPO LoRA training of the CogVideoX transformer in PyTorch Lightning.

One :class:`VideoDPOModule` serves CogVideoX-5B (text-to-video), CogVideoX-5B-I2V and
CogVideoX1.5-5B; what differs is read from the transformer's config, the way the diffusers
pipelines do it:

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
* **image conditioning** (I2V: ``in_channels = 2 x out_channels``): noisy latents first, then the
  image latents, concatenated on the channel axis (``torch.cat([latents, image_latents], dim=2)``);
* **ofs embedding** (``ofs_embed_dim``, CogVideoX1.5-I2V): ``latents.new_full((1,), 2.0)`` as the
  pipeline passes it.

Training step (Diffusion-DPO, Wallace et al. 2023, arXiv 2311.12908; VideoGPA arXiv 2601.23286):
winner and loser latents share one noise draw and one timestep ``t ~ U{0, ..., T-1}``;
``x_t = scheduler.add_noise(x0, eps, t)``, target ``v = scheduler.get_velocity(x0, eps, t)``
(v-prediction); both go through **one batched forward** (winner and loser concatenated on the
batch axis) of the LoRA policy and one batched forward of the reference, which is the *same*
transformer with the adapter switched off (``with peft_model.disable_adapter():`` under
``no_grad``), so the base weights exist once in memory. Loss: :mod:`train_dpo.loss`.

``objective="sft"`` (the paper's ablation) trains the same LoRA on the winner of each selected pair
only, with the plain v-prediction loss (:func:`train_dpo.loss.sft_loss`): one forward of the winners,
no reference pass. Validation runs the DPO evaluation for either objective, so the held-out implicit
accuracy and reward margin of the two arms compare; its ``loss`` is the trained objective's.

Checkpoints hold only what is trained: PEFT adapter folders (``checkpoint-{step}/`` every
``checkpoint_every`` optimiser steps and ``final_lora/``, the released format, via
``utils.lora.save_lora_adapter``) and a resumable Lightning checkpoint
``lightning/last.ckpt`` (LoRA weights, optimiser, LR scheduler, loop state; the frozen base weights
are dropped in :meth:`VideoDPOModule.on_save_checkpoint` and ``strict_loading`` is off).

Entry point: :func:`train` (config in, result out); the command line of
``train_dpo/<model>/04_train.py`` is :mod:`train_dpo.train_cli`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from train_dpo.dataset import PairSelectionConfig, load_preference_datasets
from train_dpo.loss import DPOLossOutput, SFTLossOutput, diffusion_dpo_loss, sft_loss
from train_dpo.resumable_loader import ResumableDataLoader
from utils.io_utils import atomic_write_json

logger = logging.getLogger(__name__)

OBJECTIVES = ("dpo", "sft")  # Diffusion-DPO on pairs; supervised v-prediction on the winners

__all__ = [
    "DPOTrainConfig",
    "pad_latent_frames",
    "prepare_rotary_positional_embeddings",
    "build_transformer_inputs",
    "VideoDPOModule",
    "DPOCheckpointCallback",
    "check_batch_fits_model",
    "check_objective",
    "OBJECTIVES",
    "resolve_num_devices",
    "resolve_grad_accum",
    "TrainResult",
    "load_base_components",
    "train",
]


# ------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------


@dataclass
class DPOTrainConfig:
    """Everything one DPO run needs. Defaults are the released VideoGPA training settings of
    CogVideoX-5B T2V (upstream ``train_dpo/CogVideoX-5B_lora/03_train.py:DEFAULT_CONFIG``; the
    per-model scripts set the others: I2V batch size 2, CogVideoX1.5 1,500 steps and weight decay
    1e-3).

    Data: ``train_json`` is the encoded JSON of ``03_encode.py``; paths in it are relative to
    ``base_path`` (None: the JSON's folder, joined with its ``"video_root"`` when present).
    Pair selection: see :mod:`train_dpo.dataset`. Optimiser: AdamW on the LoRA weights only, cosine
    schedule with ``warmup_steps`` linear warm-up over ``max_steps`` optimiser steps.
    Batch: ``global_batch`` pairs per optimiser step = ``batch_size`` (per device) x devices x
    ``num_nodes`` x gradient accumulation; the accumulation is derived from it
    (:func:`resolve_grad_accum`; the released run: 8 GPUs x 1 x 2 = 16, I2V 8 x 2 x 1) unless
    ``grad_accum`` is given. ``precision`` None:
    ``"bf16-mixed"`` on CUDA (base weights stored in bf16, LoRA weights in fp32), ``"32-true"`` on
    CPU. ``devices``: int, list or ``"auto"``; DDP is used when more than one device or node.
    ``resume``: None, ``"auto"`` (``output_dir/lightning/last.ckpt`` if present) or a ``.ckpt`` path.
    ``loggers``: any of ``"csv"``, ``"tensorboard"``, ``"wandb"`` (W&B only when installed).
    ``objective``: ``"dpo"`` (Diffusion-DPO) or ``"sft"`` (winners only, v-prediction MSE; ``beta``,
    ``label_smoothing`` and ``loss_type`` then only shape the validation's DPO diagnostics).
    """

    base_model: str = ""
    train_json: str = ""
    output_dir: str = "outputs/dpo"
    base_path: str | None = None
    # pair selection
    metric_name: str = "consistency_score"
    metric_mode: str = "min"
    min_gap: float = 0.05
    metric_threshold: float | None = None
    motion_threshold: float | None = 0.001
    motion_metric: str = "motion_norm_released"
    val_fraction: float = 0.02
    split_seed: int = 0
    # objective
    objective: str = "dpo"
    beta: float = 1.0
    label_smoothing: float = 0.0
    loss_type: str = "sigmoid"
    # optimisation
    learning_rate: float = 5e-6
    max_steps: int = 10000
    warmup_steps: int = 500
    global_batch: int | None = 16
    batch_size: int = 1
    grad_accum: int | None = None
    max_grad_norm: float = 1.0
    # AdamW as in the released VideoGPA training (torch.optim.AdamW defaults; CogVideoX1.5: 1e-3 decay)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 0.01
    adam_epsilon: float = 1e-8
    # LoRA (released adapters: r 64, alpha 128, dropout 0, to_q/to_k/to_v/to_out.0)
    lora_rank: int = 64
    lora_alpha: float = 128.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    gradient_checkpointing: bool = True
    # checkpoints, validation, logging
    checkpoint_every: int = 1000
    val_every: int | None = None
    limit_val_batches: int | float | None = None
    log_every: int = 10
    loggers: tuple[str, ...] = ("csv", "tensorboard")
    wandb_project: str = "videogpa"
    run_name: str | None = None
    resume: str | None = None
    # hardware
    precision: str | None = None
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str | None = None
    num_workers: int = 2
    seed: int = 42
    progress_bar: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def selection(self) -> PairSelectionConfig:
        """The :class:`~train_dpo.dataset.PairSelectionConfig` of this run."""
        return PairSelectionConfig(
            metric_name=self.metric_name,
            metric_mode=self.metric_mode,
            min_gap=self.min_gap,
            metric_threshold=self.metric_threshold,
            motion_threshold=self.motion_threshold,
            motion_metric=self.motion_metric,
        )


def check_objective(objective: str) -> None:
    """Raises ValueError naming ``objective`` unless it is one of :data:`OBJECTIVES`."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")


def _use_cuda(cfg: DPOTrainConfig) -> bool:
    return torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")


def resolve_precision(cfg: DPOTrainConfig) -> str:
    """``cfg.precision`` or ``"bf16-mixed"`` on CUDA / ``"32-true"`` on CPU."""
    if cfg.precision:
        return cfg.precision
    return "bf16-mixed" if _use_cuda(cfg) else "32-true"


def _weight_dtype(precision: str) -> torch.dtype:
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return torch.float32


# ------------------------------------------------------------------------------------------------
# model inputs, exactly as the diffusers pipelines build them
# ------------------------------------------------------------------------------------------------


def _cfg_get(config, key, default=None):
    if isinstance(config, dict):
        return config.get(key, default)
    return getattr(config, key, default)


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
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    p = _cfg_get(transformer_config, "patch_size")
    p_t = _cfg_get(transformer_config, "patch_size_t")
    head_dim = _cfg_get(transformer_config, "attention_head_dim")
    grid_height = height // (vae_scale_factor_spatial * p)
    grid_width = width // (vae_scale_factor_spatial * p)
    base_size_width = _cfg_get(transformer_config, "sample_width") // p
    base_size_height = _cfg_get(transformer_config, "sample_height") // p
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

    Returns:
        ``{"hidden_states", "encoder_hidden_states", "timestep", "image_rotary_emb"}`` plus ``"ofs"``
        when ``ofs_embed_dim`` is set (I2V pipeline semantics).

    Raises:
        ValueError: I2V model without ``image_latents`` (or T2V with them), frame count not a
            multiple of ``patch_size_t``, or image/video latent shapes that differ.
    """
    in_ch = _cfg_get(transformer_config, "in_channels")
    p_t = _cfg_get(transformer_config, "patch_size_t")
    _, f, c, h, w = noisy_latents.shape
    if p_t and f % p_t:
        raise ValueError(f"latent frames {f} not a multiple of patch_size_t {p_t}; use pad_latent_frames")
    hidden = noisy_latents
    if image_latents is not None:
        if in_ch != 2 * c:
            raise ValueError(f"image_latents given but transformer in_channels {in_ch} != 2 x {c}")
        if image_latents.shape != noisy_latents.shape:
            raise ValueError(
                f"image latents {tuple(image_latents.shape)} and video latents "
                f"{tuple(noisy_latents.shape)} differ"
            )
        hidden = torch.cat([noisy_latents, image_latents.to(noisy_latents.dtype)], dim=2)
    elif in_ch != c:
        raise ValueError(
            f"transformer expects {in_ch} input channels, latents have {c} (I2V needs image_latents)"
        )
    inputs: dict[str, Any] = {
        "hidden_states": hidden,
        "encoder_hidden_states": prompt_embeds,
        "timestep": timesteps,
    }
    rotary = None
    if _cfg_get(transformer_config, "use_rotary_positional_embeddings"):
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
    if _cfg_get(transformer_config, "ofs_embed_dim") is not None:
        inputs["ofs"] = noisy_latents.new_full((1,), fill_value=2.0)
    return inputs


# ------------------------------------------------------------------------------------------------
# Lightning module
# ------------------------------------------------------------------------------------------------


def load_base_components(base_model: str | os.PathLike, dtype: torch.dtype = torch.float32):
    """Load ``(transformer, scheduler, vae_scale_factor_spatial)`` of a CogVideoX pipeline folder.

    Only the transformer's weights are loaded (in ``dtype``); the scheduler is
    ``CogVideoXDDIMScheduler`` (same ``alphas_cumprod`` as CogVideoXDPMScheduler); the VAE scale
    factor is read from ``vae/config.json`` (8 if absent).
    """
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    from utils.hub import check_hub_model

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
    return transformer, scheduler, sf


class VideoDPOModule(pl.LightningModule):
    """Diffusion-DPO with a LoRA on a CogVideoX transformer (T2V, I2V, 1.5).

    Args:
        transformer: ``CogVideoXTransformer3DModel`` (frozen; wrapped in a ``peft.PeftModel``
            with ``utils.lora.make_lora_config(cfg.lora_rank, cfg.lora_alpha, ...)``).
        scheduler: ``CogVideoXDDIMScheduler`` (v-prediction) for ``add_noise``/``get_velocity``.
        cfg: :class:`DPOTrainConfig`.
        vae_scale_factor_spatial: pixels per latent (8).

    Batches (from :class:`~train_dpo.dataset.DPOPairDataset`): ``latents_w``, ``latents_l``
    ``[B, F, C, H, W]``, ``prompt_embeds`` ``[B, 226, D]``, ``image_latents`` (I2V).
    """

    def __init__(self, transformer, scheduler, cfg: DPOTrainConfig, vae_scale_factor_spatial: int = 8):
        super().__init__()
        from peft import get_peft_model

        check_objective(cfg.objective)
        from utils.lora import make_lora_config

        self.cfg = cfg
        self.scheduler = scheduler
        self.vae_scale_factor_spatial = int(vae_scale_factor_spatial)
        transformer.requires_grad_(False)
        if cfg.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        lora_config = make_lora_config(cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
        self.transformer = get_peft_model(transformer, lora_config)
        self.transformer.train()  # diffusers loads in eval mode; dropout is 0 in every CogVideoX
        if resolve_precision(cfg).endswith("-mixed"):  # LoRA weights in fp32 (base may be bf16)
            for p in self.transformer.parameters():
                if p.requires_grad and p.dtype != torch.float32:
                    p.data = p.data.float()
        self.transformer_config = transformer.config
        self.is_i2v = transformer.config.in_channels == 2 * transformer.config.out_channels
        self.strict_loading = False  # checkpoints carry only the LoRA weights
        self._rotary_cache: dict = {}
        self._train_gen: torch.Generator | None = None
        self._micro_step, self._micro = -1, 0
        self._val_buf: list[torch.Tensor] = []
        self.val_history: list[dict[str, float]] = []
        self.save_hyperparameters({"config": _jsonable(asdict(cfg))})

    # ---- model ------------------------------------------------------------------------------
    @property
    def base_transformer(self):
        """The wrapped ``CogVideoXTransformer3DModel`` (with LoRA layers injected)."""
        return self.transformer.get_base_model()

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The LoRA weights (the only parameters with ``requires_grad``)."""
        return [p for p in self.transformer.parameters() if p.requires_grad]

    def build_transformer_inputs(self, noisy_latents, timesteps, prompt_embeds, image_latents=None) -> dict:
        """:func:`build_transformer_inputs` with this model's config (see there)."""
        return build_transformer_inputs(
            self.transformer_config, noisy_latents, timesteps, prompt_embeds, image_latents,
            self.vae_scale_factor_spatial, self._rotary_cache,
        )  # fmt: skip

    def forward(self, inputs: dict[str, Any], reference: bool = False) -> torch.Tensor:
        """v-prediction ``[B, F, C_out, H, W]`` for transformer ``inputs``; ``reference=True`` runs
        the same transformer with the LoRA adapter disabled, under ``no_grad``."""
        if reference:
            with torch.no_grad(), self.transformer.disable_adapter():
                return self.transformer(**inputs, return_dict=False)[0]
        return self.transformer(**inputs, return_dict=False)[0]

    # ---- one DPO / SFT evaluation -------------------------------------------------------------
    def noised_inputs(
        self, batch: dict[str, Any], keys: Sequence[str], generator: torch.Generator | None = None
    ) -> tuple[dict[str, Any], torch.Tensor]:
        """Noise the latents ``batch[k]`` for ``k`` in ``keys``, all with one shared draw.

        ``generator`` (CPU) draws the noise ``[B, F', C, H, W]`` first, then the timesteps ``[B]``
        (``t ~ U{0, ..., T-1}``); every latent of a sample gets the same noise and ``t``.

        Returns:
            ``(inputs, target)``: transformer inputs of the ``len(keys) * B`` latents concatenated
            on the batch axis (in ``keys`` order, frames padded for CogVideoX1.5) and their float32
            v-targets ``[len(keys) * B, F', C, H, W]``.

        Raises:
            ValueError: I2V model and the batch has no ``image_latents``.
        """
        k = len(keys)
        x0 = pad_latent_frames(torch.cat([batch[key] for key in keys], dim=0).float(),
                               self.transformer_config.patch_size_t)  # fmt: skip
        b = batch[keys[0]].shape[0]
        noise = torch.randn(x0[:b].shape, generator=generator, dtype=torch.float32).to(x0.device)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (b,), generator=generator)
        noise, t = torch.cat([noise] * k, dim=0), torch.cat([t] * k, dim=0).to(x0.device)
        noisy = self.scheduler.add_noise(x0, noise, t)
        target = self.scheduler.get_velocity(x0, noise, t)
        prompt = torch.cat([batch["prompt_embeds"]] * k, dim=0).float()
        image = batch.get("image_latents")
        if self.is_i2v and image is None:
            raise ValueError("I2V model: the batch has no image_latents (encode with the I2V 03_encode.py)")
        if image is not None:
            image = torch.cat([image] * k, dim=0).float()
        return self.build_transformer_inputs(noisy, t, prompt, image), target

    def dpo_step(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> DPOLossOutput:
        """Noise winner and loser alike, one batched reference pass, one batched policy pass, DPO loss."""
        inputs, target = self.noised_inputs(batch, ("latents_w", "latents_l"), generator)
        b = batch["latents_w"].shape[0]
        ref = self(inputs, reference=True)
        pred = self(inputs)
        return diffusion_dpo_loss(
            pred[:b], pred[b:], ref[:b], ref[b:], target[:b], target[b:],
            beta=self.cfg.beta, label_smoothing=self.cfg.label_smoothing, loss_type=self.cfg.loss_type,
        )  # fmt: skip

    def sft_step(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> SFTLossOutput:
        """One policy pass on the winners, v-prediction MSE (no loser, no reference). With the same
        ``generator`` state the winners get the noise and timesteps :meth:`dpo_step` gives them."""
        inputs, target = self.noised_inputs(batch, ("latents_w",), generator)
        return sft_loss(self(inputs), target)

    # ---- Lightning hooks ----------------------------------------------------------------------
    def on_train_start(self) -> None:
        # on_train_start, not on_fit_start: Lightning restores global_step from a resumed checkpoint
        # between the two, and a resumed run must not replay the noise/timesteps of step 0
        seed = int(self.cfg.seed) * 1_000_003 + 7919 * int(self.global_rank) + int(self.global_step)
        self._train_gen = torch.Generator().manual_seed(seed)

    def training_step(self, batch, batch_idx):
        # noise and timesteps of each micro-batch are a function of (seed, rank, optimiser step,
        # micro-batch within the step), so a run resumed from last.ckpt draws what an
        # uninterrupted run would have drawn
        step = int(self.global_step)
        self._micro = self._micro + 1 if self._micro_step == step else 0
        self._micro_step = step
        seed = int(self.cfg.seed) * 1_000_003 + 7919 * int(self.global_rank) + 104_729 * step + self._micro
        self._train_gen = torch.Generator().manual_seed(seed)
        sft = self.cfg.objective == "sft"
        out = self.sft_step(batch, self._train_gen) if sft else self.dpo_step(batch, self._train_gen)
        bsz = batch["latents_w"].shape[0]
        metrics = {f"train/{k}": v for k, v in out.metrics().items()}
        sched = self.lr_schedulers()
        if sched is not None:
            metrics["train/lr"] = float(sched.get_last_lr()[0])
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=bsz)
        bar = ("sft_loss", out.loss) if sft else ("train/acc", out.accuracy)  # progress bar only
        self.log(*bar, on_step=True, prog_bar=True, logger=False, batch_size=bsz)
        return out.loss

    def validation_step(self, batch, batch_idx):
        # the DPO evaluation for either objective; the SFT loss is its winner error (same draw)
        gen = torch.Generator().manual_seed(int(self.cfg.seed) * 7_368_787 + 104_729 + int(batch_idx))
        out = self.dpo_step(batch, gen)
        bsz = batch["latents_w"].shape[0]
        metrics = out.metrics()
        losses = out.losses
        if self.cfg.objective == "sft":
            metrics = {"sft_loss": float(out.err_w.mean()), "dpo_loss": metrics.pop("loss"), **metrics}
            losses = out.err_w
        self.log_dict(
            {f"val/{k}": v for k, v in metrics.items()},
            on_step=False, on_epoch=True, batch_size=bsz, sync_dist=True,
        )  # fmt: skip
        self._val_buf.append(torch.stack([out.logits.detach().float(), losses.detach().float()], 1))
        return losses.mean()

    def on_validation_epoch_start(self) -> None:
        self._val_buf = []

    def on_validation_epoch_end(self) -> None:
        if not self._val_buf:
            return
        buf = torch.cat(self._val_buf, 0)
        if self.trainer is not None and self.trainer.world_size > 1:
            buf = self.all_gather(buf).reshape(-1, 2)
        logits, losses = buf[:, 0], buf[:, 1]
        entry = {
            "step": int(self.global_step),
            "val_pairs": int(logits.numel()),
            "accuracy": float((logits > 0).float().mean()),
            "reward_margin": float(logits.mean()),
            "loss": float(losses.mean()),  # the trained objective's (DPO: sigmoid/hinge, smoothing)
        }
        self.val_history.append(entry)
        self._val_buf = []

    def configure_optimizers(self):
        from diffusers.optimization import get_cosine_schedule_with_warmup

        params = self.trainable_parameters()
        if not params:
            raise RuntimeError("no trainable LoRA parameters")
        opt = torch.optim.AdamW(
            params,
            lr=self.cfg.learning_rate,
            betas=(self.cfg.adam_beta1, self.cfg.adam_beta2),
            weight_decay=self.cfg.adam_weight_decay,
            eps=self.cfg.adam_epsilon,
        )
        sched = get_cosine_schedule_with_warmup(opt, self.cfg.warmup_steps, self.cfg.max_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        trainable = {f"transformer.{n}" for n, p in self.transformer.named_parameters() if p.requires_grad}
        sd = checkpoint.get("state_dict", {})
        checkpoint["state_dict"] = {k: v for k, v in sd.items() if k in trainable}
        checkpoint["videogpa"] = {"format": "videogpa-dpo-lora-v1", "val_history": list(self.val_history)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        trainable = {f"transformer.{n}" for n, p in self.transformer.named_parameters() if p.requires_grad}
        keys = set(checkpoint.get("state_dict", {}))
        missing = trainable - keys
        if missing:
            raise RuntimeError(
                f"checkpoint lacks {len(missing)} LoRA weight(s) of this model (different rank/targets?), "
                f"e.g. {sorted(missing)[0]}"
            )
        self.val_history = list(checkpoint.get("videogpa", {}).get("val_history", []))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------


class DPOCheckpointCallback(pl.Callback):
    """Every ``every_n_steps`` optimiser steps (and at the end of training) write the PEFT adapter
    (``output_dir/checkpoint-{step}/``; at the end ``output_dir/final_lora/``) and the resumable
    Lightning checkpoint ``output_dir/lightning/last.ckpt`` (replaced atomically)."""

    def __init__(self, output_dir: str | os.PathLike, every_n_steps: int):
        self.output_dir = Path(output_dir)
        self.every_n_steps = int(every_n_steps)
        self._last_saved = -1

    @property
    def last_ckpt(self) -> Path:
        return self.output_dir / "lightning" / "last.ckpt"

    def _save_lightning(self, trainer: pl.Trainer) -> None:
        path = self.last_ckpt
        tmp = path.with_name(f".last.{os.getpid()}.tmp.ckpt")
        if trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(str(tmp))
        if trainer.is_global_zero:
            os.replace(tmp, path)

    def _save(self, trainer: pl.Trainer, pl_module: VideoDPOModule, folder: str) -> None:
        from utils.lora import save_lora_adapter

        if trainer.is_global_zero:
            save_lora_adapter(pl_module.transformer, self.output_dir / folder)
            logger.info("saved LoRA adapter %s", self.output_dir / folder)
        self._save_lightning(trainer)
        self._last_saved = trainer.global_step

    def on_train_start(self, trainer, pl_module) -> None:
        # a resumed run starts at a step that was saved already; saving it again (after the first
        # micro-batch of an accumulation) would overwrite last.ckpt with a mid-accumulation state
        self._last_saved = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if (
            self.every_n_steps > 0
            and step > 0
            and step % self.every_n_steps == 0
            and step != self._last_saved
        ):
            self._save(trainer, pl_module, f"checkpoint-{step}")

    def on_train_end(self, trainer, pl_module) -> None:
        from utils.lora import save_lora_adapter

        if trainer.is_global_zero:
            save_lora_adapter(pl_module.transformer, self.output_dir / "final_lora")
        if trainer.global_step != self._last_saved:
            self._save_lightning(trainer)
            self._last_saved = trainer.global_step


# ------------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What :func:`train` returns: the fitted module and trainer, the output folders, the data stats
    (:func:`~train_dpo.dataset.select_preference_pairs` + split sizes), the validation history
    ``[{"step", "accuracy", "reward_margin", "loss", "val_pairs"}]`` and the wall time."""

    module: VideoDPOModule
    trainer: pl.Trainer
    output_dir: Path
    final_lora: Path
    last_ckpt: Path
    data_stats: dict[str, Any]
    val_history: list[dict[str, float]]
    seconds: float


def _make_loggers(cfg: DPOTrainConfig, out: Path):
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    loggers = []
    for name in cfg.loggers:
        if name == "csv":
            loggers.append(CSVLogger(str(out), name="logs"))
        elif name == "tensorboard":
            try:
                loggers.append(TensorBoardLogger(str(out), name="tensorboard"))
            except ModuleNotFoundError as e:
                logger.warning("TensorBoard logging off: %s", e)
        elif name == "wandb":
            try:
                import wandb  # noqa: F401
                from pytorch_lightning.loggers import WandbLogger

                loggers.append(WandbLogger(project=cfg.wandb_project, name=cfg.run_name, save_dir=str(out)))
            except ModuleNotFoundError:
                logger.warning("W&B logging requested but wandb is not installed; skipped")
        else:
            raise ValueError(f"unknown logger {name!r}; choose from csv, tensorboard, wandb")
    return loggers or False


def resolve_num_devices(devices: Any, accelerator: str = "auto") -> int:
    """How many training processes per node Lightning starts for ``devices``.

    Args:
        devices: as ``pl.Trainer(devices=...)``: ``"auto"``, an int (``-1``: every GPU), a list of
            GPU indices, or a string of one of these (``"2"``, ``"0,1,2"``).
        accelerator: ``"auto"``/``"gpu"``/``"cuda"`` use CUDA when available; otherwise CPU.

    Returns:
        int >= 1: the list length, the int, or for ``"auto"``/``-1`` the visible CUDA devices
        (CUDA in use) or 1 (CPU).

    Raises:
        ValueError: 0 or a negative count other than -1, or an unparsable string.
    """
    use_cuda = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto":
            return max(1, torch.cuda.device_count()) if use_cuda else 1
        if "," in text:
            return len([x for x in text.split(",") if x.strip()])
        try:
            devices = int(text)
        except ValueError:
            raise ValueError(f"devices must be 'auto', an int or a list like 0,1; got {devices!r}") from None
    if isinstance(devices, (list, tuple)):
        if not devices:
            raise ValueError("devices is an empty list")
        return len(devices)
    n = int(devices)
    if n == -1:
        return max(1, torch.cuda.device_count()) if use_cuda else 1
    if n < 1:
        raise ValueError(f"devices must be >= 1, -1 or 'auto'; got {devices!r}")
    return n


def resolve_grad_accum(cfg: DPOTrainConfig, num_devices: int) -> tuple[int, int]:
    """Gradient accumulation and the resulting global batch (pairs per optimiser step).

    ``cfg.grad_accum`` None: ``global_batch / (num_devices x num_nodes x batch_size)``, which must
    divide. An explicit ``cfg.grad_accum`` is used as given, with a warning when it changes the
    global batch. ``global_batch`` None and ``grad_accum`` None: accumulation 1.

    Returns:
        ``(grad_accum, global_batch)``.

    Raises:
        ValueError: batch size, accumulation or global batch < 1, or a global batch that the
            processes x per-device batch do not divide (the message says what to change).
    """
    if cfg.batch_size < 1 or cfg.num_nodes < 1:
        raise ValueError(f"batch_size and num_nodes must be >= 1, got {cfg.batch_size} and {cfg.num_nodes}")
    per_step = num_devices * cfg.num_nodes * cfg.batch_size
    how = f"{num_devices} device(s) x {cfg.num_nodes} node(s) x batch size {cfg.batch_size} = {per_step}"
    if cfg.grad_accum is not None:
        if cfg.grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1, got {cfg.grad_accum}")
        total = per_step * cfg.grad_accum
        if cfg.global_batch is not None and total != cfg.global_batch:
            logger.warning(
                "--grad_accum %d overrides GLOBAL_BATCH %d: %s pairs per micro-step -> global batch %d",
                cfg.grad_accum, cfg.global_batch, how, total,
            )  # fmt: skip
        return cfg.grad_accum, total
    if cfg.global_batch is None:
        return 1, per_step
    if cfg.global_batch < 1:
        raise ValueError(f"global_batch must be >= 1, got {cfg.global_batch}")
    if cfg.global_batch % per_step:
        raise ValueError(
            f"global batch {cfg.global_batch} is not a multiple of {how} pairs per micro-step; "
            "change --global_batch, --batch_size or the device count, or give --grad_accum explicitly"
        )
    return cfg.global_batch // per_step, cfg.global_batch


def _strategy(cfg: DPOTrainConfig, num_devices: int):
    if cfg.strategy:
        return cfg.strategy
    if num_devices > 1 or cfg.num_nodes > 1:
        from pytorch_lightning.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=False)
    return "auto"


def check_batch_fits_model(item: dict[str, Any], transformer_config) -> None:
    """Check one dataset item against the transformer before training starts.

    Raises:
        ValueError: I2V model without ``image_latents`` (or T2V with them), latent channels or text
            width that do not match, or image latents whose frame count differs from the padded
            video latents.
    """
    cfg = transformer_config
    lat = item["latents_w"]
    if lat.dim() != 4:
        raise ValueError(f"latents must be [F, C, H, W], got {tuple(lat.shape)}")
    f, c, h, w = lat.shape
    if c != cfg.out_channels:
        raise ValueError(
            f"latents have {c} channels, the transformer predicts {cfg.out_channels} (other model?)"
        )
    if item["prompt_embeds"].shape[-1] != cfg.text_embed_dim:
        raise ValueError(
            f"prompt embeddings have width {item['prompt_embeds'].shape[-1]}, the transformer expects "
            f"{cfg.text_embed_dim} (encoded with another model?)"
        )
    is_i2v = cfg.in_channels == 2 * cfg.out_channels
    img = item.get("image_latents")
    if is_i2v and img is None:
        raise ValueError(
            "image-to-video model but the data has no image_latents (encode with the I2V 03_encode.py)"
        )
    if not is_i2v and img is not None:
        raise ValueError("text-to-video model but the data has image_latents (encoded for an I2V model?)")
    if img is not None:
        f_pad = f + ((-f) % cfg.patch_size_t if cfg.patch_size_t else 0)
        if tuple(img.shape) != (f_pad, c, h, w):
            raise ValueError(
                f"image latents {tuple(img.shape)} do not match the video latents {(f_pad, c, h, w)}"
            )


def train(
    cfg: DPOTrainConfig,
    callbacks: Sequence[pl.Callback] | None = None,
    components: tuple | None = None,
) -> TrainResult:
    """Run Diffusion-DPO (or, with ``cfg.objective = "sft"``, supervised) LoRA training.

    Args:
        cfg: :class:`DPOTrainConfig`.
        callbacks: extra Lightning callbacks.
        components: ``(transformer, scheduler, vae_scale_factor_spatial)`` instead of loading
            ``cfg.base_model`` (tests, benchmarks).

    Returns:
        :class:`TrainResult`; the adapter is at ``output_dir/final_lora`` (loadable by
        ``generate/t2v_inference.py --lora_path`` / ``i2v_inference.py``).

    Raises:
        JSONInputError: missing/malformed ``train_json``. ValueError: no preference pairs survive
        the filters; bad settings (an unknown ``objective``...). FileNotFoundError: ``resume`` path missing.
    """
    t0 = time.time()
    check_objective(cfg.objective)
    num_devices = resolve_num_devices(cfg.devices, cfg.accelerator)
    grad_accum, global_batch = resolve_grad_accum(cfg, num_devices)  # before any slow loading
    logger.info(
        "global batch: %d pairs per optimiser step = %d device(s) x %d node(s) x batch size %d x "
        "accumulation %d", global_batch, num_devices, cfg.num_nodes, cfg.batch_size, grad_accum,
    )  # fmt: skip
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    precision = resolve_precision(cfg)
    wdtype = _weight_dtype(precision)
    if components is None:
        components = load_base_components(cfg.base_model, wdtype)
    transformer, scheduler, sf = components
    is_i2v = transformer.config.in_channels == 2 * transformer.config.out_channels
    train_ds, val_ds, stats = load_preference_datasets(
        cfg.train_json,
        cfg.base_path,
        cfg.selection(),
        cfg.val_fraction,
        cfg.split_seed,
        dtype=None,
        require_image_latents=is_i2v,
    )
    logger.info("data: %d train pairs, %d val pairs", len(train_ds), len(val_ds))
    try:
        check_batch_fits_model(train_ds[0], transformer.config)
    except (KeyError, FileNotFoundError) as e:
        raise ValueError(f"cannot load the first training pair: {e}") from e
    module = VideoDPOModule(transformer, scheduler, cfg, sf)

    ckpt_cb = DPOCheckpointCallback(out, cfg.checkpoint_every)
    resume = cfg.resume
    if resume in ("auto", "latest"):
        resume = str(ckpt_cb.last_ckpt) if ckpt_cb.last_ckpt.is_file() else None
    elif resume and not Path(resume).is_file():
        raise FileNotFoundError(f"resume checkpoint not found: {resume}")

    loader_kw = dict(
        num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0, pin_memory=_use_cuda(cfg)
    )
    # single process: an order fixed by (seed, epoch) that resumes mid-epoch (train_dpo/resumable_loader.py)
    distributed = _strategy(cfg, num_devices) != "auto"
    train_dl = (DataLoader(train_ds, shuffle=True, batch_size=cfg.batch_size,
                           drop_last=len(train_ds) >= cfg.batch_size, **loader_kw) if distributed else
                ResumableDataLoader(train_ds, cfg.batch_size, cfg.seed,
                                    drop_last=len(train_ds) >= cfg.batch_size, **loader_kw))  # fmt: skip
    val_dl = (
        DataLoader(val_ds, batch_size=cfg.batch_size, shuffle=False, **loader_kw) if len(val_ds) else None
    )
    val_every = cfg.val_every or cfg.checkpoint_every
    trainer = pl.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=_strategy(cfg, num_devices),
        precision=precision,
        max_steps=cfg.max_steps,
        max_epochs=-1,
        accumulate_grad_batches=grad_accum,
        gradient_clip_val=cfg.max_grad_norm if cfg.max_grad_norm and cfg.max_grad_norm > 0 else None,
        gradient_clip_algorithm="norm",
        val_check_interval=max(1, val_every * grad_accum) if val_dl is not None else None,
        check_val_every_n_epoch=None,
        limit_val_batches=cfg.limit_val_batches if val_dl is not None else 0,
        num_sanity_val_steps=0,
        log_every_n_steps=cfg.log_every,
        logger=_make_loggers(cfg, out),
        callbacks=[ckpt_cb, *(callbacks or [])],
        enable_checkpointing=False,
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
        default_root_dir=str(out),
        use_distributed_sampler=True,
    )
    if trainer.is_global_zero:
        batch = {"global_batch": global_batch, "devices": num_devices, "num_nodes": cfg.num_nodes,
                 "batch_size": cfg.batch_size, "grad_accum": grad_accum}  # fmt: skip
        info = {"config": _jsonable(asdict(cfg)), "data": _jsonable(stats), "precision": precision,
                "batch": batch}  # fmt: skip
        atomic_write_json(out / "train_config.json", info)
    trainer.fit(module, train_dataloaders=train_dl, val_dataloaders=val_dl, ckpt_path=resume)
    if trainer.is_global_zero:
        atomic_write_json(out / "val_history.json", module.val_history)
    return TrainResult(
        module=module,
        trainer=trainer,
        output_dir=out,
        final_lora=out / "final_lora",
        last_ckpt=ckpt_cb.last_ckpt,
        data_stats=stats,
        val_history=list(module.val_history),
        seconds=time.time() - t0,
    )
