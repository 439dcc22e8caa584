"""Image to patch tokens with a strided convolution.

Reference: facebookresearch/vggt ``vggt/layers/patch_embed.py`` (DINOv2 PatchEmbed).
"""

import torch
from torch import nn


class PatchEmbed(nn.Module):
    """``[B, C, H, W]`` -> ``[B, (H/p)*(W/p), embed_dim]`` (raster order), H and W multiples of p."""

    def __init__(self, img_size: int = 518, patch_size: int = 14, in_chans: int = 3,
                 embed_dim: int = 1024):
        super().__init__()
        self.patch_size = patch_size
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {p}")
        return self.proj(x).flatten(2).transpose(1, 2)
