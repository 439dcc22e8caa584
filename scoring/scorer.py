"""Geometry-consistency scoring of one video: frames -> geometry -> point cloud -> reprojection -> metrics.

This is the reward of VideoGPA (Du et al., "VideoGPA: Distilling Geometry Priors for 3D-Consistent
Video Generation", arXiv 2601.23286): a geometry foundation model (VGGT, Wang et al., CVPR 2025)
reconstructs the sampled frames of a video as one 3-D point cloud with cameras; the cloud is
rendered back into every frame's camera and compared with the frame. A 3-D consistent video
reprojects onto itself; deformation, drift and flicker do not.

Pipeline (:class:`VideoProcessor`, this module)
----------------------------------
1. ``T`` frames, uint8 ``[T, H, W, 3]`` (:func:`utils.video_utils.sample_uniform_frames`: uniform
   over the whole video, centre-cropped square, 518 px).
2. A :class:`scoring.geometry.GeometryPredictor` returns per frame: z-depth ``[T, H, W]``, depth
   confidence ``[T, H, W]``, camera-from-world extrinsics ``[T, 3, 4]`` (OpenCV axes: x right,
   y down, z forward), pixel intrinsics ``[T, 3, 3]`` and (optionally) a world point map
   ``[T, H, W, 3]``, at the frames' resolution. :class:`scoring.vggt_predictor.VGGTPredictor` runs
   VGGT (camera, depth and point heads); :class:`scoring.da3_predictor.DA3Predictor` Depth
   Anything 3; :class:`scoring.geometry.OraclePredictor` hands back given ground truth (its point
   map: the depth unprojected with the true cameras, unless given).
3. World points, by ``points_source`` (:data:`scoring.reprojection.POINTS_SOURCES`):

   * ``"point_head"`` (default; the released VideoGPA reward): the point map of VGGT's point head
     (``world_points``), as upstream ``utils/model_utils.py:run_model_gpu`` (which stores it
     under ``world_points_from_depth``) and ``utils/pointcloud_utils.py:get_colored_pointcloud``
     (``mode="depth"``: that point map, filtered by ``depth_conf``) do. The cloud comes from one
     head and is reprojected with another's cameras, so the score also measures how much the point
     head and the camera head disagree -- the signal the released preference pairs were built on.
   * ``"depth"``: the depth head unprojected with the predicted cameras
     (:func:`vggt.utils.geometry.unproject_depth_map_to_point_map`): pixel ``(u, v)`` (column,
     row; the centre of pixel (0, 0) is at (0, 0)) maps to
     ``X_cam = ((u - cx) z / fx, (v - cy) z / fy, z)`` and ``X_world = R^T (X_cam - t)``. Each
     frame's own points land exactly on its own pixels, so the score measures cross-frame
     disagreement only (occlusion, deformation, drift), on another scale than the released one.
4. Confidence filter (``conf_thres``, a percentile in [0, 100), on ``depth_conf`` in both modes,
   over all frames jointly, :func:`scoring.reprojection.confidence_mask`): candidates are pixels
   with finite confidence > 1e-5 (``"depth"`` mode: also positive finite depth and finite world point); the
   ``ceil(N (1 - conf_thres / 100))`` most confident of the ``N`` candidates are kept, with ties
   at the threshold, as upstream ``get_colored_pointcloud`` (``torch.topk``). ``conf_thres = 0``
   keeps every candidate (the released setting). Non-finite points are dropped after the filter.
5. The coloured cloud (colour = the frame's own pixel) is projected into every frame's camera
   (``u = fx x / z + skew y / z + cx``, rounded to the nearest pixel with ``floor(u + 0.5)``) with a
   deterministic z-buffer (:func:`scoring.reprojection.reproject_points`): per pixel the point
   with the smallest camera depth wins, ties go to the smaller point index (point order: frame, row, column). It is computed as a ``scatter_reduce``
   ``amin`` over a packed int64 key ``(float32 depth bits << 32) | point index`` -- a min is
   independent of the order in which parallel writes land, so repeated runs give identical
   results (no dependence on thread/warp scheduling). Vectorised over frames (in chunks that
   bound memory).
6. Metrics (:mod:`metrics`): ``consistency_score = mse + lpips_weight * lpips`` (lower = more
   consistent; ``lpips_weight`` 1.0 as released), ``motion_norm`` (camera centres) and
   ``motion_norm_released`` (raw translations, the released definition) of the cameras,
   ``coverage`` (fraction of pixels that received a point). ``mask_uncovered``:

   * False (default with ``"point_head"``, the released ``metrics/mse.py`` / ``metrics/lpips.py``):
     holes stay black and MSE and LPIPS average over every pixel;
   * True (default with ``"depth"``): MSE on covered pixels only, LPIPS between the frame and the
     reprojection composited over the frame at uncovered pixels (holes carry no signal).

All image tensors are float in [0, 1]; depth in the predictor's world units (VGGT: the first
camera's frame, normalised scale).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch

from metrics.consistency import consistency_score, coverage, motion_norm, motion_norm_released
from metrics.mse import mse as mse_fn
from metrics.mse import mse_per_image

from .geometry import GeometryPredictor
from .reprojection import POINTS_SOURCES, build_point_cloud, reproject_points

__all__ = ["VideoProcessor", "ScoringError", "frames_to_tensor"]


class ScoringError(RuntimeError):
    """The video could be read but not scored (no valid geometry, nothing reprojected, NaN score)."""


def frames_to_tensor(frames, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` (numpy or tensor) -> float32 ``[T, 3, H, W]`` in [0, 1] on ``device``.

    Float input ``[T, 3, H, W]`` in [0, 1] is passed through (moved/cast only).
    """
    x = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frames))
    if x.dtype == torch.uint8:
        if x.dim() != 4 or x.shape[-1] != 3:
            raise ValueError(f"uint8 frames must be [T, H, W, 3], got {tuple(x.shape)}")
        return x.to(device).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"float frames must be [T, 3, H, W] in [0, 1], got {tuple(x.shape)}")
    return x.to(device, torch.float32)


