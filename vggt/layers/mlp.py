"""Two-layer perceptron used by every transformer block (ViT / DINOv2 style).

Reference: facebookresearch/vggt ``vggt/layers/mlp.py`` (from DINOv2).
"""

import torch
from torch import nn


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` with exact (erf) GELU. Input/output ``[..., in_features]``."""

    def __init__(self, in_features: int, hidden_features: int = None, out_features: int = None,
                 bias: bool = True):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
