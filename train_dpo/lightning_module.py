"""The Diffusion-DPO LightningModule: a LoRA on a video diffusion transformer, any model family.

Contract: :class:`DiffusionDPOModule` ``(transformer, family, cfg)`` knows no model; everything
model-specific (latent layout, noise/target rule, transformer inputs) goes through the
:class:`~train_dpo.families.base.ModelFamily` object ``family``.

Training step (Diffusion-DPO, Wallace et al. 2023, arXiv 2311.12908; VideoGPA arXiv 2601.23286):
winner and loser latents share one noise draw and one timestep (drawn in that order with a CPU
generator seeded by (seed, rank, optimiser step, micro-batch), so a resumed run replays the draws of
an uninterrupted one); both go through **one batched forward** (winner and loser concatenated on
the batch axis) of the LoRA policy and one batched forward of the reference, which is the *same*
transformer with the adapter switched off (``with peft_model.disable_adapter():`` under
``no_grad``), so the base weights exist once in memory. Loss: :mod:`train_dpo.loss`.

``objective="sft"`` (the paper's ablation) trains the same LoRA on the winner of each selected pair
only, with the plain prediction MSE (:func:`train_dpo.loss.sft_loss`): one forward of the winners,
no reference pass. Validation runs the DPO evaluation for either objective, so the held-out implicit
accuracy and reward margin of the two arms compare; its ``loss`` is the trained objective's.

Lightning checkpoints hold only the LoRA weights: the frozen base weights are dropped in
:meth:`DiffusionDPOModule.on_save_checkpoint` and ``strict_loading`` is off (the adapter folders
are written by :class:`train_dpo.checkpointing.DPOCheckpointCallback`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from diffusers.optimization import get_cosine_schedule_with_warmup
from peft import get_peft_model

from train_dpo.config import DPOTrainConfig, check_objective, jsonable, resolve_precision
from train_dpo.families.base import ModelFamily
from train_dpo.loss import DPOLossOutput, SFTLossOutput, diffusion_dpo_loss, sft_loss
from utils.lora import make_lora_config

__all__ = ["DiffusionDPOModule"]


class DiffusionDPOModule(pl.LightningModule):
    """Diffusion-DPO (or SFT) with a LoRA on a frozen video diffusion transformer.

    Args:
        transformer: the family's diffusers transformer (frozen; wrapped in a ``peft.PeftModel``
            with ``utils.lora.make_lora_config(cfg.lora_rank, cfg.lora_alpha, ...)``).
        family: the :class:`~train_dpo.families.base.ModelFamily` bound to ``transformer``.
        cfg: :class:`~train_dpo.config.DPOTrainConfig`.

    Batches (from :class:`~train_dpo.dataset.DPOPairDataset`): ``latents_w``, ``latents_l``
    ``[B, ...]`` in the family's stored layout, ``prompt_embeds`` ``[B, L, D]``, optional
    ``image_latents``.

    Raises:
        ValueError: unknown ``cfg.objective``.
    """

    def __init__(self, transformer: torch.nn.Module, family: ModelFamily, cfg: DPOTrainConfig):
        super().__init__()
        check_objective(cfg.objective)
        self.cfg = cfg
        self.family = family
        transformer.requires_grad_(False)
        if cfg.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        lora_config = make_lora_config(cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
        self.transformer = get_peft_model(transformer, lora_config)
        self.transformer.train()  # diffusers loads in eval mode; the video transformers have no dropout
        if resolve_precision(cfg).endswith("-mixed"):  # LoRA weights in fp32 (base may be bf16)
            for p in self.transformer.parameters():
                if p.requires_grad and p.dtype != torch.float32:
                    p.data = p.data.float()
        self.transformer_config = transformer.config
        self.strict_loading = False  # checkpoints carry only the LoRA weights
        self._train_gen: torch.Generator | None = None
        self._micro_step, self._micro = -1, 0
        self._val_buf: list[torch.Tensor] = []  # per validation pair: [implicit reward logit, loss]
        self.val_history: list[dict[str, float]] = []
        self.save_hyperparameters({"config": jsonable(asdict(cfg))})

    # ---- model ------------------------------------------------------------------------------
    @property
    def base_transformer(self) -> torch.nn.Module:
        """The wrapped diffusers transformer (with LoRA layers injected)."""
        return self.transformer.get_base_model()

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The LoRA weights (the only parameters with ``requires_grad``)."""
        return [p for p in self.transformer.parameters() if p.requires_grad]

    def forward(self, inputs: dict[str, Any], reference: bool = False) -> torch.Tensor:
        """The family's prediction (same shape as its target) for transformer ``inputs``;
        ``reference=True`` runs the same transformer with the LoRA adapter disabled, under ``no_grad``."""
        if reference:
            with torch.no_grad(), self.transformer.disable_adapter():
                return self.family.prediction(self.transformer(**inputs, return_dict=False)[0])
        return self.family.prediction(self.transformer(**inputs, return_dict=False)[0])

    # ---- one DPO / SFT evaluation -------------------------------------------------------------
    def noised_inputs(
        self, batch: dict[str, Any], keys: Sequence[str], generator: torch.Generator | None = None
    ) -> tuple[dict[str, Any], torch.Tensor]:
        """Noise the latents ``batch[k]`` for ``k`` in ``keys``, all with one shared draw.

        ``generator`` (CPU) draws the noise (float32, shape of one key's prepared latents) first,
        then the timesteps ``[B]`` (:meth:`ModelFamily.sample_timesteps`); every latent of a sample
        gets the same noise and timestep.

        Returns:
            ``(inputs, target)``: transformer inputs of the ``len(keys) * B`` latents concatenated
            on the batch axis (in ``keys`` order, after :meth:`ModelFamily.prepare_latents`) and
            their float32 targets ``[len(keys) * B, ...]``.

        Raises:
            ValueError: from :meth:`ModelFamily.model_inputs` (e.g. missing image latents).
        """
        k = len(keys)
        x0 = self.family.prepare_latents(torch.cat([batch[key] for key in keys], dim=0).float())
        b = batch[keys[0]].shape[0]
        noise = torch.randn(x0[:b].shape, generator=generator, dtype=torch.float32).to(x0.device)
        t = self.family.sample_timesteps(b, generator)
        noise, t = torch.cat([noise] * k, dim=0), torch.cat([t] * k, dim=0).to(x0.device)
        prompt = torch.cat([batch["prompt_embeds"]] * k, dim=0).float()
        image = batch.get("image_latents")
        if image is not None:
            image = torch.cat([image] * k, dim=0).float()
        return self.family.model_inputs(x0, noise, t, prompt, image)

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
        """One policy pass on the winners, prediction MSE (no loser, no reference). With the same
        ``generator`` state the winners get the noise and timesteps :meth:`dpo_step` gives them."""
        inputs, target = self.noised_inputs(batch, ("latents_w",), generator)
        return sft_loss(self(inputs), target)

    # ---- Lightning hooks ----------------------------------------------------------------------
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
