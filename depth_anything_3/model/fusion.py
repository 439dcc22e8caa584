"""RefineNet-style fusion block of the DA3 DPT head (with its residual conv unit).

Unlike VGGT's DPT (whose in-place ReLU puts ``relu(x)`` on the skip path), DA3's residual unit
keeps the raw input on the skip path: ``x + conv2(relu(conv1(relu(x))))``.

Reference: ByteDance-Seed/Depth-Anything-3 ``model/dpt.py`` (``ResidualConvUnit``,
``FeatureFusionBlock``, ``_make_fusion_block``: ReLU not in place, no batch norm, no expand,
bilinear upsampling with ``align_corners=True``).
"""

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vggt.heads.dpt_head import interpolate


class ResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` on ``[N, features, h, w]`` (3x3 convs with bias)."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """``out_conv(up(rcu2(x + rcu1(lateral))))``; ``up`` = bilinear to ``size`` or x2.

    ``forward(x, lateral=None, size=None)``: ``x`` and ``lateral`` ``[N, features, h, w]``;
    ``lateral`` is ignored without ``has_residual``. Returns ``[N, features, *size]`` (or 2h x 2w).
    """

    def __init__(self, features: int, has_residual: bool = True):
        super().__init__()
        self.has_residual = has_residual
        self.resConfUnit1 = ResidualConvUnit(features) if has_residual else None
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, x: torch.Tensor, lateral: Optional[torch.Tensor] = None,
                size: Optional[Sequence[int]] = None) -> torch.Tensor:
        if self.has_residual and lateral is not None:
            x = x + self.resConfUnit1(lateral)
        x = self.resConfUnit2(x)
        if size is None:
            size = (int(x.shape[-2] * 2), int(x.shape[-1] * 2))
        return self.out_conv(interpolate(x, tuple(size), align_corners=True))
