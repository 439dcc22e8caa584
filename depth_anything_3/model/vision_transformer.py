"""DINOv2 ViT with DA3's alternating (within-frame / across-frame) attention and camera tokens.

Tokens per frame: ``[token 0, patches...]`` (token 0 is the class token, replaced by a camera
token from block ``alt_start`` on), patches in raster (row, column) order. Blocks before
``alt_start`` attend within each frame. From ``alt_start`` on, even blocks attend within each
frame and odd blocks attend over all ``S * (1 + h*w)`` tokens of the sequence. From
``qknorm_start`` on, queries and keys are LayerNorm'd per head; from ``rope_start`` on they get
2-D RoPE: within-frame blocks use positions ``(row + 1, col + 1)`` for patches and ``(0, 0)`` for
token 0; across-frame blocks use ``(1, 1)`` for every patch and ``(0, 0)`` for token 0.

Reference: ByteDance-Seed/Depth-Anything-3 ``model/dinov2/vision_transformer.py``
(``DinoVisionTransformer``: ``prepare_tokens_with_masks``, ``interpolate_pos_encoding``,
``_prepare_rope``, ``_get_intermediate_layers_not_chunked``, ``get_intermediate_layers``).
"""

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from vggt.layers import Block, PatchEmbed, RotaryPositionEmbedding2D, patch_positions

from .reference_view import (MIN_VIEWS_FOR_SELECTION, reference_first_order, reorder_views,
                             restore_views, select_reference_view)


