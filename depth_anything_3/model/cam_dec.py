"""Camera decoder: the last read-out layer's camera token -> DA3 pose encoding (camera-to-world).

Reference: ByteDance-Seed/Depth-Anything-3 ``model/cam_dec.py`` (``CameraDec``).
"""

import torch
from torch import nn


class CameraDec(nn.Module):
    """MLP ``Linear-ReLU-Linear-ReLU`` then ``fc_t`` (3), ``fc_qvec`` (4), ``fc_fov`` (Linear + ReLU, 2).

    ``forward(feat [B, S, dim_in]) -> pose_enc [B, S, 9]`` = ``[t, q_xyzw, fov_h, fov_w]`` of the
    camera-to-world transform (see :mod:`depth_anything_3.utils.cameras`); FoVs are >= 0.
    """

    def __init__(self, dim_in: int = 2048):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(dim_in, dim_in), nn.ReLU(),
                                      nn.Linear(dim_in, dim_in), nn.ReLU())
        self.fc_t = nn.Linear(dim_in, 3)
        self.fc_qvec = nn.Linear(dim_in, 4)
        self.fc_fov = nn.Sequential(nn.Linear(dim_in, 2), nn.ReLU())

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        h = self.backbone(feat)
        return torch.cat([self.fc_t(h), self.fc_qvec(h), self.fc_fov(h)], dim=-1)
