"""Applying a LoRA adapter folder (``utils.lora`` format) to a transformer for inference.

:func:`load_lora_adapter` validates the folder against the model, injects the adapter in place
(diffusers' ``add_adapter`` bookkeeping when the model has it), loads its weights and sets its scale;
optionally it merges ``scale * alpha / r * B @ A`` into the base weights. :func:`set_lora_scale`
changes the scale of an applied adapter (0 = base model, 1 = as trained).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from utils.lora import (
    ADAPTER_WEIGHTS_NAME,
    LORA_KEY_SUFFIXES,
    PEFT_KEY_PREFIX,
    LoraAdapterError,
    check_keys_fit,
    read_adapter_config,
    unwrap_compiled,
    validate_adapter_dir,
)

logger = logging.getLogger(__name__)

# peft is imported inside the functions: it imports transformers (seconds), and importing this module
# (generate/pipeline.py does) must stay cheap for --help and configuration errors.

__all__ = ["load_lora_adapter", "apply_lora_state_dict", "set_lora_scale"]


def load_lora_adapter(
    transformer: torch.nn.Module,
    path: str | os.PathLike,
    scale: float = 1.0,
    merge: bool = False,
    adapter_name: str = "videogpa",
    is_trainable: bool = False,
) -> torch.nn.Module:
    """Apply the LoRA adapter at ``path`` to ``transformer`` in place and return it.

    Args:
        transformer: ``CogVideoXTransformer3DModel`` (any dtype/device; LoRA weights follow the base
            layer's dtype and device).
        path: adapter folder (validated with :func:`validate_adapter_dir`; its keys and shapes must fit
            ``transformer``, see :func:`apply_lora_state_dict`).
        scale: multiplies the LoRA delta: 0 gives the base model exactly, 1 the adapter as trained.
        merge: fold ``scale * alpha / r * B @ A`` into the base weights and remove the LoRA layers
            (no inference overhead; the adapter can no longer be switched off). Not allowed when the
            model already carries other adapters.
        adapter_name: name of the adapter inside the model (unmerged case).
        is_trainable: keep the LoRA weights trainable (``requires_grad``), e.g. to continue training.
    Returns:
        ``transformer`` (same object), with the adapter applied.
    Raises:
        LoraAdapterError: see :func:`validate_adapter_dir`; also when loading leaves LoRA weights unset.
        ValueError: ``merge=True`` on a model that already has LoRA layers, or ``adapter_name`` in use.
    """
    folder = validate_adapter_dir(path)  # the fit to the model is checked once, on the loaded tensors
    config = read_adapter_config(folder)
    weights = folder / ADAPTER_WEIGHTS_NAME
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as e:
        raise LoraAdapterError(f"cannot read LoRA adapter weights {weights}: {e}") from e
    apply_lora_state_dict(transformer, config, state, weights, scale, merge, adapter_name, is_trainable)
    logger.info("loaded LoRA adapter %s (scale %g%s)", folder, scale, ", merged" if merge else "")
    return transformer


def apply_lora_state_dict(
    transformer: torch.nn.Module,
    config,
    state: dict[str, torch.Tensor],
    source: str | os.PathLike,
    scale: float = 1.0,
    merge: bool = False,
    adapter_name: str = "videogpa",
    is_trainable: bool = False,
) -> torch.nn.Module:
    """Apply LoRA weights in memory to ``transformer`` in place (the body of :func:`load_lora_adapter`).

    For adapters whose file needs converting first (e.g. ``utils.wan_lora``: adapters of the original
    Wan code). Arguments as :func:`load_lora_adapter`, plus:

    Args:
        config: ``peft.LoraConfig`` whose ``target_modules`` name modules of ``transformer``.
        state: ``{"base_model.model.<module>.lora_A.weight": [r, in], ...lora_B.weight: [out, r]}``.
        source: the file the weights came from (named in error messages).
    Raises:
        LoraAdapterError: keys or shapes that do not fit ``transformer`` (every target module needs
            both A and B), or loading leaves LoRA weights unset.
        ValueError: see :func:`load_lora_adapter`.
    """
    from peft import inject_adapter_in_model, set_peft_model_state_dict
    from peft.tuners.lora import LoraLayer

    model = unwrap_compiled(transformer)
    weights = Path(source)
    bad = [k for k in state if not (k.startswith(PEFT_KEY_PREFIX) and k.endswith(LORA_KEY_SUFFIXES))]
    if bad:
        raise LoraAdapterError(f"{weights}: {len(bad)} key(s) are not PEFT LoRA keys, e.g. {bad[0]!r}")
    check_keys_fit(weights, config, {k: tuple(v.shape) for k, v in state.items()}, model)
    config.inference_mode = not is_trainable
    already = any(isinstance(m, LoraLayer) for m in model.modules())
    if merge and already:
        raise ValueError("merge=True needs a model without other LoRA layers; load unmerged instead")
    if adapter_name in (getattr(model, "peft_config", None) or {}):
        raise ValueError(f"the model already has an adapter named {adapter_name!r}")

    state = {k[len(PEFT_KEY_PREFIX) :]: v for k, v in state.items()}
    if hasattr(model, "add_adapter") and hasattr(model, "_hf_peft_config_loaded"):
        model.add_adapter(config, adapter_name=adapter_name)  # diffusers' PeftAdapterMixin bookkeeping
    else:
        inject_adapter_in_model(config, model, adapter_name=adapter_name)
    result = set_peft_model_state_dict(model, state, adapter_name=adapter_name)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing = [k for k in (getattr(result, "missing_keys", []) or []) if f".{adapter_name}." in k and "lora_" in k]
    if unexpected or missing:
        raise LoraAdapterError(
            f"{weights}: loading left {len(missing)} LoRA weight(s) unset and {len(unexpected)} unused, "
            f"e.g. {(missing + unexpected)[0]!r}"
        )
    set_lora_scale(model, scale, adapter_name)
    if merge:
        _merge_and_unload(model, adapter_name)
    return transformer


def set_lora_scale(transformer: torch.nn.Module, scale: float, adapter_name: str = "videogpa") -> int:
    """Set the multiplier of an applied (unmerged) adapter: the delta becomes ``scale * alpha / r * B @ A``.

    Args:
        transformer: a model carrying the adapter (see :func:`load_lora_adapter`).
        scale: LoRA weight (0 = base model, 1 = the adapter as trained).
        adapter_name: the adapter's name inside the model.
    Returns:
        how many LoRA layers were set.
    Raises:
        ValueError: the model has no LoRA layer of that adapter (e.g. it was merged).
    """
    from peft.tuners.lora import LoraLayer

    n = 0
    for m in unwrap_compiled(transformer).modules():
        if isinstance(m, LoraLayer) and adapter_name in m.scaling:
            m.set_scale(adapter_name, float(scale))
            n += 1
    if n == 0:
        raise ValueError(f"the model has no unmerged LoRA adapter named {adapter_name!r}")
    return n


def _merge_and_unload(model: torch.nn.Module, adapter_name: str) -> None:
    from peft.tuners.lora import LoraLayer

    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    with torch.no_grad():
        for name, layer in layers:
            layer.merge(adapter_names=[adapter_name])
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, layer.get_base_layer())
    cfg = getattr(model, "peft_config", None)
    if isinstance(cfg, dict):
        cfg.pop(adapter_name, None)
        if not cfg:
            try:
                del model.peft_config
            except AttributeError:
                pass
    if getattr(model, "_hf_peft_config_loaded", False):
        model._hf_peft_config_loaded = False
