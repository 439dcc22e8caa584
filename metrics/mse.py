"""Masked mean squared error between images in [0, 1].

VideoGPA (arXiv 2601.23286) scores a video by comparing each sampled frame with its reprojection
from the fused point cloud; MSE is the pixel term of that comparison.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["mse", "mse_per_image"]


def _as_tensor(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.as_tensor(np.asarray(x))


def _prepare(pred, target, mask):
    pred = _as_tensor(pred)
    target = _as_tensor(target).to(pred.device)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.dim() == 3:  # single image [C, H, W]
        pred, target = pred[None], target[None]
        if mask is not None:
            mask = _as_tensor(mask)
            mask = mask[None] if mask.dim() in (2, 3) else mask
    if pred.dim() != 4:
        raise ValueError(f"expected images [N, C, H, W] (or [C, H, W]), got {tuple(pred.shape)}")
    pred = pred.float()
    target = target.float()
    if mask is not None:
        mask = _as_tensor(mask).to(pred.device)
        if mask.dim() == 3:  # [N, H, W]
            mask = mask[:, None]
        if mask.dim() != 4 or mask.shape[1] not in (1, pred.shape[1]):
            raise ValueError(f"mask must be [N, H, W], [N, 1, H, W] or [N, C, H, W], got {tuple(mask.shape)}")
        mask = mask.to(pred.dtype).expand_as(pred)
    return pred, target, mask


def mse_per_image(pred, target, mask=None) -> torch.Tensor:
    """Mean squared error of each image of a batch, optionally over masked pixels only.

    Args:
        pred, target: float images ``[N, C, H, W]`` (or ``[C, H, W]``), values in [0, 1]
            (torch tensors or numpy arrays; any float dtype, computed in float32).
        mask: optional ``[N, H, W]``, ``[N, 1, H, W]`` or ``[N, C, H, W]`` (bool or 0/1 float):
            pixels that count. Channels of a counted pixel all count.

    Returns:
        float32 tensor ``[N]``: ``sum(mask * (pred - target)^2) / (C * sum(mask))`` per image; NaN for
        an image whose mask is empty. Range [0, 1] for inputs in [0, 1].
    """
    pred, target, mask = _prepare(pred, target, mask)
    sq = (pred - target) ** 2
    if mask is None:
        return sq.flatten(1).mean(1)
    num = (sq * mask).flatten(1).sum(1)
    den = mask.flatten(1).sum(1)
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.full_like(num, float("nan")))


def mse(pred, target, mask=None) -> torch.Tensor:
    """Mean squared error over all (or all masked) pixels and channels of a batch.

    Args:
        pred, target: float images ``[N, C, H, W]`` (or ``[C, H, W]``) in [0, 1].
        mask: optional ``[N, H, W]`` / ``[N, 1, H, W]`` / ``[N, C, H, W]`` selection of pixels.

    Returns:
        0-dim float32 tensor in [0, 1]: the mean over every selected pixel of every image (images
        with more selected pixels weigh more). NaN if the mask selects nothing.
    """
    pred, target, mask = _prepare(pred, target, mask)
    sq = (pred - target) ** 2
    if mask is None:
        return sq.mean()
    den = mask.sum()
    if den <= 0:
        return torch.tensor(float("nan"), device=pred.device)
    return (sq * mask).sum() / den
