"""The LoRA adapter folder of the CogVideoX transformer: config, validation, saving.

Shared by the inference scripts (``generate/``) and the Diffusion-DPO trainer (``train_dpo/``), so
that what the trainer writes (:func:`save_lora_adapter`) is exactly what inference reads
(:func:`validate_adapter_dir`, then ``utils.lora_apply.load_lora_adapter``), and both match the
released VideoGPA adapters (``checkpoints/VideoGPA-{T2V,I2V,T2V1.5}-lora/``).

On-disk format (the PEFT folder format, as written by ``peft.PeftModel.save_pretrained``)::

    <adapter dir>/
        adapter_config.json        peft.LoraConfig as JSON: peft_type "LORA", r 64, lora_alpha 128,
                                   target_modules to_q/to_k/to_v/to_out.0, auto_mapping
                                   {"base_model_class": "CogVideoXTransformer3DModel", ...}
        adapter_model.safetensors  base_model.model.<module>.lora_A.weight  [r, in_features]
                                   base_model.model.<module>.lora_B.weight  [out_features, r]

where ``<module>`` is a module path inside ``CogVideoXTransformer3DModel``, e.g.
``transformer_blocks.0.attn1.to_q``. The LoRA delta of a target ``nn.Linear`` is
``W' = W + scale * (lora_alpha / r) * B @ A``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from utils.io_utils import apply_umask, make_temp_dir

logger = logging.getLogger(__name__)

# peft is imported inside the functions that use it: it imports transformers (seconds), and the
# inference scripts validate adapter folders (and fail fast) without it.

__all__ = [
    "LORA_TARGET_MODULES",
    "ADAPTER_CONFIG_NAME",
    "ADAPTER_WEIGHTS_NAME",
    "LoraAdapterError",
    "make_lora_config",
    "read_adapter_config",
    "validate_adapter_dir",
    "unwrap_compiled",
    "get_lora_state_dict",
    "save_lora_adapter",
]

LORA_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_KEY_PREFIX = "base_model.model."
LORA_KEY_SUFFIXES = (".lora_A.weight", ".lora_B.weight")


class LoraAdapterError(ValueError):
    """A LoRA adapter folder is missing, malformed or does not fit the model. The message names the path."""


def make_lora_config(
    rank: int = 64,
    alpha: float = 128,
    dropout: float = 0.0,
    target_modules: Iterable[str] = LORA_TARGET_MODULES,
    init_lora_weights: bool | str = True,
):
    """The ``peft.LoraConfig`` of the released VideoGPA adapters (same fields as their adapter_config.json).

    Args:
        rank: LoRA rank ``r`` (released: 64).
        alpha: ``lora_alpha`` (released: 128); the delta is scaled by ``alpha / rank``.
        dropout: ``lora_dropout`` (released: 0.0).
        target_modules: module-name suffixes to adapt (released: to_q, to_k, to_v, to_out.0 of every
            attention of ``CogVideoXTransformer3DModel``).
        init_lora_weights: peft's init: ``True`` = Kaiming-uniform A, zero B (adapter starts as identity).
    Returns:
        ``peft.LoraConfig`` with ``bias="none"``, ``task_type=None``.
    """
    from peft import LoraConfig

    return LoraConfig(
        r=int(rank),
        lora_alpha=float(alpha),
        lora_dropout=float(dropout),
        target_modules=list(target_modules),
        init_lora_weights=init_lora_weights,
        bias="none",
    )


def read_adapter_config(path: str | os.PathLike):
    """Read ``<path>/adapter_config.json`` into a ``peft.LoraConfig``.

    Keys that this peft version does not know (written by a newer peft) are dropped with a debug log,
    so configs written by peft 0.13 ... 0.21 all load.

    Raises:
        LoraAdapterError: file missing, not JSON, not an object, ``peft_type`` not ``LORA``, or fields
            that peft rejects; the message names the file.
    """
    from peft import LoraConfig

    cfg_path = Path(path) / ADAPTER_CONFIG_NAME
    if not cfg_path.is_file():
        raise LoraAdapterError(f"LoRA adapter config not found: {cfg_path}")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise LoraAdapterError(f"cannot read LoRA adapter config {cfg_path}: {e}") from e
    except json.JSONDecodeError as e:
        raise LoraAdapterError(
            f"malformed JSON in LoRA adapter config {cfg_path}: line {e.lineno} column {e.colno}: {e.msg}"
        ) from e
    if not isinstance(raw, dict):
        raise LoraAdapterError(f"LoRA adapter config {cfg_path} must be a JSON object, got {type(raw).__name__}")
    peft_type = raw.get("peft_type")
    if str(peft_type).upper() != "LORA":
        raise LoraAdapterError(f"{cfg_path}: peft_type is {peft_type!r}, expected 'LORA'")
    for field in ("r", "lora_alpha", "target_modules"):
        if field not in raw:
            raise LoraAdapterError(f"{cfg_path}: missing field {field!r}")
    if not isinstance(raw["r"], int) or raw["r"] <= 0:
        raise LoraAdapterError(f"{cfg_path}: field 'r' must be a positive integer, got {raw['r']!r}")
    known = {f.name for f in dataclasses.fields(LoraConfig) if f.init}
    dropped = sorted(k for k in raw if k not in known)
    if dropped:
        logger.debug("%s: ignoring fields unknown to this peft version: %s", cfg_path, dropped)
    kwargs = {k: v for k, v in raw.items() if k in known and k not in ("peft_type", "auto_mapping")}
    try:
        return LoraConfig(**kwargs)
    except (TypeError, ValueError) as e:
        raise LoraAdapterError(f"{cfg_path}: invalid LoRA config: {e}") from e


def _target_linears(model: torch.nn.Module, target_modules) -> dict[str, torch.nn.Linear]:
    """``{module path: nn.Linear}`` of the modules that peft would adapt for ``target_modules``."""
    if isinstance(target_modules, str):
        pattern = re.compile(target_modules)
        match = lambda name: pattern.fullmatch(name) is not None  # noqa: E731
    else:
        targets = list(target_modules)
        match = lambda name: any(name == t or name.endswith("." + t) for t in targets)  # noqa: E731
    out = {}
    for name, module in model.named_modules():
        if name.endswith(".base_layer"):  # model already carries LoRA layers: look at the wrapped Linear
            name = name[: -len(".base_layer")]
        if isinstance(module, torch.nn.Linear) and match(name):
            out[name] = module
    return out


def unwrap_compiled(model: torch.nn.Module) -> torch.nn.Module:
    """The module under ``torch.compile`` wrappers (``_orig_mod``), or ``model`` itself."""
    while hasattr(model, "_orig_mod"):  # torch.compile
        model = model._orig_mod
    return model


def validate_adapter_dir(path: str | os.PathLike, transformer: torch.nn.Module | None = None) -> Path:
    """Check that ``path`` is a complete PEFT LoRA adapter folder (and, if given, fits ``transformer``).

    ``path`` may also be the ``adapter_model.safetensors`` file itself; its folder is used. Only the
    safetensors header is read (no tensors are loaded).

    Args:
        path: adapter folder.
        transformer: optional ``CogVideoXTransformer3DModel`` (or any module); when given, every key
            must name a target ``nn.Linear`` of it with the right shapes (A ``[r, in]``, B ``[out, r]``),
            and every target module must have both A and B.
    Returns:
        The adapter folder as a ``Path``.
    Raises:
        LoraAdapterError: missing folder, missing/malformed adapter_config.json, ``peft_type`` not LORA,
            missing or unreadable adapter_model.safetensors, key names that are not PEFT LoRA keys, or
            keys/shapes that don't match ``transformer``. The message names the path.
    """
    p = Path(path)
    if p.is_file() and p.name == ADAPTER_WEIGHTS_NAME:
        p = p.parent
    if not p.exists():
        raise LoraAdapterError(f"LoRA adapter folder does not exist: {p}")
    if not p.is_dir():
        raise LoraAdapterError(f"LoRA adapter path is not a folder: {p}")
    config = read_adapter_config(p)
    weights = p / ADAPTER_WEIGHTS_NAME
    if not weights.is_file():
        hint = ""
        if p.name.startswith("VideoGPA-"):
            hint = " (download the released weights with `python download_ckpt.py all`)"
        raise LoraAdapterError(f"LoRA adapter weights not found: {weights}{hint}")
    shapes = _safetensors_shapes(weights)
    if not shapes:
        raise LoraAdapterError(f"{weights}: contains no tensors")
    bad = [k for k in shapes if not (k.startswith(PEFT_KEY_PREFIX) and k.endswith(LORA_KEY_SUFFIXES))]
    if bad:
        raise LoraAdapterError(
            f"{weights}: {len(bad)} key(s) are not PEFT LoRA keys "
            f"('{PEFT_KEY_PREFIX}<module>.lora_A.weight' / '.lora_B.weight'), e.g. {bad[0]!r}"
        )
    if transformer is not None:
        check_keys_fit(weights, config, shapes, unwrap_compiled(transformer))
    return p


def _safetensors_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    try:
        with safe_open(str(weights), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises SafetensorError / OSError / ValueError depending on version
        raise LoraAdapterError(f"cannot read LoRA adapter weights {weights}: {e}") from e


def check_keys_fit(weights: Path, config, shapes: dict[str, tuple[int, ...]], model: torch.nn.Module) -> None:
    targets = _target_linears(model, config.target_modules)
    if not targets:
        raise LoraAdapterError(
            f"{weights}: target_modules {sorted(config.target_modules)} match no nn.Linear of "
            f"{type(model).__name__}"
        )
    rank_pattern = bool(getattr(config, "rank_pattern", None))
    problems = []
    for key, shape in shapes.items():
        module = key[len(PEFT_KEY_PREFIX) : -len(".lora_A.weight")]
        lin = targets.get(module)
        if lin is None:
            problems.append(f"{key!r} names no target module of {type(model).__name__}")
            continue
        if len(shape) != 2:
            problems.append(f"{key!r} has shape {list(shape)}, expected 2-D")
        elif key.endswith(".lora_A.weight"):
            if shape[1] != lin.in_features or (not rank_pattern and shape[0] != config.r):
                problems.append(f"{key!r} has shape {list(shape)}, expected [{config.r}, {lin.in_features}]")
        elif shape[0] != lin.out_features or (not rank_pattern and shape[1] != config.r):
            problems.append(f"{key!r} has shape {list(shape)}, expected [{lin.out_features}, {config.r}]")
    for module in targets:
        for suffix in LORA_KEY_SUFFIXES:
            if PEFT_KEY_PREFIX + module + suffix not in shapes:
                problems.append(f"missing {PEFT_KEY_PREFIX + module + suffix!r}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise LoraAdapterError(
            f"{weights} does not match {type(model).__name__}: " + "; ".join(problems[:5]) + more
        )


def _peft_parts(model: torch.nn.Module, adapter_name: str | None):
    """(base module, LoraConfig, adapter name, is PeftModel) of a PeftModel or an injected module."""
    model = unwrap_compiled(model)
    is_peft_model = hasattr(model, "base_model") and hasattr(model.base_model, "model") and hasattr(
        model, "peft_config"
    )
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, dict) or not configs:
        raise ValueError(
            f"{type(model).__name__} carries no LoRA adapter (expected a peft.PeftModel or a model "
            "with an injected adapter, e.g. transformer.add_adapter(make_lora_config()))"
        )
    if adapter_name is None:
        if len(configs) != 1:
            raise ValueError(f"the model has adapters {sorted(configs)}; pass adapter_name")
        adapter_name = next(iter(configs))
    if adapter_name not in configs:
        raise ValueError(f"no adapter named {adapter_name!r}; the model has {sorted(configs)}")
    base = model.base_model.model if is_peft_model else model
    return model, base, configs[adapter_name], adapter_name


def get_lora_state_dict(model: torch.nn.Module, adapter_name: str | None = None) -> dict[str, torch.Tensor]:
    """The adapter's weights with the released PEFT key names (``base_model.model.<module>.lora_A.weight``).

    Args:
        model: a ``peft.PeftModel`` wrapping the transformer, or a transformer with an injected adapter
            (``transformer.add_adapter(...)`` / :func:`load_lora_adapter`).
        adapter_name: which adapter; may be omitted when the model has exactly one.
    Returns:
        ``{key: tensor}`` detached, contiguous, on CPU, in the weights' own dtype.
    Raises:
        ValueError: the model has no adapter / no adapter of that name / several and none named.
    """
    from peft import get_peft_model_state_dict

    model, _, _, adapter_name = _peft_parts(model, adapter_name)
    sd = get_peft_model_state_dict(model, adapter_name=adapter_name)
    out = {}
    for k, v in sd.items():
        key = k if k.startswith(PEFT_KEY_PREFIX) else PEFT_KEY_PREFIX + k
        out[key] = v.detach().to("cpu").contiguous()
    return out


def save_lora_adapter(
    model: torch.nn.Module, out_dir: str | os.PathLike, adapter_name: str | None = None
) -> Path:
    """Write the adapter in the released PEFT folder format, atomically.

    Writes ``adapter_config.json`` (the ``LoraConfig`` as peft serialises it, ``inference_mode`` true,
    ``auto_mapping`` ``{"base_model_class": "CogVideoXTransformer3DModel", "parent_library":
    "diffusers.models.transformers.cogvideox_transformer_3d"}``) and ``adapter_model.safetensors``
    (keys from :func:`get_lora_state_dict`, metadata ``{"format": "pt"}``) to a temporary sibling
    folder, then renames it over ``out_dir`` (a previous ``out_dir`` is replaced only once the new
    one is complete).

    Args:
        model: ``peft.PeftModel`` or a transformer with an injected adapter.
        out_dir: target folder.
        adapter_name: which adapter; may be omitted when the model has exactly one.
    Returns:
        ``out_dir`` as a Path.
    Raises:
        ValueError: the model carries no (such) adapter.
    """
    model, base, config, adapter_name = _peft_parts(model, adapter_name)
    state = get_lora_state_dict(model, adapter_name)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out_dir.parent, prefix=f".{out_dir.name}.")
    old = None
    try:
        inference_mode = config.inference_mode
        config.inference_mode = True
        try:
            config.save_pretrained(
                str(tmp),
                auto_mapping_dict={
                    "base_model_class": type(base).__name__,
                    "parent_library": type(base).__module__,
                },
            )
        finally:
            config.inference_mode = inference_mode
        save_file(state, str(tmp / ADAPTER_WEIGHTS_NAME), metadata={"format": "pt"})
        apply_umask(tmp)  # safetensors writes 0600
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old.{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out_dir.exists():
            os.replace(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out_dir
