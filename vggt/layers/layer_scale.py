"""Per-channel residual scaling (CaiT "LayerScale"), parameter name ``gamma``.

Reference: facebookresearch/vggt ``vggt/layers/layer_scale.py``.
"""

import torch
from torch import nn


class LayerScale(nn.Module):
    """``x * gamma`` with ``gamma`` a learned ``[dim]`` vector initialised to ``init_values``."""

    def __init__(self, dim: int, init_values: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma
