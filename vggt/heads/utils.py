"""Sinusoidal 2-D position embeddings added inside the DPT head.

Reference: facebookresearch/vggt ``vggt/heads/utils.py`` (create_uv_grid after MoGe's
normalized view-plane UV; make_sincos_pos_embed with omega_0 = 100).
"""

import torch


def create_uv_grid(width: int, height: int, aspect_ratio: float = None, dtype=None,
                   device=None) -> torch.Tensor:
    """Pixel-centre UV grid ``[height, width, 2]`` (u right, v down), spanning the unit diagonal.

    The top-left centre is ``(-span_x (W-1)/W, -span_y (H-1)/H)`` with
    ``span_x = a / sqrt(1 + a^2)``, ``span_y = 1 / sqrt(1 + a^2)``, ``a = aspect_ratio`` (W/H).
    """
    if aspect_ratio is None:
        aspect_ratio = float(width) / float(height)
    diag = (aspect_ratio ** 2 + 1.0) ** 0.5
    span_x, span_y = aspect_ratio / diag, 1.0 / diag
    u = torch.linspace(-span_x * (width - 1) / width, span_x * (width - 1) / width, steps=width,
                       dtype=dtype, device=device)
    v = torch.linspace(-span_y * (height - 1) / height, span_y * (height - 1) / height, steps=height,
                       dtype=dtype, device=device)
    uu, vv = torch.meshgrid(u, v, indexing="xy")
    return torch.stack((uu, vv), dim=-1)


def sincos_embed_1d(dim: int, pos: torch.Tensor, omega_0: float = 100) -> torch.Tensor:
    """``[M] -> [M, dim]`` float32: ``[sin(pos * w_k), cos(pos * w_k)]``, ``w_k = omega_0^(-2k/dim)``.

    Frequencies and products are evaluated in float64 (as the reference, except on MPS).
    """
    assert dim % 2 == 0
    wide = torch.float32 if pos.device.type == "mps" else torch.float64
    omega = torch.arange(dim // 2, dtype=wide, device=pos.device) / (dim / 2.0)
    omega = 1.0 / omega_0 ** omega
    out = torch.outer(pos.reshape(-1).to(wide), omega)
    return torch.cat([out.sin(), out.cos()], dim=1).float()


def position_grid_to_embed(pos_grid: torch.Tensor, embed_dim: int, omega_0: float = 100) -> torch.Tensor:
    """``[H, W, 2]`` grid -> ``[H, W, embed_dim]`` (first half encodes u, second half v)."""
    H, W, _ = pos_grid.shape
    flat = pos_grid.reshape(-1, 2)
    emb = torch.cat([sincos_embed_1d(embed_dim // 2, flat[:, 0], omega_0),
                     sincos_embed_1d(embed_dim // 2, flat[:, 1], omega_0)], dim=-1)
    return emb.view(H, W, embed_dim)