class DinoVisionTransformer(nn.Module):
    """ViT-L/14-style backbone of DA3 (parameter names as ``backbone.pretrained.*`` in the hub file).

    Args:
        img_size: square size (px) the learned position table is built for (518 -> 37 x 37).
        patch_size, embed_dim, depth, num_heads, mlp_ratio, qkv_bias, proj_bias, ffn_bias: ViT sizes.
        init_values: layer-scale init (1.0; ``ls1``/``ls2`` gammas).
        ffn_layer: only ``"mlp"`` (GELU MLP) is implemented (DA3-Giant's SwiGLU is not).
        num_register_tokens: must be 0 (no DA3 model has registers).
        interpolate_offset, interpolate_antialias: position-table resampling (0.1, False).
        alt_start, qknorm_start, rope_start: first block with alternating attention / QK-norm /
            RoPE (-1: never). rope_freq: RoPE base (100).
        cat_token: output ``[within-frame tokens, latest tokens]`` (2 * embed_dim wide).
    Raises ValueError / NotImplementedError for unsupported settings.
    """

    def __init__(self, img_size: int = 518, patch_size: int = 14, embed_dim: int = 1024,
                 depth: int = 24, num_heads: int = 16, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 proj_bias: bool = True, ffn_bias: bool = True, init_values: float = 1.0,
                 ffn_layer: str = "mlp", num_register_tokens: int = 0,
                 interpolate_antialias: bool = False, interpolate_offset: float = 0.1,
                 alt_start: int = -1, qknorm_start: int = -1, rope_start: int = -1,
                 rope_freq: float = 100, cat_token: bool = True):
        super().__init__()
        if ffn_layer != "mlp":
            raise NotImplementedError(f"ffn_layer {ffn_layer!r} is not implemented (only 'mlp')")
        if num_register_tokens:
            raise ValueError("DA3 backbones have no register tokens; num_register_tokens must be 0")
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.alt_start = alt_start
        self.qknorm_start = qknorm_start
        self.rope_start = rope_start
        self.cat_token = cat_token
        self.interpolate_offset = interpolate_offset
        self.interpolate_antialias = interpolate_antialias

        self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # [:, 0] for the reference view, [:, 1] for every other view
        self.camera_token = nn.Parameter(torch.randn(1, 2, embed_dim)) if alt_start != -1 else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        self.rope = (RotaryPositionEmbedding2D(rope_freq)
                     if rope_start != -1 and rope_freq > 0 else None)
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, proj_bias=proj_bias,
                  ffn_bias=ffn_bias, init_values=init_values,
                  qk_norm=qknorm_start != -1 and i >= qknorm_start,
                  rope=self.rope if rope_start != -1 and i >= rope_start else None, norm_eps=1e-6)
            for i in range(depth)
        ])
        self.norm = nn.LayerNorm(embed_dim)  # eps 1e-5 (unlike the blocks' 1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def position_table(self, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        """Position embeddings ``[1, 1 + rows*cols, C]`` for a ``rows x cols`` patch grid.

        The square table is resampled bicubically (no antialias) with the *scale factor*
        ``((rows + offset) / M, (cols + offset) / M)`` (M = table side), which also sets the
        sampling positions; it is used as is when the grid is the table's own square size.
        """
        n = self.pos_embed.shape[1] - 1
        if rows * cols == n and rows == cols:
            return self.pos_embed
        m = int(math.sqrt(n))
        if m * m != n:
            raise ValueError(f"position table of {n} patches is not square")
        table = self.pos_embed.float()
        grid = table[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
        if self.interpolate_offset:
            size_kw = {"scale_factor": ((rows + self.interpolate_offset) / m,
                                        (cols + self.interpolate_offset) / m)}
        else:
            size_kw = {"size": (rows, cols)}
        grid = F.interpolate(grid, mode="bicubic", antialias=self.interpolate_antialias, **size_kw)
        if tuple(grid.shape[-2:]) != (rows, cols):
            raise RuntimeError(f"position table resampled to {tuple(grid.shape[-2:])}, not {(rows, cols)}")
        grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat((table[:, :1], grid), dim=1).to(dtype)

    def _rope_positions(self, B: int, S: int, rows: int, cols: int, device):
        """Integer positions ``(within-frame [B*S, 1+N, 2], across-frame [B, S*(1+N), 2])``."""
        patches = patch_positions(1, rows, cols, device=device)[0] + 1  # (row + 1, col + 1)
        token0 = torch.zeros(1, 2, dtype=patches.dtype, device=device)
        local = torch.cat([token0, patches]).expand(B * S, -1, -1)
        frame = torch.cat([token0, torch.ones_like(patches)])  # every patch at (1, 1)
        return local, frame.repeat(S, 1).expand(B, -1, -1)

    def _block(self, blk: nn.Module, x: torch.Tensor, pos: Optional[torch.Tensor], across: bool):
        B, S, N, C = x.shape
        x = x.reshape(B, S * N, C) if across else x.reshape(B * S, N, C)
        return blk(x, pos=pos).reshape(B, S, N, C)

    def forward(self, images: torch.Tensor, out_layers: Sequence[int],
                cam_token: Optional[torch.Tensor] = None,
                ref_view_strategy: str = "saddle_balanced"
                ) -> Tuple[List[torch.Tensor], List[torch.Tensor], Optional[torch.Tensor]]:
        """Run the backbone and read out the ``out_layers`` blocks.

        Args:
            images: ``[B, S, 3, H, W]`` ImageNet-normalised, H and W multiples of ``patch_size``.
            out_layers: block indices to read out (e.g. ``[11, 15, 19, 23]``).
            cam_token: optional ``[B, S, embed_dim]`` camera-encoder tokens; they replace token 0
                at block ``alt_start`` and disable reference-view selection.
            ref_view_strategy: see :func:`select_reference_view`.

        Returns ``(features, camera_features, ref_view_idx)``, views in input order:
            ``features`` per out layer ``[B, S, h*w, 2C]`` = ``cat(within-frame tokens,
            final_norm(latest tokens))`` (only the second half is normalised), patch tokens only;
            ``camera_features`` per out layer ``[B, S, 2C]``: token 0 of ``cat(within-frame,
            latest)``, not normalised; ``ref_view_idx`` LongTensor ``[B]`` when a reference view
            was selected (S >= 3, no ``cam_token``), else None.
        """
        B, S, _, H, W = images.shape
        rows, cols = H // self.patch_size, W // self.patch_size
        x = self.patch_embed(images.reshape(B * S, *images.shape[2:]))
        x = torch.cat((self.cls_token.expand(B * S, -1, -1), x), dim=1)
        x = x + self.position_table(rows, cols, x.dtype)
        x = x.reshape(B, S, 1 + rows * cols, self.embed_dim)
        local_pos, frame_pos = (self._rope_positions(B, S, rows, cols, x.device)
                                if self.rope is not None else (None, None))

        wanted = set(int(i) for i in out_layers)
        alternating = self.alt_start != -1
        order = ref_idx = None
        local_x = x
        taken = []
        for i, blk in enumerate(self.blocks):
            with_pos = self.rope is not None and i >= self.rope_start
            if (alternating and i == self.alt_start - 1 and S >= MIN_VIEWS_FOR_SELECTION
                    and cam_token is None):
                ref_idx = select_reference_view(x, ref_view_strategy)
                order = reference_first_order(ref_idx, S)
                x, local_x = reorder_views(x, order), reorder_views(local_x, order)
            if alternating and i == self.alt_start:
                if cam_token is None:
                    cam_token = torch.cat([self.camera_token[:, :1].expand(B, 1, -1),
                                           self.camera_token[:, 1:].expand(B, S - 1, -1)], dim=1)
                x = torch.cat([cam_token[:, :, None].to(x.dtype), x[:, :, 1:]], dim=2)
                local_x = x  # the reference writes token 0 in place into the shared tensor
            if alternating and i >= self.alt_start and i % 2 == 1:
                x = self._block(blk, x, frame_pos if with_pos else None, across=True)
            else:
                x = self._block(blk, x, local_pos if with_pos else None, across=False)
                local_x = x
            if i in wanted:
                out = torch.cat([local_x, x], dim=-1) if self.cat_token else x
                taken.append(restore_views(out, order) if order is not None else out)
        if len(taken) != len(wanted):
            raise ValueError(f"out_layers {sorted(wanted)} outside the {len(self.blocks)} blocks")

        camera_features = [t[:, :, 0] for t in taken]
        return [self.readout(t) for t in taken], camera_features, ref_idx

    def readout(self, tokens: torch.Tensor) -> torch.Tensor:
        """Read-out tokens ``[B, S, 1+N, 2C]`` (``cat_token``) or ``[B, S, 1+N, C]`` -> patch
        features ``[B, S, N, 2C]`` = ``cat(tokens[..., :C], norm(tokens[..., C:]))`` (the final
        LayerNorm on the second half only; or ``norm(tokens)`` when C wide), token 0 dropped."""
        C = self.embed_dim
        if tokens.shape[-1] == 2 * C:
            tokens = torch.cat([tokens[..., :C], self.norm(tokens[..., C:])], dim=-1)
        elif tokens.shape[-1] == C:
            tokens = self.norm(tokens)
        else:
            raise ValueError(f"read-out tokens are {tokens.shape[-1]} wide, expected {C} or {2 * C}")
        return tokens[:, :, 1:]
