"""Camera encoder: input cameras -> one token per view that replaces token 0 at ``alt_start``.

Reference: ByteDance-Seed/Depth-Anything-3 ``model/cam_enc.py`` (``CameraEnc``),
``model/utils/block.py`` (trunk blocks: LayerNorm eps 1e-5, qkv bias, layer scale, no QK-norm,
no RoPE).
"""

from typing import Sequence

import torch
from torch import nn

from vggt.layers import Block, Mlp
from vggt.utils.pose_enc import extri_intri_to_pose_encoding

from ..utils.cameras import invert_rigid


class CameraEnc(nn.Module):
    """``pose_branch`` MLP (9 -> dim_out/2 -> dim_out, GELU), ``token_norm``, ``trunk`` blocks
    (self-attention across the S views of a sequence), ``trunk_norm``.

    Args:
        dim_out: token width (= backbone embed_dim). dim_in: 9. trunk_depth, num_heads,
        mlp_ratio, init_values: trunk blocks. target_dim: accepted for config compatibility (9).
    """

    def __init__(self, dim_out: int = 1024, dim_in: int = 9, trunk_depth: int = 4,
                 target_dim: int = 9, num_heads: int = 16, mlp_ratio: float = 4,
                 init_values: float = 0.01):
        super().__init__()
        self.trunk = nn.Sequential(*[Block(dim_out, num_heads, mlp_ratio, init_values=init_values)
                                     for _ in range(trunk_depth)])
        self.token_norm = nn.LayerNorm(dim_out)
        self.trunk_norm = nn.LayerNorm(dim_out)
        self.pose_branch = Mlp(dim_in, dim_out // 2, dim_out)

    def forward(self, extrinsics: torch.Tensor, intrinsics: torch.Tensor,
                image_size_hw: Sequence[int]) -> torch.Tensor:
        """Tokens ``[B, S, dim_out]`` from cameras.

        Args:
            extrinsics: ``[B, S, 4, 4]`` (or ``[B, S, 3, 4]``) world-to-camera, OpenCV axes,
                normally after :func:`depth_anything_3.utils.cameras.normalize_extrinsics`.
            intrinsics: ``[B, S, 3, 3]`` in pixels of the ``image_size_hw = (H, W)`` input.
        The encoding is ``[t_c2w, q_xyzw(R_c2w) (w >= 0), 2 atan(H / 2 fy), 2 atan(W / 2 fx)]``.
        """
        c2w = invert_rigid(extrinsics.float())
        enc = extri_intri_to_pose_encoding(c2w, intrinsics.float(), image_size_hw)
        enc = enc.to(self.token_norm.weight.dtype)
        return self.trunk_norm(self.trunk(self.token_norm(self.pose_branch(enc))))
