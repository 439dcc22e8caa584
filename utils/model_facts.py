"""Facts about a model read from its configs, decided in one place.

"Is this image-to-video" has one answer per kind of object:

* a transformer config: :func:`requires_image_latents` -- CogVideoX-I2V concatenates the image
  latents to the noisy latents on the channel axis, so its ``in_channels`` is twice its
  ``out_channels`` (diffusers ``CogVideoXImageToVideoPipeline``); Wan2.2-TI2V (``in == out``) takes
  an image optionally, as its clean first latent frame, and needs none;
* a loaded diffusers pipeline: :func:`pipeline_takes_image` -- its ``__call__`` has an ``image``
  argument (``CogVideoXImageToVideoPipeline``; ``WanImageToVideoPipeline``).
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["config_value", "requires_image_latents", "pipeline_takes_image"]


def config_value(config: Any, key: str, default: Any = None) -> Any:
    """``config[key]`` for a dict-like config (``load_config``), ``config.key`` for a diffusers
    ``FrozenDict``/config object, ``default`` when absent."""
    if isinstance(config, dict):
        return config.get(key, default)
    return getattr(config, key, default)


def requires_image_latents(transformer_config: Any) -> bool:
    """True for a transformer that needs image-conditioning latents on its channel axis
    (``in_channels == 2 * out_channels``: CogVideoX-5B-I2V, CogVideoX1.5-5B-I2V).

    Raises:
        KeyError: the config has no ``in_channels`` / ``out_channels``.
    """
    in_ch = config_value(transformer_config, "in_channels")
    out_ch = config_value(transformer_config, "out_channels")
    if in_ch is None or out_ch is None:
        raise KeyError("transformer config has no in_channels/out_channels")
    return int(in_ch) == 2 * int(out_ch)


def pipeline_takes_image(pipe: Any) -> bool:
    """True when the diffusers pipeline ``pipe`` is called with an ``image`` (image-to-video)."""
    return "image" in inspect.signature(pipe.__call__).parameters
