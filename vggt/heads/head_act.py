"""Output activations of the camera and DPT heads.

Reference: facebookresearch/vggt ``vggt/heads/head_act.py``.
"""

import torch
import torch.nn.functional as F


def inverse_log_transform(y: torch.Tensor) -> torch.Tensor:
    """``sign(y) * (exp(|y|) - 1)``: inverse of the symmetric log used for 3-D points."""
    return torch.sign(y) * torch.expm1(torch.abs(y))


def _act(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "linear":
        return x
    if kind == "inv_log":
        return inverse_log_transform(x)
    if kind == "exp":
        return torch.exp(x)
    if kind == "relu":
        return F.relu(x)
    if kind == "sigmoid":
        return torch.sigmoid(x)
    raise ValueError(f"unknown activation {kind!r}")


def activate_pose(pose_enc: torch.Tensor, trans_act: str = "linear", quat_act: str = "linear",
                  fl_act: str = "linear") -> torch.Tensor:
    """Activate a ``[..., 9]`` pose encoding split as translation (3), quaternion (4), FoV (2)."""
    t, q, fov = pose_enc[..., :3], pose_enc[..., 3:7], pose_enc[..., 7:]
    return torch.cat([_act(t, trans_act), _act(q, quat_act), _act(fov, fl_act)], dim=-1)


def activate_head(out: torch.Tensor, activation: str = "exp", conf_activation: str = "expp1"):
    """Split a DPT output ``[N, C, H, W]`` into values ``[N, H, W, C-1]`` and confidence ``[N, H, W]``.

    ``activation``: "exp" (depth), "inv_log" (points), "relu", "sigmoid", "linear", "norm_exp".
    ``conf_activation``: "expp1" (1 + exp, so confidence > 1), "expp0", "sigmoid".
    """
    fmap = out.permute(0, 2, 3, 1)
    values, conf = fmap[..., :-1], fmap[..., -1]
    if activation == "norm_exp":
        d = values.norm(dim=-1, keepdim=True).clamp(min=1e-8)
        values = values / d * torch.expm1(d)
    else:
        values = _act(values, activation)
    if conf_activation == "expp1":
        conf = 1 + conf.exp()
    elif conf_activation == "expp0":
        conf = conf.exp()
    elif conf_activation == "sigmoid":
        conf = torch.sigmoid(conf)
    else:
        raise ValueError(f"unknown conf_activation {conf_activation!r}")
    return values, conf
