"""Camera geometry helpers: SE(3) inverse and depth-map unprojection.

Conventions: extrinsics are camera-from-world ``[R | t]`` in OpenCV axes (x right, y down,
z forward), ``X_cam = R X_world + t``; intrinsics are pixel pinhole matrices
``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` with pixel ``(u, v)`` = (column, row) index, i.e. the
centre of pixel (0, 0) is at ``(0, 0)``.

Reference: facebookresearch/vggt ``vggt/utils/geometry.py``.
"""

from typing import Union

import numpy as np
import torch

Array = Union[np.ndarray, torch.Tensor]


def closed_form_inverse_se3(se3: Array, R: Array = None, T: Array = None) -> Array:
    """Invert rigid transforms ``[..., 3, 4]`` or ``[..., 4, 4]`` -> ``[..., 4, 4]``.

    Uses ``[R | t]^-1 = [R^T | -R^T t]`` (no general matrix inverse). ``R`` ``[..., 3, 3]`` and
    ``T`` ``[..., 3, 1]`` may be given to override the blocks read from ``se3``. Works on numpy
    arrays (returns numpy) and torch tensors (returns torch, same dtype/device).
    Raises ValueError for other trailing shapes.
    """
    if tuple(se3.shape[-2:]) not in ((4, 4), (3, 4)):
        raise ValueError(f"se3 must be [..., 4, 4] or [..., 3, 4], got {tuple(se3.shape)}")
    if R is None:
        R = se3[..., :3, :3]
    if T is None:
        T = se3[..., :3, 3:]
    if isinstance(se3, np.ndarray):
        Rt = np.swapaxes(R, -1, -2)
        out = np.broadcast_to(np.eye(4, dtype=se3.dtype), R.shape[:-2] + (4, 4)).copy()
        out[..., :3, :3] = Rt
        out[..., :3, 3:] = -(Rt @ T)
        return out
    Rt = R.transpose(-1, -2)
    out = torch.eye(4, dtype=R.dtype, device=R.device).expand(*R.shape[:-2], 4, 4).clone()
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -(Rt @ T)
    return out


def depth_to_cam_points(depth: torch.Tensor, intrinsic: torch.Tensor) -> torch.Tensor:
    """Depth ``[S, H, W]`` (z along the optical axis) + intrinsics ``[S, 3, 3]`` -> camera-frame
    points ``[S, H, W, 3]``: ``((u - cx) z / fx, (v - cy) z / fy, z)``."""
    S, H, W = depth.shape
    v, u = torch.meshgrid(torch.arange(H, dtype=depth.dtype, device=depth.device),
                          torch.arange(W, dtype=depth.dtype, device=depth.device), indexing="ij")
    fx, fy = intrinsic[:, 0, 0, None, None], intrinsic[:, 1, 1, None, None]
    cx, cy = intrinsic[:, 0, 2, None, None], intrinsic[:, 1, 2, None, None]
    return torch.stack([(u - cx) * depth / fx, (v - cy) * depth / fy, depth], dim=-1)


def unproject_depth_map_to_point_map(depth_map: Array, extrinsics_cam: Array,
                                     intrinsics_cam: Array) -> Array:
    """Lift per-frame depth maps to world points.

    Args:
        depth_map: ``[S, H, W]`` or ``[S, H, W, 1]`` z-depth (torch or numpy).
        extrinsics_cam: ``[S, 3, 4]`` (or ``[S, 4, 4]``) camera-from-world, OpenCV axes.
        intrinsics_cam: ``[S, 3, 3]`` pixel intrinsics.
    Returns world points ``[S, H, W, 3]``, ``X_world = R^T (X_cam - t)``, computed in float64 and
    returned in the depth map's float dtype and container type (numpy in -> numpy out; torch in ->
    torch out on the depth's device). Invalid (non-positive) depths are not masked.
    Raises ValueError on shape mismatch.
    """
    is_numpy = isinstance(depth_map, np.ndarray)
    depth = torch.as_tensor(depth_map)
    out_dtype = depth.dtype if depth.is_floating_point() else torch.float32
    device = depth.device
    if depth.ndim == 4 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 3:
        raise ValueError(f"depth_map must be [S, H, W] or [S, H, W, 1], got {tuple(depth_map.shape)}")
    extr = torch.as_tensor(extrinsics_cam).to(device=device, dtype=torch.float64)
    intr = torch.as_tensor(intrinsics_cam).to(device=device, dtype=torch.float64)
    S = depth.shape[0]
    if extr.shape[0] != S or intr.shape != (S, 3, 3) or tuple(extr.shape[1:]) not in ((3, 4), (4, 4)):
        raise ValueError(f"expected extrinsics [S, 3, 4] and intrinsics [S, 3, 3] with S={S}, got "
                         f"{tuple(extr.shape)} and {tuple(intr.shape)}")
    cam = depth_to_cam_points(depth.to(torch.float64), intr)  # [S, H, W, 3]
    world_from_cam = closed_form_inverse_se3(extr)
    R, t = world_from_cam[:, None, None, :3, :3], world_from_cam[:, None, None, :3, 3]
    world = (R @ cam[..., None])[..., 0] + t
    world = world.to(out_dtype)
    return world.numpy() if is_numpy else world
