"""DINOv2 ViT with register tokens: VGGT's per-frame patch encoder.

Tokens: ``[cls, registers..., patches...]``; the learned position table (cls + square grid for
``img_size``) is resampled to the input's patch grid with bicubic, antialiased interpolation
(offset 0.0, i.e. by output size). Only the final-LayerNorm patch tokens are returned.

Reference: facebookresearch/vggt ``vggt/layers/vision_transformer.py`` (DinoVisionTransformer,
``dinov2_vitl14_reg`` as built by the aggregator: layer-scale init 1.0, LayerNorm eps 1e-6,
antialias True, interpolate_offset 0.0); Darcet et al. "Vision Transformers Need Registers".
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.init import trunc_normal_

from .block import Block
from .patch_embed import PatchEmbed


class DinoV2Encoder(nn.Module):
    """ViT patch encoder; ``forward(images [B, 3, H, W] normalised) -> [B, (H/p)*(W/p), embed_dim]``.

    The parameter names equal those under ``aggregator.patch_embed.`` in ``facebook/VGGT-1B``.
    ``mask_token`` exists only for checkpoint compatibility and is unused.
    """

    def __init__(self, img_size: int = 518, patch_size: int = 14, embed_dim: int = 1024,
                 depth: int = 24, num_heads: int = 16, mlp_ratio: float = 4.0,
                 num_register_tokens: int = 4, init_values: float = 1.0,
                 interpolate_antialias: bool = True, interpolate_offset: float = 0.0):
        super().__init__()
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        self.interpolate_antialias = interpolate_antialias
        self.interpolate_offset = interpolate_offset

        self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        self.register_tokens = (nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
                                if num_register_tokens else None)
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, init_values=init_values, norm_eps=1e-6)
            for _ in range(depth)
        ])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self):
        trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def position_table(self, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        """Position embeddings ``[1, 1 + rows*cols, dim]`` for a ``rows x cols`` patch grid."""
        n = self.pos_embed.shape[1] - 1
        if rows * cols == n and rows == cols:  # reference: npatch == N and w == h
            return self.pos_embed
        table = self.pos_embed.float()
        cls_pos, patch_pos = table[:, :1], table[:, 1:]
        m = int(math.sqrt(n))
        assert m * m == n, "position table must be square"
        dim = table.shape[-1]
        if self.interpolate_offset:
            kwargs = {"scale_factor": ((rows + self.interpolate_offset) / m,
                                       (cols + self.interpolate_offset) / m)}
        else:
            kwargs = {"size": (rows, cols)}
        patch_pos = F.interpolate(patch_pos.reshape(1, m, m, dim).permute(0, 3, 1, 2), mode="bicubic",
                                  antialias=self.interpolate_antialias, **kwargs)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)
        return torch.cat((cls_pos, patch_pos), dim=1).to(dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        B, _, H, W = images.shape
        x = self.patch_embed(images)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + self.position_table(H // self.patch_size, W // self.patch_size, x.dtype)
        if self.register_tokens is not None:
            x = torch.cat((x[:, :1], self.register_tokens.expand(B, -1, -1), x[:, 1:]), dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return x[:, 1 + self.num_register_tokens:]
