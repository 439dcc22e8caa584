"""Silence library messages that are expected in this project, one named message at a time.

A user running a script should see stage progress, results and warnings that ask for action,
not library chatter that is expected here. Each entry below names the logger (or warning
category and module) and the message it drops, and why the message is expected; nothing is
silenced globally, and every other message of the same loggers still shows.

* transformers' tokenizer "Token indices sequence length is longer than the specified maximum
  sequence length": the CogVideoX pipelines and ``train_dpo/encode_cogvideox.py`` tokenize with
  ``truncation=True, max_length=226`` and then report the truncated words themselves, so the
  tokenizer's "indexing errors" never happen.
* diffusers' "The following part of your input was truncated because `max_sequence_length` is
  set to 226 tokens": kept, but shown once per distinct prompt (generation calls the pipeline
  once per seed).
* Lightning's tips and platform lines at INFO ("💡 Tip: ...", "GPU available: ...", "TPU
  available: ..."), its note that ``weights_only`` defaults to False when it restores its own
  checkpoint, "You defined a `validation_step` but have no `val_dataloader`" (training with
  ``--val_fraction 0``) and the ``LeafSpec`` deprecation it triggers itself under recent torch.
* transformers' "`CLIPImageProcessor` requires torchvision (not installed); falling back to
  `CLIPImageProcessorPil`", logged when diffusers' Wan image-to-video pipeline module is imported:
  the project installs no torchvision and Wan2.2-TI2V has no CLIP image encoder (its first frame
  goes through the VAE), so the fallback is never used.
* diffusers' ``torch_dtype`` deprecation FutureWarning (the argument is still the documented one
  for the diffusers versions this project supports).

``quiet_tiny_model_messages()`` additionally drops the truncation report entirely (the tiny test
models use a toy tokenizer whose token counts mean nothing) and our own "running on CPU in
float32" warning, which says itself that it is fine for the tiny models.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_expected_messages", "quiet_tiny_model_messages", "OncePerMessage", "DropMessages"]


class DropMessages(logging.Filter):
    """Drop records whose message contains any of ``fragments``."""

    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = tuple(fragments)

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(f in msg for f in self.fragments)


class OncePerMessage(logging.Filter):
    """Let a record through only the first time its message (containing ``fragment``) is seen."""

    def __init__(self, fragment: str):
        super().__init__()
        self.fragment = fragment
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if self.fragment not in msg:
            return True
        if msg in self.seen:
            return False
        self.seen.add(msg)
        return True


_TOKENIZER_LENGTH = "Token indices sequence length is longer than the specified maximum sequence length"
_T5_TRUNCATED = "The following part of your input was truncated"
_CLIP_NO_TORCHVISION = "`CLIPImageProcessor` requires torchvision"
_LIGHTNING_INFO = ("💡 Tip:", "GPU available:", "TPU available:", "`weights_only` was not set")
_INSTALLED: set[str] = set()


def _add_filter(logger_name: str, flt: logging.Filter, key: str) -> None:
    if key in _INSTALLED:
        return
    logging.getLogger(logger_name).addFilter(flt)
    _INSTALLED.add(key)


def _transformers_logger() -> str:
    # transformers >= 5 logs the tokenizer warning from tokenization_utils_base under its own
    # logger hierarchy; its handler sits on the "transformers" logger, so filter the emitting one
    return "transformers.tokenization_utils_base"


def quiet_expected_messages() -> None:
    """Install the filters listed in the module docstring (idempotent; call at a script's start)."""
    _add_filter(_transformers_logger(), DropMessages(_TOKENIZER_LENGTH), "tokenizer-length")
    for name in ("diffusers.pipelines.cogvideo.pipeline_cogvideox",
                 "diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video"):
        _add_filter(name, OncePerMessage(_T5_TRUNCATED), f"t5-once:{name}")
    _add_filter("transformers.utils.import_utils", DropMessages(_CLIP_NO_TORCHVISION), "clip-no-torchvision")
    for name in ("pytorch_lightning.utilities.rank_zero",
                 "pytorch_lightning.trainer.connectors.checkpoint_connector",
                 "lightning.pytorch.utilities.rank_zero",
                 "lightning.pytorch.trainer.connectors.checkpoint_connector"):
        _add_filter(name, DropMessages(*_LIGHTNING_INFO), f"lightning:{name}")
    if "warnings" not in _INSTALLED:
        warnings.filterwarnings("ignore", message=r".*You defined a `validation_step` but have no `val_dataloader`")
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
        warnings.filterwarnings("ignore", message=r".*`torch_dtype` is deprecated", category=FutureWarning)
        _INSTALLED.add("warnings")


def quiet_tiny_model_messages() -> None:
    """:func:`quiet_expected_messages` plus the T5 truncation report (meaningless for the toy tokenizer)."""
    quiet_expected_messages()
    for name in ("diffusers.pipelines.cogvideo.pipeline_cogvideox",
                 "diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video"):
        _add_filter(name, DropMessages(_T5_TRUNCATED), f"t5-drop:{name}")
    _add_filter("generate.pipeline", DropMessages("running on CPU in float32"), "cpu-float32")
