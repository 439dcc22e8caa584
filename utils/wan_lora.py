"""LoRA adapters written for the original Wan code, applied to diffusers' ``WanTransformer3DModel``.

The released VideoGPA Wan2.2-TI2V adapter (``checkpoints/VideoGPA-Wan2.2TI2V-lora/``) was trained
with peft on the original Wan model (Wan-Video/Wan2.2 ``WanModel``; upstream
``train/Wan2.2-TI2V-5B/03_train.py``: r 64, alpha 128, dropout 0, target_modules q, k, v, o). Its
keys name modules of that model::

    base_model.model.blocks.<i>.self_attn.<q|k|v|o>.lora_<A|B>.weight
    base_model.model.blocks.<i>.cross_attn.<q|k|v|o>.lora_<A|B>.weight

diffusers calls the same linears ``blocks.<i>.attn1.{to_q,to_k,to_v,to_out.0}`` (self-attention)
and ``blocks.<i>.attn2.*`` (cross-attention to the text). The renaming is diffusers' own
(``diffusers.loaders.lora_conversion_utils._convert_non_diffusers_wan_lora_to_diffusers``, what
``WanLoraLoaderMixin.lora_state_dict`` applies to ``diffusion_model.``-prefixed files), wrapped here
so that every key must be one of the above and come out renamed: a key that does not map is an error
naming it, never dropped. Tensors are not changed (these files carry no ``.alpha`` entries; alpha comes
from ``adapter_config.json``), so the delta stays ``scale * alpha / r * B @ A``.

Adapters already in diffusers names (e.g. written by our trainer) load unchanged through
``utils.lora.load_lora_adapter``; :func:`load_wan_lora_adapter` takes both.
"""

from __future__ import annotations

import copy
import logging
import os
import re

import torch

from utils.lora import ADAPTER_WEIGHTS_NAME, PEFT_KEY_PREFIX, LoraAdapterError, read_adapter_config, validate_adapter_dir
from utils.lora_apply import apply_lora_state_dict, load_lora_adapter

logger = logging.getLogger(__name__)

__all__ = [
    "ORIGINAL_WAN_TARGETS",
    "is_original_wan_lora",
    "convert_original_wan_lora",
    "convert_original_wan_config",
    "load_wan_lora_adapter",
]

# original Wan module name -> diffusers module name (the last component of the target)
ORIGINAL_WAN_TARGETS = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0"}
_ORIGINAL_KEY = re.compile(
    r"^" + re.escape(PEFT_KEY_PREFIX) + r"(blocks\.\d+\.(?:self_attn|cross_attn)\.[qkvo]\.lora_[AB]\.weight)$"
)
_DIFFUSERS_KEY = re.compile(
    r"^" + re.escape(PEFT_KEY_PREFIX)
    + r"blocks\.\d+\.attn[12]\.(?:to_q|to_k|to_v|to_out\.0)\.lora_[AB]\.weight$"
)
_ORIGINAL_MARKERS = (".self_attn.", ".cross_attn.")


def is_original_wan_lora(keys) -> bool:
    """True when any key names a module of the original Wan model (``...self_attn.`` / ``...cross_attn.``)."""
    return any(marker in k for k in keys for marker in _ORIGINAL_MARKERS)


