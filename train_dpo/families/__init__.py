"""Model families of the Diffusion-DPO trainer (interface: :mod:`train_dpo.families.base`).

Contract: :func:`family_for` names the :class:`~train_dpo.families.base.ModelFamily` subclass of a
model from its transformer's diffusers ``_class_name`` (``transformer/config.json`` of a pipeline
folder or hub id, or a loaded transformer's ``config``); the trainer then calls that class's
``load`` (:func:`load_family`: with the family's own options, e.g. Wan's ``timestep_input``).
A new family is one module here plus one line in :data:`FAMILY_BY_TRANSFORMER`.
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

__all__ = ["ModelFamily", "CogVideoXFamily", "WanFamily", "FAMILY_BY_TRANSFORMER", "family_for",
           "load_family", "transformer_config"]

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


def load_family(base_model: str | os.PathLike, dtype: Any, **options: Any) -> tuple[Any, ModelFamily]:
    """``family_for(base_model).load(base_model, dtype, **options)`` with the options that are set.

    Args:
        base_model: pipeline folder or hub id.
        dtype: ``torch.dtype`` of the transformer weights.
        options: family-specific settings (:attr:`ModelFamily.load_options`, e.g. ``timestep_input``
            of :class:`WanFamily`); None means "the family's default" and is not passed on.

    Returns:
        ``(transformer, family)`` as :meth:`ModelFamily.load`.

    Raises:
        ValueError: an option is set (not None) that this model's family does not take (the message
            names the option, the family and what it takes), or see :func:`family_for`.
    """
    family = family_for(base_model)
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(family.load_options))
    if unknown:
        takes = ", ".join(family.load_options) or "no such options"
        raise ValueError(f"{', '.join(unknown)} is not a setting of the {family.name} family "
                         f"({base_model}; it takes {takes}): leave it unset")
    return family.load(base_model, dtype, **given)
