"""Quaternion <-> rotation matrix, scalar-last (XYZW) convention.

Quaternion ``(x, y, z, w)`` represents the rotation matrix ``R`` acting on column vectors
(``v' = R v``); :func:`mat_to_quat` returns the representative with ``w >= 0``.

Reference: facebookresearch/vggt ``vggt/utils/rotation.py`` (adapted from PyTorch3D, with the
real part moved last).
"""

import torch
import torch.nn.functional as F


def quat_to_mat(quaternions: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` XYZW quaternions (need not be unit; normalised implicitly) -> ``[..., 3, 3]``."""
    i, j, k, r = torch.unbind(quaternions, -1)
    two_s = 2.0 / (quaternions * quaternions).sum(-1)
    o = torch.stack((
        1 - two_s * (j * j + k * k), two_s * (i * j - k * r), two_s * (i * k + j * r),
        two_s * (i * j + k * r), 1 - two_s * (i * i + k * k), two_s * (j * k - i * r),
        two_s * (i * k - j * r), two_s * (j * k + i * r), 1 - two_s * (i * i + j * j),
    ), -1)
    return o.reshape(quaternions.shape[:-1] + (3, 3))


def _sqrt_positive_part(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(max(0, x))`` with a zero subgradient at 0."""
    ret = torch.zeros_like(x)
    positive = x > 0
    if torch.is_grad_enabled():
        ret[positive] = torch.sqrt(x[positive])
    else:
        ret = torch.where(positive, torch.sqrt(x), ret)
    return ret


def standardize_quaternion(quaternions: torch.Tensor) -> torch.Tensor:
    """Flip XYZW quaternions to have a non-negative real part ``w``."""
    return torch.where(quaternions[..., 3:4] < 0, -quaternions, quaternions)


def mat_to_quat(matrix: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3]`` rotation matrices -> ``[..., 4]`` unit XYZW quaternions with ``w >= 0``.

    Numerically stable: picks, per matrix, the candidate with the largest denominator.
    Raises ValueError for a wrong trailing shape.
    """
    if matrix.size(-1) != 3 or matrix.size(-2) != 3:
        raise ValueError(f"invalid rotation matrix shape {tuple(matrix.shape)}")
    batch = matrix.shape[:-2]
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = torch.unbind(matrix.reshape(batch + (9,)), dim=-1)
    q_abs = _sqrt_positive_part(torch.stack([
        1.0 + m00 + m11 + m22,
        1.0 + m00 - m11 - m22,
        1.0 - m00 + m11 - m22,
        1.0 - m00 - m11 + m22,
    ], dim=-1))
    # candidate quaternions in (r, i, j, k) order, each row scaled by 2 * q_abs[row]
    quat_by_rijk = torch.stack([
        torch.stack([q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
        torch.stack([m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
        torch.stack([m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21], dim=-1),
        torch.stack([m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2], dim=-1),
    ], dim=-2)
    floor = torch.tensor(0.1, dtype=q_abs.dtype, device=q_abs.device)
    candidates = quat_by_rijk / (2.0 * q_abs[..., None].max(floor))
    best = F.one_hot(q_abs.argmax(dim=-1), num_classes=4) > 0.5
    out = candidates[best, :].reshape(batch + (4,))
    return standardize_quaternion(out[..., [1, 2, 3, 0]])
