"""Iterative camera head (VGGT paper Sec. 3.3, "Prediction heads").

The camera token of every frame (from the last aggregator layer, width ``2*embed_dim``) is
refined ``num_iterations`` times: the current pose estimate is embedded and modulates the
LayerNorm'd token (DiT-style adaLN shift/scale/gate), a small self-attention trunk runs over the
S frames, and an MLP predicts a delta added to the estimate. Pose encoding ``absT_quaR_FoV``:
``[t (3), quaternion XYZW (4), fov_h, fov_w (radians)]``; translation and quaternion are linear,
the FoVs pass through ReLU.

Reference: facebookresearch/vggt ``vggt/heads/camera_head.py``.
"""

from typing import List

import torch
from torch import nn

from ..layers import Block, Mlp
from .head_act import activate_pose


class CameraHead(nn.Module):
    """``forward(tokens_list) -> list of num_iterations pose encodings [B, S, 9]`` (float32).

    Runs with autocast disabled, in the dtype of its own parameters.
    """

    def __init__(self, dim_in: int = 2048, trunk_depth: int = 4, num_heads: int = 16,
                 mlp_ratio: float = 4.0, init_values: float = 0.01, target_dim: int = 9,
                 trans_act: str = "linear", quat_act: str = "linear", fl_act: str = "relu"):
        super().__init__()
        self.target_dim = target_dim
        self.trans_act, self.quat_act, self.fl_act = trans_act, quat_act, fl_act
        self.trunk = nn.Sequential(*[Block(dim_in, num_heads, mlp_ratio, init_values=init_values)
                                     for _ in range(trunk_depth)])
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, target_dim))
        self.embed_pose = nn.Linear(target_dim, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, target_dim)

    def forward(self, tokens_list: List[torch.Tensor], num_iterations: int = 4) -> List[torch.Tensor]:
        dtype = self.embed_pose.weight.dtype
        with torch.autocast(device_type=tokens_list[-1].device.type, enabled=False):
            tokens = self.token_norm(tokens_list[-1][:, :, 0].to(dtype))  # [B, S, 2C]
            B, S, _ = tokens.shape
            pose = None
            poses = []
            for _ in range(num_iterations):
                if pose is None:
                    cond = self.embed_pose(self.empty_pose_tokens.expand(B, S, -1))
                else:  # as the reference: no gradient through earlier iterates
                    pose = pose.detach()
                    cond = self.embed_pose(pose)
                shift, scale, gate = self.poseLN_modulation(cond).chunk(3, dim=-1)
                x = gate * (self.adaln_norm(tokens) * (1 + scale) + shift) + tokens
                x = self.trunk(x)
                delta = self.pose_branch(self.trunk_norm(x))
                pose = delta if pose is None else pose + delta
                poses.append(activate_pose(pose, self.trans_act, self.quat_act, self.fl_act))
        return poses