class VideoProcessor:
    """Score videos (or frame arrays) for 3-D consistency; see the module docstring for the pipeline.

    Args:
        predictor: a :class:`scoring.geometry.GeometryPredictor` (VGGT, DA3, oracle).
        lpips: an :class:`metrics.lpips.LPIPS` module (e.g. from :func:`metrics.lpips_weights.load_lpips`)
            or None to disable LPIPS (``lpips`` is then None and the score is the MSE).
        conf_thres: confidence percentile filter in [0, 100) (0 keeps all points).
        points_source: ``"point_head"`` (default, the released reward) or ``"depth"``; see the
            module docstring. ``"point_head"`` needs a predictor with a point map.
        num_frames: frames sampled per video by :meth:`score_video`.
        image_size: square side the frames are resized to by :meth:`score_video` (multiple of 14
            for VGGT).
        lpips_weight: weight of LPIPS in the consistency score (1.0, as released).
        mask_uncovered: True: metrics on covered pixels only (see module doc); False: holes are
            black and count, as in the released VideoGPA code. None (default): False for
            ``"point_head"``, True for ``"depth"``.
        lpips_batch_size: frame pairs per LPIPS pass (memory bound); default 16 on CUDA, 2 on CPU.
        rotation_weight: weight of the rotation term of ``motion_norm``.
        max_chunk_elems: reprojection memory bound, see :func:`scoring.reprojection.reproject_points`.

    Raises:
        ValueError: bad ``conf_thres`` or ``points_source``, or ``"point_head"`` with a predictor
            whose ``has_point_map`` is False.
    """

    def __init__(
        self,
        predictor: GeometryPredictor,
        lpips: torch.nn.Module | None = None,
        conf_thres: float = 0.0,
        points_source: str = "point_head",
        num_frames: int = 10,
        image_size: int = 518,
        lpips_weight: float = 1.0,
        mask_uncovered: bool | None = None,
        lpips_batch_size: int | None = None,
        rotation_weight: float = 0.1,
        max_chunk_elems: int | None = None,
    ):
        if not 0.0 <= float(conf_thres) < 100.0:
            raise ValueError(f"conf_thres is a percentile in [0, 100), got {conf_thres}")
        if points_source not in POINTS_SOURCES:
            raise ValueError(f"points_source must be one of {POINTS_SOURCES}, got {points_source!r}")
        if points_source == "point_head" and not getattr(predictor, "has_point_map", True):
            raise ValueError(
                'points_source="point_head" needs a predictor with a point map (VGGT with its point '
                'head: drop_point_head=False)'
            )
        self.predictor = predictor
        self.points_source = points_source
        self.device = torch.device(getattr(predictor, "device", "cpu"))
        self.lpips = lpips.to(self.device).eval() if lpips is not None else None
        self.conf_thres = float(conf_thres)
        self.num_frames = int(num_frames)
        self.image_size = int(image_size)
        self.lpips_weight = float(lpips_weight)
        self.mask_uncovered = (points_source == "depth") if mask_uncovered is None else bool(mask_uncovered)
        self.lpips_batch_size = lpips_batch_size or (16 if self.device.type == "cuda" else 2)
        self.rotation_weight = float(rotation_weight)
        self.max_chunk_elems = max_chunk_elems

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def score_video(self, path: str | os.PathLike, return_visuals: bool = False) -> dict[str, Any]:
        """Sample ``num_frames`` frames of ``path`` (square ``image_size``) and score them.

        A video with fewer decodable frames (but at least 2) is scored with all of its frames; the
        result's ``num_frames`` says how many were used. ``source_size`` is the side of the video's
        centre square in pixels (the size :func:`scoring.visuals.save_visuals` writes at).

        Returns the dict of :meth:`score_frames`, whose ``timings`` also has ``decode``.

        Raises:
            utils.video_utils.VideoReadError: unreadable video / fewer than 2 frames.
            ScoringError: see :meth:`score_frames`.
        """
        from utils.video_utils import frame_size, sample_uniform_frames

        t0 = time.perf_counter()
        frames = sample_uniform_frames(path, n_frames=self.num_frames, size=self.image_size, min_frames=2)
        decode = time.perf_counter() - t0
        res = self.score_frames(frames, return_visuals=return_visuals)
        if return_visuals:
            res["source_size"] = min(frame_size(path))
        res["timings"]["decode"] = decode
        res["timings"]["total"] += decode
        return res

    @torch.no_grad()
    def score_frames(self, frames, return_visuals: bool = False) -> dict[str, Any]:
        """Score frames for 3-D consistency.

        Args:
            frames: uint8 ``[T, H, W, 3]`` RGB (numpy or tensor), or float ``[T, 3, H, W]`` in [0, 1].
                ``T >= 2`` to be meaningful (1 frame trivially reprojects onto itself).
            return_visuals: add ``"visuals"`` (numpy arrays): ``frames`` uint8 ``[T, H, W, 3]``,
                ``reprojected`` uint8 ``[T, H, W, 3]`` (black holes), ``coverage_mask`` bool ``[T, H, W]``,
                ``points`` float32 ``[N, 3]``, ``colors`` uint8 ``[N, 3]``, ``depth``, ``depth_conf``
                ``[T, H, W]``, ``extrinsic`` ``[T, 3, 4]``, ``intrinsic`` ``[T, 3, 3]``.

        Returns dict:
            ``consistency_score`` (float, lower = more consistent), ``mse`` (float in [0, 1]),
            ``lpips`` (float or None), ``motion_norm`` and ``motion_norm_released`` (floats, see
            :mod:`metrics.consistency`), ``coverage`` (float in [0, 1]),
            ``num_points`` (int), ``num_frames``, ``height``, ``width``, ``mse_per_frame`` and
            ``lpips_per_frame`` (lists), ``timings`` (seconds: ``predict``, ``reproject``,
            ``metrics``, ``total``).

        Raises:
            ScoringError: no valid point survives, nothing reprojects, or a metric is not finite.
            ValueError: bad frame shapes (or a predictor's shape checks).
        """
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        images = frames_to_tensor(frames, self.device)
        T, _, H, W = images.shape

        t0 = time.perf_counter()
        pred = self.predictor.predict(images).to(self.device).validate(T, H, W)
        self._sync()
        timings["predict"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        points, colors, _keep = build_point_cloud(images, pred, self.conf_thres, self.points_source)
        if points.shape[0] == 0:
            raise ScoringError("no valid 3-D point (all depths/confidences invalid or filtered)")
        rep = reproject_points(
            points, colors, pred.extrinsic, pred.intrinsic, H, W, 0.0, self.max_chunk_elems
        )
        self._sync()
        timings["reproject"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        mask = rep["mask"]
        cov = coverage(mask)
        if cov == 0.0:
            raise ScoringError("no point reprojected into any frame (coverage 0)")
        if self.mask_uncovered:
            m = mask[:, None].to(images.dtype)
            rep_img = rep["image"] * m + images * (1 - m)  # holes take the frame's own colours
            mse_mask = mask
        else:
            rep_img = rep["image"]
            mse_mask = None
        mse_val = float(mse_fn(rep_img, images, mse_mask))
        mse_frames = mse_per_image(rep_img, images, mse_mask).tolist()
        lp_val = None
        lp_frames = None
        if self.lpips is not None:
            lp = self.lpips(rep_img, images, normalize=True, batch_size=self.lpips_batch_size)
            lp_frames = lp.tolist()
            lp_val = float(lp.mean())
        score = consistency_score(mse_val, lp_val, self.lpips_weight)
        mot = motion_norm(pred.extrinsic, rotation_weight=self.rotation_weight)
        mot_released = motion_norm_released(pred.extrinsic)
        self._sync()
        timings["metrics"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
        if not np.isfinite(score):
            raise ScoringError(f"consistency score is not finite (mse={mse_val}, lpips={lp_val})")

        result: dict[str, Any] = {
            "consistency_score": score,
            "mse": mse_val,
            "lpips": lp_val,
            "motion_norm": mot,
            "motion_norm_released": mot_released,
            "coverage": cov,
            "num_points": int(points.shape[0]),
            "num_frames": int(T),
            "height": int(H),
            "width": int(W),
            "mse_per_frame": mse_frames,
            "lpips_per_frame": lp_frames,
            "timings": timings,
        }
        if return_visuals:
            to_u8 = lambda x: (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()  # noqa: E731
            result["visuals"] = {
                "frames": to_u8(images.permute(0, 2, 3, 1)),
                "reprojected": to_u8(rep["image"].permute(0, 2, 3, 1)),
                "coverage_mask": mask.cpu().numpy(),
                "points": points.cpu().numpy().astype(np.float32),
                "colors": to_u8(colors),
                "depth": pred.depth.cpu().numpy(),
                "depth_conf": pred.depth_conf.cpu().numpy(),
                "extrinsic": pred.extrinsic.cpu().numpy(),
                "intrinsic": pred.intrinsic.cpu().numpy(),
            }
        return result
