"""Camera pose encoding ``absT_quaR_FoV`` used by the VGGT camera head.

Encoding ``[..., 9]`` = ``[tx, ty, tz, qx, qy, qz, qw, fov_h, fov_w]`` where ``(R, t)`` is the
camera-from-world extrinsic in OpenCV axes (x right, y down, z forward; ``X_cam = R X_world + t``),
the quaternion is XYZW of ``R`` and the FoVs (radians) belong to a pinhole camera with the
principal point at the image centre: ``fy = (H/2) / tan(fov_h/2)``, ``fx = (W/2) / tan(fov_w/2)``.
VGGT expresses the world frame as the first camera's frame.

Reference: facebookresearch/vggt ``vggt/utils/pose_enc.py``.
"""

from typing import Optional, Sequence, Tuple

import torch

from .rotation import mat_to_quat, quat_to_mat


def extri_intri_to_pose_encoding(extrinsics: torch.Tensor, intrinsics: torch.Tensor,
                                 image_size_hw: Sequence[int],
                                 pose_encoding_type: str = "absT_quaR_FoV") -> torch.Tensor:
    """Cameras -> pose encoding.

    Args:
        extrinsics: ``[B, S, 3, 4]`` (or ``[..., 3, 4]`` / ``[..., 4, 4]``) camera-from-world.
        intrinsics: ``[..., 3, 3]`` in pixels (only ``fx = K[0,0]`` and ``fy = K[1,1]`` are used).
        image_size_hw: ``(H, W)`` in pixels.
    Returns float32 ``[..., 9]``. Raises ValueError for an unknown ``pose_encoding_type``.
    """
    if pose_encoding_type != "absT_quaR_FoV":
        raise ValueError(f"unsupported pose encoding {pose_encoding_type!r}")
    R, t = extrinsics[..., :3, :3], extrinsics[..., :3, 3]
    H, W = image_size_hw
    fov_h = 2 * torch.atan((H / 2) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((W / 2) / intrinsics[..., 0, 0])
    return torch.cat([t, mat_to_quat(R), fov_h[..., None], fov_w[..., None]], dim=-1).float()


def pose_encoding_to_extri_intri(pose_encoding: torch.Tensor,
                                 image_size_hw: Optional[Sequence[int]] = None,
                                 pose_encoding_type: str = "absT_quaR_FoV",
                                 build_intrinsics: bool = True
                                 ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Pose encoding ``[..., 9]`` (e.g. ``[B, S, 9]``) -> ``(extrinsic, intrinsic)``.

    Returns:
        extrinsic ``[..., 3, 4]`` camera-from-world ``[R | t]`` (OpenCV axes, same dtype as input);
        intrinsic ``[..., 3, 3]`` in pixels for an image of ``image_size_hw = (H, W)``:
        ``[[fx, 0, W/2], [0, fy, H/2], [0, 0, 1]]`` (None if ``build_intrinsics`` is False).
    Raises ValueError for an unknown type or when intrinsics are requested without a size.
    """
    if pose_encoding_type != "absT_quaR_FoV":
        raise ValueError(f"unsupported pose encoding {pose_encoding_type!r}")
    t, quat = pose_encoding[..., :3], pose_encoding[..., 3:7]
    fov_h, fov_w = pose_encoding[..., 7], pose_encoding[..., 8]
    extrinsics = torch.cat([quat_to_mat(quat), t[..., None]], dim=-1)
    if not build_intrinsics:
        return extrinsics, None
    if image_size_hw is None:
        raise ValueError("image_size_hw is required to build intrinsics")
    H, W = image_size_hw
    intrinsics = torch.zeros(pose_encoding.shape[:-1] + (3, 3), dtype=pose_encoding.dtype,
                             device=pose_encoding.device)
    intrinsics[..., 0, 0] = (W / 2.0) / torch.tan(fov_w / 2.0)
    intrinsics[..., 1, 1] = (H / 2.0) / torch.tan(fov_h / 2.0)
    intrinsics[..., 0, 2] = W / 2
    intrinsics[..., 1, 2] = H / 2
    intrinsics[..., 2, 2] = 1.0
    return extrinsics, intrinsics
