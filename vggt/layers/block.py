"""Pre-norm transformer block with layer scale.

``x = x + ls1(attn(norm1(x))); x = x + ls2(mlp(norm2(x)))``.

Reference: facebookresearch/vggt ``vggt/layers/block.py`` (DINOv2 block, eval path).
"""

import torch
from torch import nn

from .attention import Attention
from .layer_scale import LayerScale
from .mlp import Mlp


class Block(nn.Module):
    """Transformer block on ``[B, N, dim]``.

    Args:
        init_values: layer-scale init; None/0 disables layer scale (``ls1``/``ls2`` = Identity).
        norm_eps: LayerNorm eps (1e-5 in the aggregator / camera head, 1e-6 in DINOv2).
        rope: shared 2-D RoPE module or None; ``pos`` ``[B, N, 2]`` is then required in forward.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 proj_bias: bool = True, ffn_bias: bool = True, init_values: float = None,
                 qk_norm: bool = False, rope: nn.Module = None, norm_eps: float = 1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias,
                              qk_norm=qk_norm, rope=rope)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=ffn_bias)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: torch.Tensor, pos: torch.Tensor = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos=pos))
        x = x + self.ls2(self.mlp(self.norm2(x)))
        return x
