"""Scalar summaries of a scored video: consistency score, camera motion, reprojection coverage.

VideoGPA (arXiv 2601.23286) ranks candidate videos of a prompt by a reprojection consistency
score (lower = more 3-D consistent) and records the amount of camera motion alongside, because a
static camera trivially reprojects well (the preference-pair builder can require motion).

Two motion definitions are recorded: :func:`motion_norm` (camera centres, ours) and
:func:`motion_norm_released` (raw extrinsic translations, as the released VideoGPA code,
``metrics/consistency_score.py:compute_motion_score_vectorized``); the pair filter uses the one
named by ``MOTION_METRIC`` in the training scripts.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

__all__ = [
    "consistency_score",
    "motion_norm",
    "motion_norm_released",
    "camera_centers",
    "relative_rotation_angles",
    "coverage",
]


def consistency_score(mse_value: float, lpips_value: float | None = None, lpips_weight: float = 1.0) -> float:
    """``mse + lpips_weight * lpips`` (lower = more 3-D consistent).

    Args:
        mse_value: reprojection MSE on [0, 1] images (see :func:`metrics.mse.mse`).
        lpips_value: LPIPS distance (see :class:`metrics.lpips.LPIPS`), or None when LPIPS is
            disabled: the score is then the MSE alone.
        lpips_weight: weight of the LPIPS term; 1.0 as in the released VideoGPA scorer
            (``metrics/consistency_score.py:Consistency_Score.compute``: ``mse + lpips``).

    Returns:
        float score >= 0 (NaN if an input is NaN).
    """
    s = float(mse_value)
    if lpips_value is not None:
        s += float(lpips_weight) * float(lpips_value)
    return s


def _as_f64(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64)
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def camera_centers(extrinsic) -> torch.Tensor:
    """Camera centres in world coordinates, ``C = -R^T t``, for camera-from-world ``[R | t]``.

    Args:
        extrinsic: ``[T, 3, 4]`` or ``[T, 4, 4]`` camera-from-world matrices (OpenCV axes),
            torch or numpy.

    Returns:
        float64 tensor ``[T, 3]`` (world units of the extrinsics).
    """
    E = _as_f64(extrinsic)
    R, t = E[:, :3, :3], E[:, :3, 3]
    return -(R.transpose(1, 2) @ t[..., None])[..., 0]


def relative_rotation_angles(extrinsic) -> torch.Tensor:
    """Rotation angle (radians, in [0, pi]) of ``R[i+1] R[i]^T`` for consecutive cameras.

    Computed as ``atan2(|axis|, (trace - 1) / 2)`` with ``axis = vee(R - R^T) / 2``, which is
    accurate near 0 and pi (unlike ``acos``).

    Returns:
        float64 tensor ``[T - 1]``.
    """
    E = _as_f64(extrinsic)
    R = E[:, :3, :3]
    dR = R[1:] @ R[:-1].transpose(1, 2)
    cos = (dR.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    axis = (
        torch.stack([dR[:, 2, 1] - dR[:, 1, 2], dR[:, 0, 2] - dR[:, 2, 0], dR[:, 1, 0] - dR[:, 0, 1]], dim=-1)
        / 2.0
    )
    return torch.atan2(axis.norm(dim=-1), cos)


def motion_norm(extrinsic, rotation_weight: float = 0.1, use_camera_centers: bool = True) -> float:
    """Amount of camera motion: ``mean ||c[i+1] - c[i]|| + rotation_weight * mean angle(R[i+1] R[i]^T)``.

    Args:
        extrinsic: ``[T, 3, 4]`` / ``[T, 4, 4]`` camera-from-world matrices (OpenCV), torch or numpy.
        rotation_weight: weight of the mean rotation angle (radians); 0.1 as in VideoGPA.
        use_camera_centers: ``c`` = camera centres ``-R^T t`` (default: the physical camera
            displacement, independent of the rotation). False uses the raw extrinsic translation
            ``t`` as the released VideoGPA code does (``t`` changes under pure rotation about a
            point away from the origin, so it mixes rotation into the translation term).

    Returns:
        float >= 0 in world units (translation) + radians (rotation). VGGT's world frame is the
        first camera and its scale is normalised, so values are comparable across videos scored
        with VGGT. 0.0 for fewer than 2 cameras. A NaN/inf result becomes 0.0 with a warning.
    """
    E = _as_f64(extrinsic)
    if E.dim() != 3 or tuple(E.shape[1:]) not in ((3, 4), (4, 4)):
        raise ValueError(f"extrinsic must be [T, 3, 4] or [T, 4, 4], got {tuple(E.shape)}")
    if E.shape[0] < 2:
        return 0.0
    pos = camera_centers(E) if use_camera_centers else E[:, :3, 3]
    trans = (pos[1:] - pos[:-1]).norm(dim=-1).mean()
    rot = relative_rotation_angles(E).mean()
    val = float(trans + rotation_weight * rot)
    if not math.isfinite(val):
        warnings.warn(
            "motion_norm is not finite (non-finite camera parameters); recording 0.0", RuntimeWarning
        )
        return 0.0
    return val


def coverage(mask) -> float:
    """Fraction of pixels that received at least one reprojected point.

    Args:
        mask: bool (or 0/1) array/tensor ``[T, H, W]`` (any shape): True where covered.

    Returns:
        float in [0, 1] (0.0 for an empty mask array).
    """
    m = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
    if m.numel() == 0:
        return 0.0
    return float(m.to(torch.float64).mean())


def motion_norm_released(extrinsic) -> float:
    """Camera motion as the released VideoGPA scorer defines it (its static-video filter).

    ``mean ||t[i+1] - t[i]|| + 0.1 * mean angle(R[i+1] R[i]^T)`` on the raw translations ``t`` of
    camera-from-world ``[R | t]`` (not the camera centres): upstream
    ``metrics/consistency_score.py:compute_motion_score_vectorized`` (VGGT-era scripts). ``t``
    changes under a pure rotation about a point away from the world origin, so this value mixes
    rotation into the translation term; :func:`motion_norm` measures the camera displacement.
    Angles are computed with ``atan2`` in float64 here (upstream: ``acos`` of the clamped trace in
    float32; equal up to rounding).

    Args:
        extrinsic: ``[T, 3, 4]`` / ``[T, 4, 4]`` camera-from-world matrices (OpenCV), torch or numpy.

    Returns:
        float >= 0 (world units + 0.1 x radians); 0.0 for fewer than 2 cameras or a non-finite value.
    """
    return motion_norm(extrinsic, rotation_weight=0.1, use_camera_centers=False)
