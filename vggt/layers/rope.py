"""2-D rotary position embedding (RoPE) for patch tokens.

Half of each attention head's channels are rotated by the token's row index, the other half
by its column index (1-D RoPE with "rotate half" pairing on each half).

Reference: facebookresearch/vggt ``vggt/layers/rope.py`` (RotaryPositionEmbedding2D,
PositionGetter); VGGT paper Sec. 3.3 (the aggregator's attention uses 2-D RoPE).
"""

import torch
import torch.nn.functional as F
from torch import nn


def patch_positions(batch: int, rows: int, cols: int, device=None) -> torch.Tensor:
    """Integer ``(row, col)`` of every patch in raster order.

    Returns a LongTensor ``[batch, rows * cols, 2]``; entry ``[b, i]`` is ``(i // cols, i % cols)``.
    """
    pos = torch.cartesian_prod(torch.arange(rows, device=device), torch.arange(cols, device=device))
    return pos.view(1, rows * cols, 2).expand(batch, -1, -1).clone()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryPositionEmbedding2D(nn.Module):
    """Apply 2-D RoPE to queries or keys.

    Args:
        frequency: RoPE base (``rope_freq``; 100 in VGGT).

    ``forward(tokens, positions)``: tokens ``[B, heads, N, head_dim]`` (head_dim divisible by 4),
    positions integer ``[B, N, 2]`` (row, col). Returns a tensor shaped like ``tokens``.
    The cos/sin tables are computed in float32 and cast to ``tokens.dtype`` (as the reference).
    """

    def __init__(self, frequency: float = 100.0):
        super().__init__()
        self.base_frequency = frequency
        self._cache = {}

    def _tables(self, dim: int, length: int, device, dtype):
        key = (dim, length, device, dtype)
        if key not in self._cache:
            exponents = torch.arange(0, dim, 2, device=device).float() / dim
            inv_freq = 1.0 / (self.base_frequency ** exponents)
            angles = torch.outer(torch.arange(length, device=device, dtype=inv_freq.dtype), inv_freq)
            angles = angles.to(dtype)
            angles = torch.cat((angles, angles), dim=-1)
            self._cache[key] = (angles.cos(), angles.sin())
        return self._cache[key]

    def _rope_1d(self, x, pos, cos, sin):
        cos = F.embedding(pos, cos)[:, None]  # [B, 1, N, d]
        sin = F.embedding(pos, sin)[:, None]
        return x * cos + _rotate_half(x) * sin

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        assert positions.ndim == 3 and positions.shape[-1] == 2, "positions must be [B, N, 2]"
        half = tokens.shape[-1] // 2
        cos, sin = self._tables(half, int(positions.max()) + 1, tokens.device, tokens.dtype)
        rows, cols = tokens.chunk(2, dim=-1)
        rows = self._rope_1d(rows, positions[..., 0], cos, sin)
        cols = self._rope_1d(cols, positions[..., 1], cos, sin)
        return torch.cat((rows, cols), dim=-1)
