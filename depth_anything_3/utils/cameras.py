"""DA3 camera conventions: pose encoding (camera-to-world, unlike VGGT), extrinsic normalisation.

DA3's ``pose_enc`` ``[..., 9]`` = ``[tx, ty, tz, qx, qy, qz, qw, fov_h, fov_w]`` encodes the
**camera-to-world** transform ``[R | t]`` (OpenCV camera axes: x right, y down, z forward;
``X_world = R X_cam + t``) with the XYZW quaternion of ``R``; the FoVs (radians) belong to a
pinhole camera with the principal point at the image centre. The net's ``extrinsics`` output is
the inverse, world-to-camera ``[R^T | -R^T t]``. The encoding formulas are VGGT's
(:mod:`vggt.utils.pose_enc`), only the meaning of ``[R | t]`` differs, and the focal lengths are
computed with ``tan(fov / 2)`` clamped at 1e-6 (a ReLU'd FoV of 0 gives a huge focal length,
not infinity).

Reference: ByteDance-Seed/Depth-Anything-3 ``model/utils/transform.py``
(``pose_encoding_to_extri_intri``), ``model/da3.py`` (``_process_camera_estimation``),
``api.py`` (``_normalize_extrinsics``), ``utils/geometry.py`` (``affine_inverse``).
"""

from typing import Sequence, Tuple

import torch

from vggt.utils.geometry import closed_form_inverse_se3
from vggt.utils.rotation import quat_to_mat


def pose_encoding_to_c2w_intrinsics(pose_enc: torch.Tensor, image_size_hw: Sequence[int]
                                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """DA3 pose encoding ``[..., 9]`` -> (camera-to-world ``[..., 3, 4]``, intrinsics ``[..., 3, 3]``).

    Intrinsics in pixels of an ``(H, W)`` image: ``fx = (W/2) / max(tan(fov_w/2), 1e-6)``,
    ``fy = (H/2) / max(tan(fov_h/2), 1e-6)``, ``cx = W/2``, ``cy = H/2`` (the centre of pixel
    (0, 0) at (0, 0), as the reference). The quaternion need not be unit. Same dtype as the input.
    """
    H, W = image_size_hw
    c2w = torch.cat([quat_to_mat(pose_enc[..., 3:7]), pose_enc[..., :3, None]], dim=-1)
    K = torch.zeros(pose_enc.shape[:-1] + (3, 3), dtype=pose_enc.dtype, device=pose_enc.device)
    K[..., 0, 0] = (W / 2.0) / torch.clamp(torch.tan(pose_enc[..., 8] / 2.0), min=1e-6)
    K[..., 1, 1] = (H / 2.0) / torch.clamp(torch.tan(pose_enc[..., 7] / 2.0), min=1e-6)
    K[..., 0, 2] = W / 2
    K[..., 1, 2] = H / 2
    K[..., 2, 2] = 1.0
    return c2w, K


def invert_rigid(transform: torch.Tensor) -> torch.Tensor:
    """``[R | t]`` ``[..., 3, 4]`` or ``[..., 4, 4]`` -> ``[R^T | -R^T t]`` with the same trailing shape."""
    inv = closed_form_inverse_se3(transform)
    return inv[..., :3, :] if transform.shape[-2] == 3 else inv


def normalize_extrinsics(extrinsics: torch.Tensor) -> torch.Tensor:
    """Put input cameras in DA3's canonical frame before the camera encoder.

    ``extrinsics`` ``[B, S, 4, 4]`` world-to-camera. Returns ``[B, S, 4, 4]`` world-to-camera in
    the frame of view 0 (view 0 becomes the identity) with translations divided by the median
    camera-centre distance from view 0 (at least 0.1) over all B*S views, as the reference API does.
    """
    if tuple(extrinsics.shape[-2:]) != (4, 4) or extrinsics.ndim != 4:
        raise ValueError(f"extrinsics must be [B, S, 4, 4], got {tuple(extrinsics.shape)}")
    rel = extrinsics @ closed_form_inverse_se3(extrinsics[:, :1])
    centres = closed_form_inverse_se3(rel)[..., :3, 3]
    scale = torch.clamp(torch.median(centres.norm(dim=-1)), min=1e-1)
    rel = rel.clone()
    rel[..., :3, 3] = rel[..., :3, 3] / scale
    return rel