def convert_original_wan_lora(state: dict[str, torch.Tensor], source: str | os.PathLike = "<state dict>"):
    """Rename an original-Wan PEFT LoRA state dict to diffusers' ``WanTransformer3DModel`` module names.

    Args:
        state: ``{"base_model.model.blocks.<i>.<self_attn|cross_attn>.<q|k|v|o>.lora_<A|B>.weight":
            tensor}`` (A ``[r, in]``, B ``[out, r]``).
        source: file the weights came from (named in errors).
    Returns:
        ``{"base_model.model.blocks.<i>.<attn1|attn2>.<to_q|to_k|to_v|to_out.0>.lora_<A|B>.weight":
        tensor}``, the same tensors.
    Raises:
        LoraAdapterError: a key outside that pattern (e.g. a norm, ffn or embedding LoRA), or a key
            the diffusers conversion did not carry over; the message names the key and ``source``.
    """
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_wan_lora_to_diffusers

    bad = [k for k in state if not _ORIGINAL_KEY.match(k)]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise LoraAdapterError(
            f"{source}: LoRA key {bad[0]!r}{more} does not map to WanTransformer3DModel; expected "
            f"'{PEFT_KEY_PREFIX}blocks.<i>.<self_attn|cross_attn>.<q|k|v|o>.lora_<A|B>.weight'"
        )
    # diffusers' converter reads 'diffusion_model.'-prefixed keys and returns 'transformer.'-prefixed ones
    wrapped = {"diffusion_model." + k[len(PEFT_KEY_PREFIX) :]: v for k, v in state.items()}
    try:
        converted = _convert_non_diffusers_wan_lora_to_diffusers(wrapped)
    except ValueError as e:
        raise LoraAdapterError(f"{source}: diffusers' Wan LoRA conversion failed: {e}") from e
    out = {PEFT_KEY_PREFIX + k.removeprefix("transformer."): v for k, v in converted.items()}
    unexpected = [k for k in out if not _DIFFUSERS_KEY.match(k)]
    if unexpected or len(out) != len(state):
        raise LoraAdapterError(
            f"{source}: diffusers' Wan LoRA conversion gave {len(out)} keys for {len(state)}"
            + (f", e.g. {unexpected[0]!r}" if unexpected else "")
        )
    return out


def convert_original_wan_config(config, source: str | os.PathLike = "<config>"):
    """A copy of ``config`` (``peft.LoraConfig``) with original-Wan ``target_modules`` in diffusers names.

    Raises:
        LoraAdapterError: a target other than q, k, v, o (or a regex target, which cannot be renamed).
    """
    targets = config.target_modules
    if isinstance(targets, str):
        raise LoraAdapterError(
            f"{source}: target_modules is the pattern {targets!r}; expected a list of q, k, v, o")
    bad = sorted(t for t in targets if t not in ORIGINAL_WAN_TARGETS)
    if bad:
        raise LoraAdapterError(
            f"{source}: target module(s) {bad} of the original Wan model have no diffusers name here; "
            f"expected a subset of {sorted(ORIGINAL_WAN_TARGETS)}"
        )
    new = copy.deepcopy(config)
    new.target_modules = {ORIGINAL_WAN_TARGETS[t] for t in targets}
    return new


def load_wan_lora_adapter(
    transformer: torch.nn.Module,
    path: str | os.PathLike,
    scale: float = 1.0,
    merge: bool = False,
    adapter_name: str = "videogpa",
) -> torch.nn.Module:
    """Apply a LoRA adapter folder to a ``WanTransformer3DModel``, converting original-Wan key names.

    Args:
        transformer: diffusers ``WanTransformer3DModel``.
        path: PEFT adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``) in original
            Wan names (the released adapter, see module docstring) or in diffusers names.
        scale: multiplier of the trained ``alpha / r`` (0 = base model); the released inference uses
            0.2 (upstream ``generate/Wan2.2-TI2V-5B.py`` multiplies peft's ``scaling`` by
            ``--lora_weight 0.2``).
        merge, adapter_name: as ``utils.lora.load_lora_adapter``.
    Returns:
        ``transformer`` with the adapter applied.
    Raises:
        LoraAdapterError: bad folder, an unmappable key or target, or weights that do not fit.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    folder = validate_adapter_dir(path)
    weights = folder / ADAPTER_WEIGHTS_NAME
    with safe_open(str(weights), framework="pt") as f:
        keys = list(f.keys())
    if not is_original_wan_lora(keys):
        return load_lora_adapter(transformer, folder, scale=scale, merge=merge, adapter_name=adapter_name)
    config = convert_original_wan_config(read_adapter_config(folder), folder / "adapter_config.json")
    state = convert_original_wan_lora(load_file(str(weights), device="cpu"), weights)
    apply_lora_state_dict(transformer, config, state, weights, scale=scale, merge=merge,
                          adapter_name=adapter_name)
    logger.info("loaded LoRA adapter %s (original Wan names, converted; scale %g%s)", folder, scale,
                ", merged" if merge else "")  # fmt: skip
    return transformer

