"""PSNR and SSIM between a video's frames and their reprojections (reprojection quality metrics).

Definitions follow the released VideoGPA scorer (``metrics/mse.py`` of Hongyang-Du/VideoGPA, which
calls ``piq.ssim``), written here in plain torch:

* **PSNR** (dB) = ``10 log10(data_range^2 / MSE)`` with *one* MSE pooled over every pixel, channel
  and frame of the video (not a per-frame PSNR averaged). The released code returns 100 dB for a
  zero MSE; here the MSE is floored at ``1e-10`` (data range 1), which gives the same 100 dB cap.
* **SSIM** (Wang et al., "Image quality assessment: from error visibility to structural
  similarity", IEEE TIP 2004) with piq's conventions: 11 x 11 Gaussian window, sigma 1.5,
  ``K1 = 0.01``, ``K2 = 0.03``, ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2`` with ``L`` = data range 1;
  valid convolution (no padding); per channel; images are first average-pooled by
  ``f = round(min(H, W) / 256)`` when that is > 1, i.e. ``min(H, W) >= 384`` (piq's
  ``downsample=True``; a 518 x 518 scorer frame is pooled 2 x 2). The SSIM map is averaged over space, then channels -> one value per
  frame -> mean over frames.

In the released scorer both are computed on the full frames with the reprojection's holes black
(uncovered pixels count), like its MSE; :mod:`evaluation.scoring` reproduces that by default.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "ssim_per_image", "gaussian_window", "PSNR_MSE_FLOOR"]

PSNR_MSE_FLOOR = 1e-10  # -> at most 100 dB for data range 1, the released cap


def _images(x) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() == 3:
        t = t[None]
    if t.dim() != 4:
        raise ValueError(f"expected images [N, C, H, W] (or [C, H, W]), got {tuple(t.shape)}")
    return t.to(torch.float64)


def psnr(pred, target, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio of a whole video, one MSE pooled over all frames.

    Args:
        pred, target: float images ``[T, C, H, W]`` (or ``[C, H, W]``), values in ``[0, data_range]``
            (torch or numpy; computed in float64).
        data_range: peak value (1.0 for [0, 1] images).

    Returns:
        PSNR in dB: ``10 log10(data_range^2 / max(MSE, 1e-10 data_range^2))``; 100 dB for identical
        inputs, about 20-30 dB for reprojections of real videos.

    Raises:
        ValueError: shapes differ or are not ``[T, C, H, W]``.
    """
    p, t = _images(pred), _images(target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    mse = float(((p - t) / float(data_range)).pow(2).mean())
    return 10.0 * math.log10(1.0 / max(mse, PSNR_MSE_FLOOR))


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64) -> torch.Tensor:
    """Normalised 2-D Gaussian ``[size, size]`` centred on the middle tap (sum 1)."""
    c = torch.arange(size, dtype=dtype) - (size - 1) / 2.0
    g = torch.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2.0 * sigma**2))
    return g / g.sum()


def ssim_per_image(
    pred,
    target,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    downsample: bool = True,
) -> torch.Tensor:
    """SSIM of each image of a batch (see module docstring for the exact recipe).

    Args:
        pred, target: float images ``[N, C, H, W]`` in ``[0, data_range]``; after the optional
            downsampling ``H, W >= window_size``.
        data_range: peak value (1.0).
        window_size, sigma: Gaussian window (11, 1.5).
        k1, k2: stabilisers (0.01, 0.03).
        downsample: average-pool by ``round(min(H, W) / 256)`` first when that is > 1 (as piq).

    Returns:
        float64 tensor ``[N]``, values in [-1, 1] (1 for identical images).

    Raises:
        ValueError: shapes differ, or the images are smaller than the window.
    """
    x, y = _images(pred) / float(data_range), _images(target) / float(data_range)
    if x.shape != y.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    f = max(1, round(min(x.shape[-2:]) / 256))
    if downsample and f > 1:
        x, y = F.avg_pool2d(x, kernel_size=f), F.avg_pool2d(y, kernel_size=f)
    if min(x.shape[-2:]) < window_size:
        raise ValueError(f"images {tuple(x.shape[-2:])} are smaller than the SSIM window {window_size}")
    n, c, h, w = x.shape
    # the Gaussian window is separable: filter rows then columns (exact, 2 x 11 taps instead of 121)
    c_ = torch.arange(window_size, dtype=x.dtype) - (window_size - 1) / 2.0
    g = torch.exp(-(c_**2) / (2.0 * sigma**2))
    g = g / g.sum()
    stack = torch.stack([x, y, x * x, y * y, x * y]).reshape(5 * n * c, 1, h, w)
    filt = F.conv2d(F.conv2d(stack, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))  # valid convolution
    mu_x, mu_y, exx, eyy, exy = filt.reshape(5, n, c, *filt.shape[-2:])
    sxx = exx - mu_x**2
    syy = eyy - mu_y**2
    sxy = exy - mu_x * mu_y
    c1, c2 = k1**2, k2**2  # data range normalised to 1 above
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    s = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs
    return s.mean(dim=(-1, -2)).mean(dim=1)


def ssim(pred, target, **kwargs) -> float:
    """Mean SSIM over the frames of a video (:func:`ssim_per_image` averaged); in [-1, 1], 1 = identical."""
    return float(ssim_per_image(pred, target, **kwargs).mean())
