"""Temporal stability metrics of a video (the paper's temporal metrics, VideoGPA arXiv 2601.23286).

* :func:`temporal_lpips` -- mean LPIPS distance between consecutive frames: large for flicker and
  sudden appearance changes, small for a smoothly moving camera.
* :func:`flow_warp_error` -- mean photometric error after warping frame ``i+1`` onto frame ``i``
  with dense optical flow (OpenCV DIS, Kroeger et al., "Fast Optical Flow using Dense Inverse
  Search", ECCV 2016), occluded pixels excluded by a forward-backward consistency check (Sundaram
  et al., "Dense point trajectories by GPU-accelerated large displacement optical flow", ECCV 2010):
  pixels that flow does not explain (flicker, texture that changes in place) raise it.

Both operate on every frame of the decoded video (not the scorer's sampled frames), RGB uint8
``[T, H, W, 3]`` or float ``[T, 3, H, W]`` in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["temporal_lpips", "flow_warp_error", "FlowWarpResult", "dis_flow", "warp_with_flow"]

# forward-backward check of Sundaram et al. 2010: occluded where
# |w_f + w_b(x + w_f)|^2 > FB_ALPHA (|w_f|^2 + |w_b(x + w_f)|^2) + FB_BETA   (pixels^2)
FB_ALPHA = 0.01
FB_BETA = 0.5


def _uint8_thwc(frames) -> np.ndarray:
    x = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if x.ndim != 4:
        raise ValueError(f"frames must be [T, H, W, 3] uint8 or [T, 3, H, W] float, got shape {x.shape}")
    if x.dtype != np.uint8:
        if x.shape[1] == 3 and x.shape[-1] != 3:
            x = x.transpose(0, 2, 3, 1)
        x = np.clip(np.asarray(x, np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if x.shape[-1] != 3:
        raise ValueError(f"frames must be RGB, got shape {x.shape}")
    return np.ascontiguousarray(x)


@torch.no_grad()
def temporal_lpips(frames, lpips: torch.nn.Module, batch_size: int | None = None) -> float:
    """Mean LPIPS between consecutive frames, ``mean_i LPIPS(f_i, f_{i+1})``.

    Args:
        frames: uint8 ``[T, H, W, 3]`` RGB or float ``[T, 3, H, W]`` in [0, 1]; ``T >= 2``, ``H, W >= 16``.
        lpips: an :class:`metrics.lpips.LPIPS` (VGG16, v0.1 heads); it decides the device.
        batch_size: frame pairs per LPIPS pass (memory bound; None: all at once).

    Returns:
        float >= 0 (0 for a still video; about 0.05-0.3 for natural videos with the published weights).

    Raises:
        ValueError: fewer than 2 frames or bad shapes.
    """
    x = torch.from_numpy(_uint8_thwc(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[0] < 2:
        raise ValueError("temporal_lpips needs at least 2 frames")
    dev = next(lpips.parameters()).device
    x = x.to(dev)
    d = lpips(x[:-1], x[1:], normalize=True, batch_size=batch_size)
    return float(d.double().mean())


def dis_flow(frame_from: np.ndarray, frame_to: np.ndarray, preset: int | None = None) -> np.ndarray:
    """Dense optical flow ``frame_from -> frame_to`` with OpenCV DIS on grey images.

    Returns:
        float32 ``[H, W, 2]``: ``(dx, dy)`` in pixels such that pixel ``(x, y)`` of ``frame_from``
        is seen at ``(x + dx, y + dy)`` in ``frame_to``.
    """
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM if preset is None else preset)
    g0 = cv2.cvtColor(frame_from, cv2.COLOR_RGB2GRAY)
    g1 = cv2.cvtColor(frame_to, cv2.COLOR_RGB2GRAY)
    return dis.calc(g0, g1, None)


def warp_with_flow(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: ``out(x) = image(x + flow(x))`` (bilinear, border replicated). Same dtype/shape as ``image``."""
    import cv2

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class FlowWarpResult:
    """Flow warping error of a video.

    Attributes:
        error: mean over pairs of the mean absolute RGB difference between frame ``i`` and frame
            ``i+1`` warped onto it, on non-occluded in-frame pixels; intensities in [0, 1], so the
            error is in [0, 1] (lower = more temporally coherent). NaN when no pair has a valid pixel.
        valid_fraction: mean fraction of pixels that passed the occlusion / in-frame checks.
        per_pair: the pair errors.
    """

    error: float
    valid_fraction: float
    per_pair: tuple[float, ...]


def flow_warp_error(frames, fb_alpha: float = FB_ALPHA, fb_beta: float = FB_BETA) -> FlowWarpResult:
    """Mean photometric error after warping frame ``i+1`` to frame ``i`` with DIS flow (module docstring).

    Per pair: forward flow ``w_f`` (i -> i+1) and backward flow ``w_b`` (i+1 -> i); frame i+1 is
    sampled at ``x + w_f(x)``; a pixel counts when ``x + w_f(x)`` lies inside the frame and passes
    the forward-backward check ``|w_f + w_b(x + w_f)|^2 <= fb_alpha (|w_f|^2 + |w_b(x + w_f)|^2) + fb_beta``.

    Args:
        frames: uint8 ``[T, H, W, 3]`` or float ``[T, 3, H, W]`` in [0, 1], ``T >= 2``.
        fb_alpha, fb_beta: occlusion check constants (0.01, 0.5 px^2; Sundaram et al. 2010).

    Returns:
        :class:`FlowWarpResult`; ``error`` in [0, 1] intensity units.
    """
    x = _uint8_thwc(frames)
    if x.shape[0] < 2:
        raise ValueError("flow_warp_error needs at least 2 frames")
    h, w = x.shape[1:3]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    errs, fracs = [], []
    for i in range(x.shape[0] - 1):
        f0, f1 = x[i], x[i + 1]
        wf = dis_flow(f0, f1)
        wb = dis_flow(f1, f0)
        wb_at = warp_with_flow(wb, wf)  # w_b(x + w_f(x))
        tx, ty = gx + wf[..., 0], gy + wf[..., 1]
        inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
        lhs = np.sum((wf + wb_at) ** 2, axis=-1)
        rhs = fb_alpha * (np.sum(wf**2, axis=-1) + np.sum(wb_at**2, axis=-1)) + fb_beta
        ok = inside & (lhs <= rhs)
        fracs.append(float(ok.mean()))
        if not ok.any():
            errs.append(math.nan)
            continue
        warped = warp_with_flow(f1.astype(np.float32), wf)
        diff = np.abs(warped - f0.astype(np.float32)).mean(axis=-1) / 255.0
        errs.append(float(diff[ok].mean()))
    done = [e for e in errs if math.isfinite(e)]
    return FlowWarpResult(
        error=float(np.mean(done)) if done else math.nan,
        valid_fraction=float(np.mean(fracs)),
        per_pair=tuple(errs),
    )
