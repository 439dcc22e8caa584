"""Model families of the Diffusion-DPO trainer (interface: :mod:`train_dpo.families.base`).

Contract: :func:`family_for` names the :class:`~train_dpo.families.base.ModelFamily` subclass of a
model from its transformer's diffusers ``_class_name`` (``transformer/config.json`` of a pipeline
folder or hub id, or a loaded transformer's ``config``); the trainer then calls that class's
``load``. A new family is one module here plus one line in :data:`FAMILY_BY_TRANSFORMER`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from diffusers.configuration_utils import ConfigMixin

from train_dpo.families.base import ModelFamily
from train_dpo.families.cogvideox import CogVideoXFamily
from train_dpo.families.wan import WanFamily
from utils.hub import check_hub_model
from utils.model_facts import config_value

__all__ = ["ModelFamily", "CogVideoXFamily", "WanFamily", "FAMILY_BY_TRANSFORMER", "family_for", "transformer_config"]

#: transformer ``_class_name`` -> family
FAMILY_BY_TRANSFORMER: dict[str, type[ModelFamily]] = {
    "CogVideoXTransformer3DModel": CogVideoXFamily,
    "WanTransformer3DModel": WanFamily,
}


class _TransformerConfig(ConfigMixin):
    """Reads a diffusers model's ``config.json`` (local folder, hub cache or hub) without its class."""

    config_name = "config.json"


def transformer_config(base_model: str | os.PathLike) -> dict[str, Any]:
    """The ``transformer/config.json`` of the diffusers pipeline folder or hub id ``base_model``.

    Raises:
        utils.hub.ModelNotAvailableError: not a folder, not cached and not downloadable.
        FileNotFoundError: the pipeline has no ``transformer/config.json``.
    """
    check_hub_model(base_model, ("model_index.json",), "base model", "--base_model")
    try:
        return _TransformerConfig.load_config(str(base_model), subfolder="transformer")
    except OSError as e:
        raise FileNotFoundError(f"{base_model}: no readable transformer/config.json ({e})") from e


def family_for(base_model_or_transformer_config: Any) -> type[ModelFamily]:
    """The family class of a model.

    Args:
        base_model_or_transformer_config: a pipeline folder or hub id (``str`` / path), or a
            transformer config (dict or diffusers ``FrozenDict``, e.g. ``transformer.config``).

    Returns:
        The :class:`ModelFamily` subclass registered for the transformer's ``_class_name``.

    Raises:
        ValueError: the class is not registered (the message names it and the known ones) or the
            config has no ``_class_name``.
        FileNotFoundError, utils.hub.ModelNotAvailableError: see :func:`transformer_config`.
    """
    src = base_model_or_transformer_config
    config = transformer_config(src) if isinstance(src, (str, Path, os.PathLike)) else src
    name = config_value(config, "_class_name")
    if name not in FAMILY_BY_TRANSFORMER:
        known = ", ".join(f"{k} ({v.name})" for k, v in FAMILY_BY_TRANSFORMER.items())
        raise ValueError(f"no trainer family for transformer class {name!r}; known: {known}")
    return FAMILY_BY_TRANSFORMER[name]
