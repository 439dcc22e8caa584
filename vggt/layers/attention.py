"""Multi-head self-attention with optional QK-norm and 2-D RoPE.

Reference: facebookresearch/vggt ``vggt/layers/attention.py``. Uses
``F.scaled_dot_product_attention`` (flash / memory-efficient kernels when available).
"""

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Self-attention over ``[B, N, dim]`` tokens.

    Args:
        dim: token width; ``num_heads`` must divide it.
        qk_norm: LayerNorm (eps 1e-5, affine) on each head's queries and keys (``q_norm``/``k_norm``).
        rope: a :class:`RotaryPositionEmbedding2D` applied to q and k after the norm, or None.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, proj_bias: bool = True,
                 qk_norm: bool = False, rope: nn.Module = None):
        super().__init__()
        assert dim % num_heads == 0, "dim must be divisible by num_heads"
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.rope = rope

    def forward(self, x: torch.Tensor, pos: torch.Tensor = None) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, N, head_dim]
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        x = F.scaled_dot_product_attention(q, k, v)
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj(x)
