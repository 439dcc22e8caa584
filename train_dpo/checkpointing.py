"""What a Diffusion-DPO run writes while it trains: :class:`DPOCheckpointCallback`.

Contract: checkpoints hold only what is trained. PEFT adapter folders in the released format
(``output_dir/checkpoint-{step}/`` every ``every_n_steps`` optimiser steps and
``output_dir/final_lora/`` at the end, via :func:`utils.lora.save_lora_adapter`, written by rank 0)
and one resumable Lightning checkpoint ``output_dir/lightning/last.ckpt`` (LoRA weights, optimiser,
LR scheduler, loop state), replaced atomically (temp file + ``os.replace``). The LightningModule
(:class:`train_dpo.lightning_module.DiffusionDPOModule`) must expose the PEFT model as
``.transformer``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytorch_lightning as pl

from utils.lora import save_lora_adapter

logger = logging.getLogger(__name__)

__all__ = ["DPOCheckpointCallback"]


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
        """``output_dir/lightning/last.ckpt``, the checkpoint ``resume="auto"`` continues from."""
        return self.output_dir / "lightning" / "last.ckpt"

    def _save_lightning(self, trainer: pl.Trainer) -> None:
        path = self.last_ckpt
        tmp = path.with_name(f".last.{os.getpid()}.tmp.ckpt")
        if trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(str(tmp))
        if trainer.is_global_zero:
            os.replace(tmp, path)

    def _save(self, trainer: pl.Trainer, pl_module: pl.LightningModule, folder: str) -> None:
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
        if trainer.is_global_zero:
            save_lora_adapter(pl_module.transformer, self.output_dir / "final_lora")
        if trainer.global_step != self._last_saved:
            self._save_lightning(trainer)
            self._last_saved = trainer.global_step
