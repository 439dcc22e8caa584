"""The hub-facing DA3 module: ``DepthAnything3Net`` held as ``model`` (hub names ``model.*``).

Reference: ByteDance-Seed/Depth-Anything-3 ``api.py`` (``DepthAnything3`` wraps the net as
``self.model``; its pre/post-processing, export and Umeyama re-alignment are not part of this
module: see :mod:`depth_anything_3.preprocess`).
"""

from typing import Any, Dict, Mapping

import torch
from torch import nn

from ..config import resolve_config
from .da3 import DepthAnything3Net


class DepthAnything3(nn.Module):
    """DA3 with the checkpoint layout of ``depth-anything/DA3-LARGE`` and friends.

    Args:
        config: a DA3 config (see :mod:`depth_anything_3.config`); kept, resolved, as ``.config``.

    ``forward(images, ...)`` is :meth:`DepthAnything3Net.forward` (same arguments and outputs).
    """

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        self.config = resolve_config(config)
        self.model = DepthAnything3Net(**self.config)

    def forward(self, images: torch.Tensor, *args, **kwargs) -> Dict[str, torch.Tensor]:
        return self.model(images, *args, **kwargs)


def build_da3(config: Mapping[str, Any]) -> DepthAnything3:
    """Build DA3 (random weights, train mode, current default device) from a config dict.

    ``config``: sections ``backbone``, ``head``, ``cam_enc``, ``cam_dec`` as in
    ``tests/fixtures/da3/da3_tiny_config.json``, or ``{"model_name": "da3-large"}``. Its
    ``state_dict()`` names are the hub's (``model.`` prefix), including the 3 aliases of the aux
    head's shared LayerNorm. Use ``with torch.device("meta"):`` to build without memory.
    Raises ValueError / TypeError for a bad config (see :func:`resolve_config`).
    """
    return DepthAnything3(config)
