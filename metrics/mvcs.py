"""MVCS: multi-view depth consistency of consecutive frames (released VideoGPA ``metrics/mvcs.py``).

For each consecutive pair ``(i, j = i + 1)`` of the scored frames:

1. unproject frame i's depth: ``X_i = z_i(u, v) K_i^-1 (u, v, 1)^T`` (pixel centres at integer
   ``(u, v)``, OpenCV camera axes);
2. move it into camera j: ``X_j = R_rel X_i + t_rel`` with ``[R_rel | t_rel] = E_j E_i^-1``
   (``E`` = camera-from-world ``[R | t]``);
3. project: ``(u', v') = (K_j X_j)_{xy} / (K_j X_j)_z``; the expected depth is ``z' = (X_j)_z``;
4. sample frame j's depth bilinearly at ``(u', v')``;
5. ``err_i = mean (z_j(u', v') - z')^2`` over the pixels that are valid: ``z_i > 0``, ``z' > 0``,
   ``(u', v')`` inside ``[0, W-1] x [0, H-1]`` and all four bilinear neighbours with a positive depth.

``MVCS = exp(-mean_i err_i)`` in (0, 1], 1 = the depth maps agree exactly across views. As
released, the squared error is *not* normalised: it is in squared depth units of the geometry
model (VGGT and DA3 normalise the scene scale, so values are comparable between videos scored with
the same backbone, not across backbones). Differences from the released code: the released mask
only checks ``z' > 0`` and ``0 <= u' < W`` (it also counts invalid source depths and samples past
the last pixel with zero padding); a pair without any valid pixel is skipped (released: same), and
a video without any valid pair gives NaN (released: 0.0).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["mvcs", "depth_pair_errors"]


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup of ``img [H, W]`` at float pixel coordinates inside [0, W-1] x [0, H-1]."""
    h, w = img.shape
    u0 = np.clip(np.floor(u), 0, max(w - 2, 0)).astype(np.int64)
    v0 = np.clip(np.floor(v), 0, max(h - 2, 0)).astype(np.int64)
    u1, v1 = np.minimum(u0 + 1, w - 1), np.minimum(v0 + 1, h - 1)
    fu, fv = u - u0, v - v0
    return (img[v0, u0] * (1 - fu) * (1 - fv) + img[v0, u1] * fu * (1 - fv)
            + img[v1, u0] * (1 - fu) * fv + img[v1, u1] * fu * fv)


def depth_pair_errors(depth, extrinsic, intrinsic) -> list[float]:
    """Mean squared depth disagreement of each consecutive frame pair (step 5 of the module doc).

    Args:
        depth: ``[T, H, W]`` (or ``[T, H, W, 1]``) z-depth; <= 0 or non-finite = no depth.
        extrinsic: ``[T, 3, 4]`` or ``[T, 4, 4]`` camera-from-world, OpenCV axes.
        intrinsic: ``[T, 3, 3]`` pixel intrinsics (pixel (0, 0) centred at (0, 0)).
        (numpy arrays or tensors; computed in float64.)

    Returns:
        ``T - 1`` floats in squared depth units; NaN for a pair without a valid pixel.
    """
    d, E, K = _np(depth), _np(extrinsic), _np(intrinsic)
    if d.ndim == 4 and d.shape[-1] == 1:
        d = d[..., 0]
    if d.ndim != 3 or E.shape[0] != d.shape[0] or K.shape[0] != d.shape[0]:
        raise ValueError(f"depth [T, H, W], extrinsic [T, 3|4, 4], intrinsic [T, 3, 3] expected, got "
                         f"{d.shape}, {E.shape}, {K.shape}")
    T, H, W = d.shape
    valid = np.isfinite(d) & (d > 0)
    d = np.where(valid, d, 0.0)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    pix = np.stack([u.ravel(), v.ravel(), np.ones(H * W)])  # [3, HW]
    errs = []
    for i in range(T - 1):
        j = i + 1
        R_rel = E[j, :3, :3] @ E[i, :3, :3].T
        t_rel = E[j, :3, 3:4] - R_rel @ E[i, :3, 3:4]
        Xj = R_rel @ (np.linalg.solve(K[i, :3, :3], pix) * d[i].ravel()) + t_rel
        h = K[j, :3, :3] @ Xj
        z = Xj[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            up, vp = h[0] / h[2], h[1] / h[2]
        ok = valid[i].ravel() & (z > 0) & (up >= 0) & (up <= W - 1) & (vp >= 0) & (vp <= H - 1)
        up, vp, z = up[ok], vp[ok], z[ok]
        if up.size:
            nb = _bilinear(valid[j].astype(np.float64), up, vp) > 1 - 1e-9  # all 4 neighbours have depth
            up, vp, z = up[nb], vp[nb], z[nb]
        if not up.size:
            errs.append(math.nan)
            continue
        errs.append(float(np.mean((_bilinear(d[j], up, vp) - z) ** 2)))
    return errs


def mvcs(depth, extrinsic, intrinsic) -> float:
    """Multi-view consistency score ``exp(-mean pair error)`` (module docstring), in (0, 1], higher = better.

    Args: as :func:`depth_pair_errors`.

    Returns:
        float in (0, 1]; NaN when no pair has a valid pixel (or T < 2).
    """
    errs = [e for e in depth_pair_errors(depth, extrinsic, intrinsic) if math.isfinite(e)]
    if not errs:
        return math.nan
    return float(math.exp(-float(np.mean(errs))))
