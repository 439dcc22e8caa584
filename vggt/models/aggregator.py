"""Alternating-Attention aggregator (VGGT paper Sec. 3.2-3.3).

Each frame is encoded to patch tokens by DINOv2; one camera token and ``num_register_tokens``
register tokens are prepended per frame (the first frame uses its own learned copies, all other
frames share a second copy). ``depth`` pairs of transformer blocks then alternate between
frame-wise attention (tokens of one frame) and global attention (tokens of all frames), both with
2-D RoPE on patch positions (special tokens sit at position (0, 0), patches at (row+1, col+1)).
Layer ``i``'s output is ``cat(frame_tokens_i, global_tokens_i)`` of width ``2 * embed_dim``.

Reference: facebookresearch/vggt ``vggt/models/aggregator.py``.
"""

from typing import Iterable, List, Optional

import torch
from torch import nn

from ..layers import Block, DinoV2Encoder, PatchEmbed, RotaryPositionEmbedding2D, patch_positions

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def first_and_rest(tokens: torch.Tensor, B: int, S: int) -> torch.Tensor:
    """``[1, 2, n, C]`` learned tokens -> ``[B*S, n, C]``: copy 0 for frame 0, copy 1 for others."""
    first = tokens[:, :1].expand(B, 1, *tokens.shape[2:])
    rest = tokens[:, 1:].expand(B, S - 1, *tokens.shape[2:])
    return torch.cat([first, rest], dim=1).reshape(B * S, *tokens.shape[2:])


class Aggregator(nn.Module):
    """Alternating frame/global attention over all frames' tokens.

    ``forward(images [B, S, 3, H, W] in [0, 1], keep_layers=None)`` returns
    ``(outputs, patch_start_idx)``: ``outputs`` is a list of length ``depth`` whose entry ``i`` is
    ``[B, S, P, 2*embed_dim]`` (P = 1 + registers + patches) or None when ``i`` is not in
    ``keep_layers`` (None keeps all; dropping layers saves memory and does not change values).
    """

    def __init__(self, img_size: int = 518, patch_size: int = 14, embed_dim: int = 1024,
                 depth: int = 24, num_heads: int = 16, mlp_ratio: float = 4.0,
                 num_register_tokens: int = 4, patch_embed: str = "dinov2", encoder_depth: int = 24,
                 encoder_num_heads: int = 16, qk_norm: bool = True, rope_freq: float = 100,
                 init_values: float = 0.01):
        super().__init__()
        if patch_embed.startswith("dinov2"):
            self.patch_embed = DinoV2Encoder(img_size, patch_size, embed_dim, encoder_depth,
                                             encoder_num_heads, mlp_ratio, num_register_tokens)
        elif patch_embed == "conv":
            self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim)
        else:
            raise ValueError(f"unknown patch_embed {patch_embed!r} (expected 'dinov2' or 'conv')")
        self.rope = RotaryPositionEmbedding2D(rope_freq) if rope_freq > 0 else None

        def make_block():
            return Block(embed_dim, num_heads, mlp_ratio, init_values=init_values, qk_norm=qk_norm,
                         rope=self.rope)

        self.frame_blocks = nn.ModuleList([make_block() for _ in range(depth)])
        self.global_blocks = nn.ModuleList([make_block() for _ in range(depth)])
        self.camera_token = nn.Parameter(torch.randn(1, 2, 1, embed_dim))
        self.register_token = nn.Parameter(torch.randn(1, 2, num_register_tokens, embed_dim))
        nn.init.normal_(self.camera_token, std=1e-6)
        nn.init.normal_(self.register_token, std=1e-6)
        self.patch_size = patch_size
        self.depth = depth
        self.patch_start_idx = 1 + num_register_tokens

    def forward(self, images: torch.Tensor, keep_layers: Optional[Iterable[int]] = None):
        B, S, _, H, W = images.shape
        mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 1, 3, 1, 1)
        x = ((images.float() - mean) / std).reshape(B * S, 3, H, W)
        x = x.to(self.camera_token.dtype)  # model may be cast to bf16/fp16 as a whole

        patches = self.patch_embed(x)  # [B*S, N, C]
        tokens = torch.cat([first_and_rest(self.camera_token, B, S),
                            first_and_rest(self.register_token, B, S), patches], dim=1)
        _, P, C = tokens.shape

        pos = None
        if self.rope is not None:
            pos = patch_positions(B * S, H // self.patch_size, W // self.patch_size, images.device) + 1
            special = torch.zeros(B * S, self.patch_start_idx, 2, dtype=pos.dtype, device=pos.device)
            pos = torch.cat([special, pos], dim=1)  # [B*S, P, 2]
            global_pos = pos.reshape(B, S * P, 2)

        keep = set(range(self.depth)) if keep_layers is None else {i % self.depth for i in keep_layers}
        outputs: List[Optional[torch.Tensor]] = []
        for i in range(self.depth):
            tokens = self.frame_blocks[i](tokens.reshape(B * S, P, C), pos=pos)
            frame_out = tokens.reshape(B, S, P, C)
            tokens = self.global_blocks[i](tokens.reshape(B, S * P, C),
                                           pos=None if pos is None else global_pos)
            global_out = tokens.reshape(B, S, P, C)
            outputs.append(torch.cat([frame_out, global_out], dim=-1) if i in keep else None)
        return outputs, self.patch_start_idx
