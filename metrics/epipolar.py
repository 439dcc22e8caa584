"""Epipolar consistency of consecutive frames: Sampson distance of SIFT matches under a RANSAC F.

Independent of the geometry model that computes the reward (VGGT/DA3), so it is a held-out check
of 3-D consistency: frames of a rigid scene seen by a moving pinhole camera satisfy the epipolar
constraint ``x_2^T F x_1 = 0`` for every correspondence; deformation, flicker and warping do not.

Per consecutive frame pair (RGB uint8):

1. SIFT keypoints + descriptors on the grey image (OpenCV ``cv2.SIFT_create`` defaults; Lowe, IJCV
   2004); brute-force L2 2-nearest-neighbour matching with Lowe's ratio test 0.75.
2. Fewer than ``min_matches`` (20) matches (or RANSAC fails): the pair is skipped and counted.
3. ``F`` by RANSAC (``cv2.findFundamentalMat``, ``FM_RANSAC``, 1 px threshold, confidence 0.999,
   OpenCV's RNG seeded so results repeat).
4. Sampson distance of *every* ratio-test match (inliers and outliers: an inlier-only mean would
   be bounded by the RANSAC threshold and blind to inconsistency):
   ``d = |x_2^T F x_1| / sqrt((F x_1)_1^2 + (F x_1)_2^2 + (F^T x_2)_1^2 + (F^T x_2)_2^2)`` in pixels
   (Hartley & Zisserman, "Multiple View Geometry", 2nd ed., eq. 11.9, first-order geometric error).
5. The pair's value is the mean ``d``; the video's value is the mean over the pairs not skipped.

Source: the released VideoGPA ``metrics/epipolar.py`` (``EpipolarMetric``, SIFT variant: same
ratio test and minimum match count, Sampson distance of all matches, mean over pairs). The
released code fits F with kornia's 8-point ``find_fundamental`` on all matches (no RANSAC) and
returns -1.0 when every pair is skipped; here RANSAC (robust to mismatches) and NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["EpipolarResult", "epipolar_error", "sampson_distance", "sift_matches"]

RATIO_TEST = 0.75
MIN_MATCHES = 20
RANSAC_THRESHOLD_PX = 1.0
RANSAC_CONFIDENCE = 0.999


@dataclass(frozen=True)
class EpipolarResult:
    """Epipolar error of a video.

    Attributes:
        mean_sampson: mean over evaluated pairs of the pair's mean Sampson distance (pixels, >= 0;
            lower = more consistent); NaN when every pair was skipped.
        pairs: consecutive pairs in the video (``T - 1``).
        pairs_skipped: pairs skipped (fewer than ``min_matches`` matches or no F found).
        per_pair: the pair values (NaN for skipped pairs).
    """

    mean_sampson: float
    pairs: int
    pairs_skipped: int
    per_pair: tuple[float, ...]


def _grey(frame: np.ndarray) -> np.ndarray:
    import cv2

    f = np.asarray(frame)
    if f.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB [H, W, 3], got dtype {f.dtype}")
    if f.ndim == 2:
        return f
    if f.ndim != 3 or f.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 RGB [H, W, 3], got shape {f.shape}")
    return cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)


def sift_matches(frame1: np.ndarray, frame2: np.ndarray, ratio: float = RATIO_TEST, sift=None):
    """SIFT matches of two frames passing Lowe's ratio test.

    Args:
        frame1, frame2: uint8 RGB ``[H, W, 3]`` (or grey ``[H, W]``).
        ratio: keep a match when its distance < ``ratio`` x the second-best distance.
        sift: a ``cv2.SIFT`` to reuse (default: a new one with OpenCV defaults).

    Returns:
        ``(pts1, pts2)`` float64 ``[M, 2]`` pixel coordinates (x = column, y = row; OpenCV keypoint
        convention, the centre of pixel (0, 0) at (0, 0)).
    """
    import cv2

    sift = sift or cv2.SIFT_create()
    k1, d1 = sift.detectAndCompute(_grey(frame1), None)
    k2, d2 = sift.detectAndCompute(_grey(frame2), None)
    empty = np.zeros((0, 2))
    if d1 is None or d2 is None or len(k1) < 2 or len(k2) < 2:
        return empty, empty
    good = [m for m, n in (p for p in cv2.BFMatcher(cv2.NORM_L2).knnMatch(d1, d2, k=2) if len(p) == 2)
            if m.distance < ratio * n.distance]
    if not good:
        return empty, empty
    pts1 = np.array([k1[m.queryIdx].pt for m in good], dtype=np.float64)
    pts2 = np.array([k2[m.trainIdx].pt for m in good], dtype=np.float64)
    return pts1, pts2


def sampson_distance(F: np.ndarray, pts1: np.ndarray, pts2: np.ndarray) -> np.ndarray:
    """Sampson distance (pixels) of correspondences ``pts1 [M, 2] <-> pts2 [M, 2]`` under ``F [3, 3]``.

    ``x_2^T F x_1 = 0`` is the epipolar constraint (``F`` maps image-1 points to image-2 lines, the
    convention of ``cv2.findFundamentalMat(pts1, pts2)``). Returns float64 ``[M]``, >= 0.
    """
    x1 = np.concatenate([pts1, np.ones((len(pts1), 1))], 1)
    x2 = np.concatenate([pts2, np.ones((len(pts2), 1))], 1)
    Fx1 = x1 @ F.T
    Ftx2 = x2 @ F
    num = np.abs(np.sum(x2 * Fx1, axis=1))
    den = np.sqrt(Fx1[:, 0] ** 2 + Fx1[:, 1] ** 2 + Ftx2[:, 0] ** 2 + Ftx2[:, 1] ** 2)
    return num / np.maximum(den, 1e-12)


def epipolar_error(
    frames,
    ratio: float = RATIO_TEST,
    min_matches: int = MIN_MATCHES,
    ransac_threshold: float = RANSAC_THRESHOLD_PX,
    seed: int = 0,
) -> EpipolarResult:
    """Mean Sampson distance of SIFT matches between consecutive frames (see module docstring).

    Args:
        frames: uint8 RGB ``[T, H, W, 3]`` (numpy or a sequence of frames).
        ratio: Lowe ratio test (0.75).
        min_matches: pairs with fewer matches are skipped (20).
        ransac_threshold: RANSAC inlier threshold in pixels (1.0).
        seed: OpenCV RNG seed for RANSAC.

    Returns:
        :class:`EpipolarResult` (pixels).

    Raises:
        ValueError: frames are not uint8 RGB.
    """
    import cv2

    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got shape {frames.shape}")
    sift = cv2.SIFT_create()
    cv2.setRNGSeed(int(seed))
    per_pair = []
    for i in range(len(frames) - 1):
        p1, p2 = sift_matches(frames[i], frames[i + 1], ratio, sift)
        if len(p1) < max(int(min_matches), 8):
            per_pair.append(math.nan)
            continue
        F, _mask = cv2.findFundamentalMat(p1, p2, cv2.FM_RANSAC, ransac_threshold, RANSAC_CONFIDENCE)
        if F is None or F.shape != (3, 3) or not np.all(np.isfinite(F)):
            per_pair.append(math.nan)
            continue
        per_pair.append(float(sampson_distance(F, p1, p2).mean()))
    done = [v for v in per_pair if math.isfinite(v)]
    return EpipolarResult(
        mean_sampson=float(np.mean(done)) if done else math.nan,
        pairs=len(per_pair),
        pairs_skipped=len(per_pair) - len(done),
        per_pair=tuple(per_pair),
    )
