"""Every evaluation metric of one video (one row of ``scores.csv``).

Per video (all frames decoded once for the temporal metrics; ``num_frames`` frames sampled by the
scorer's sampler for the geometry metrics, as the released ``replicate_scorer.py``):

* reprojection metrics, from :meth:`scoring.scorer.VideoProcessor.score_frames`
  (geometry model -> fused point cloud -> reprojection into every sampled frame): ``mse``,
  ``lpips``, ``consistency_score`` (= mse + lpips_weight x lpips), ``motion_norm``, ``coverage``
  from the scorer; ``psnr`` and ``ssim`` (:mod:`metrics.psnr_ssim`) computed here from the
  scorer's returned frames and reprojections. With ``mask_uncovered=False`` (the default here,
  as released) holes of the reprojection are black and every pixel counts in all five; with
  ``True`` the scorer's MSE uses covered pixels only and PSNR/SSIM compare the reprojection
  composited over the frame (holes take the frame's colours, as the scorer's LPIPS input);
* ``mvcs`` (:mod:`metrics.mvcs`) from the predicted depth and cameras of the sampled frames;
* ``epipolar`` (:mod:`metrics.epipolar`) on the sampled frames (as released), SIFT + RANSAC;
* ``temporal_lpips`` and ``flow_warp_error`` (:mod:`metrics.temporal`) on every decoded frame.

:func:`build_geometry_predictor` is the one place where the geometry model is chosen.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metrics.epipolar import epipolar_error
from metrics.mvcs import mvcs
from metrics.psnr_ssim import psnr, ssim
from metrics.temporal import flow_warp_error, temporal_lpips

logger = logging.getLogger(__name__)

__all__ = ["GEOMETRY_MODELS", "ScoringSettings", "build_geometry_predictor", "VideoEvaluator", "reprojection_pair"]

from scoring.geometry_models import DEFAULT_IMAGE_SIZE, GEOMETRY_MODELS  # noqa: E402  (re-exported)


@dataclass
class ScoringSettings:
    """Settings of the per-video metrics (the released ``replicate_scorer.py`` values by default).

    Attributes:
        geometry_model: backbone of the reprojection metrics and mvcs (:data:`GEOMETRY_MODELS`:
            ``"vggt"`` or ``"da3"``, the released benchmark's).
        geometry_weights: hub id, local folder or weights file of the backbone; None: its hub id.
        num_frames: frames sampled per video for the geometry metrics (10).
        image_size: square side of the sampled frames; None: 518 for VGGT, 504 for DA3.
        points_source: world points of the reprojection (``scoring.reprojection.POINTS_SOURCES``):
            ``"point_head"`` (the model's point map placed by its camera head, the released reward)
            or ``"depth"`` (depth unprojected with the predicted cameras).
        conf_thres: depth-confidence percentile filter (0 keeps every point).
        mask_uncovered: False (released): reprojection holes are black and count.
        lpips_weight: consistency_score = mse + lpips_weight * lpips (released: 1).
        device: ``"cuda"``, ``"cuda:1"``, ``"cpu"``; None: CUDA when available.
    """

    geometry_model: str = "vggt"
    geometry_weights: str | None = None
    num_frames: int = 10
    image_size: int | None = None
    points_source: str = "point_head"
    conf_thres: float = 0.0
    mask_uncovered: bool = False
    lpips_weight: float = 1.0
    device: str | None = None


def build_geometry_predictor(settings: ScoringSettings):
    """The geometry predictor of the reprojection metrics (one place to add a backbone).

    Returns:
        a ``scoring.geometry.GeometryPredictor``.

    Raises:
        ValueError: unknown ``settings.geometry_model``.
    """
    from scoring.geometry_models import build_geometry_predictor as build

    return build(settings.geometry_model, settings.geometry_weights, device=settings.device)


def reprojection_pair(visuals: dict, mask_uncovered: bool) -> tuple[np.ndarray, np.ndarray]:
    """(reprojection, frames) float64 ``[T, 3, H, W]`` in [0, 1] from ``score_frames(..., return_visuals=True)``.

    ``mask_uncovered=False``: the reprojection with black holes (released); True: composited over the
    frame at uncovered pixels.
    """
    frames = visuals["frames"].astype(np.float64) / 255.0
    rep = visuals["reprojected"].astype(np.float64) / 255.0
    if mask_uncovered:
        m = visuals["coverage_mask"][..., None]
        rep = np.where(m, rep, frames)
    return rep.transpose(0, 3, 1, 2), frames.transpose(0, 3, 1, 2)


class VideoEvaluator:
    """Computes every metric column of ``scores.csv`` for a video file.

    Args:
        settings: :class:`ScoringSettings`.
        lpips: an :class:`metrics.lpips.LPIPS` module (reprojection LPIPS and temporal LPIPS).
        predictor: a geometry predictor; default :func:`build_geometry_predictor` (tests pass an oracle).
    """

    def __init__(self, settings: ScoringSettings, lpips: torch.nn.Module, predictor=None):
        from scoring.scorer import VideoProcessor

        if settings.image_size is None:
            settings.image_size = DEFAULT_IMAGE_SIZE[settings.geometry_model]
        self.settings = settings
        self.predictor = predictor if predictor is not None else build_geometry_predictor(settings)
        self.processor = VideoProcessor(
            self.predictor, lpips=lpips, conf_thres=settings.conf_thres, num_frames=settings.num_frames,
            image_size=settings.image_size, lpips_weight=settings.lpips_weight,
            mask_uncovered=settings.mask_uncovered, points_source=settings.points_source,
        )
        self.lpips = self.processor.lpips

    def score_frames(self, sampled: np.ndarray, all_frames: np.ndarray) -> dict[str, Any]:
        """Metrics of a video given its sampled frames (geometry) and all its frames (temporal).

        Args:
            sampled: uint8 ``[N, S, S, 3]`` scorer frames (square, ``image_size``).
            all_frames: uint8 ``[T, H, W, 3]`` every frame at native size.

        Returns:
            ``{metric: float, "epipolar_pairs_skipped": int, "flow_valid_fraction": float}``.

        Raises:
            scoring.scorer.ScoringError: the reprojection failed (nothing reprojected...).
        """
        res = self.processor.score_frames(sampled, return_visuals=True)
        vis = res["visuals"]
        rep, ref = reprojection_pair(vis, self.settings.mask_uncovered)
        epi = epipolar_error(vis["frames"])
        flow = flow_warp_error(all_frames)
        return {
            "consistency_score": res["consistency_score"],
            "mse": res["mse"],
            "psnr": psnr(rep, ref),
            "ssim": ssim(rep, ref),
            "lpips": res["lpips"],
            "mvcs": mvcs(vis["depth"], vis["extrinsic"], vis["intrinsic"]),
            "epipolar": epi.mean_sampson,
            "temporal_lpips": (math.nan if self.lpips is None else
                               temporal_lpips(all_frames, self.lpips, batch_size=self.processor.lpips_batch_size)),
            "flow_warp_error": flow.error,
            "motion_norm": res["motion_norm"],
            "coverage": res["coverage"],
            "epipolar_pairs_skipped": epi.pairs_skipped,
            "flow_valid_fraction": flow.valid_fraction,
        }

    def score_video(self, path: str | os.PathLike) -> dict[str, Any]:
        """Decode ``path`` and return :meth:`score_frames`'s metrics.

        Raises:
            utils.video_utils.VideoReadError: unreadable / too short video.
            scoring.scorer.ScoringError: see :meth:`score_frames`.
        """
        from utils.video_utils import read_video_frames, sample_uniform_frames

        sampled = sample_uniform_frames(path, n_frames=self.settings.num_frames, size=self.settings.image_size)
        return self.score_frames(sampled, read_video_frames(path))
