"""Geometry-consistency scoring of one video: frames -> geometry -> point cloud -> reprojection -> metrics.

This is the reward of VideoGPA (Du et al., "VideoGPA: Distilling Geometry Priors for 3D-Consistent
Video Generation", arXiv 2601.23286): a geometry foundation model (VGGT, Wang et al., CVPR 2025)
reconstructs the sampled frames of a video as one 3-D point cloud with cameras; the cloud is
rendered back into every frame's camera and compared with the frame. A 3-D consistent video
reprojects onto itself; deformation, drift and flicker do not.

Pipeline (:class:`VideoProcessor`)
----------------------------------
1. ``T`` frames, uint8 ``[T, H, W, 3]`` (:func:`utils.video_utils.sample_uniform_frames`: uniform
   over the whole video, centre-cropped square, 518 px).
2. A :class:`GeometryPredictor` returns per frame: z-depth ``[T, H, W]``, depth confidence
   ``[T, H, W]``, camera-from-world extrinsics ``[T, 3, 4]`` (OpenCV axes: x right, y down,
   z forward), pixel intrinsics ``[T, 3, 3]`` and (optionally) a world point map ``[T, H, W, 3]``,
   at the frames' resolution. :class:`VGGTPredictor` runs VGGT (camera, depth and point heads);
   :class:`OraclePredictor` hands back given ground truth (its point map: the depth unprojected
   with the true cameras, unless given).
3. World points, by ``points_source`` (:data:`POINTS_SOURCES`):

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
   over all frames jointly, :func:`confidence_mask`): candidates are pixels with finite confidence
   > 1e-5 (``"depth"`` mode: also positive finite depth and finite world point); the
   ``ceil(N (1 - conf_thres / 100))`` most confident of the ``N`` candidates are kept, with ties
   at the threshold, as upstream ``get_colored_pointcloud`` (``torch.topk``). ``conf_thres = 0``
   keeps every candidate (the released setting). Non-finite points are dropped after the filter.
5. The coloured cloud (colour = the frame's own pixel) is projected into every frame's camera
   (``u = fx x / z + skew y / z + cx``, rounded to the nearest pixel with ``floor(u + 0.5)``) with a
   deterministic z-buffer: per pixel the point with the smallest camera depth wins, ties go to the
   smaller point index (point order: frame, row, column). It is computed as a ``scatter_reduce``
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

import io
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np
import torch

from metrics.consistency import consistency_score, coverage, motion_norm, motion_norm_released
from metrics.mse import mse as mse_fn
from metrics.mse import mse_per_image

logger = logging.getLogger(__name__)

__all__ = [
    "POINTS_SOURCES",
    "GeometryPrediction",
    "GeometryPredictor",
    "VGGTPredictor",
    "OraclePredictor",
    "VideoProcessor",
    "ScoringError",
    "frames_to_tensor",
    "confidence_mask",
    "build_point_cloud",
    "reproject_points",
    "write_ply",
    "save_visuals",
]

POINTS_SOURCES = ("point_head", "depth")  # where the world points come from, see the module doc

_INT64_MAX = torch.iinfo(torch.int64).max
_LOW32 = 0xFFFFFFFF


class ScoringError(RuntimeError):
    """The video could be read but not scored (no valid geometry, nothing reprojected, NaN score)."""


# ------------------------------------------------------------------------------------------------
# predictors
# ------------------------------------------------------------------------------------------------


@dataclass
class GeometryPrediction:
    """Per-frame geometry at the frames' resolution (all float32 tensors on one device).

    Attributes:
        depth: ``[T, H, W]`` z-depth along the optical axis (world units; <= 0 or non-finite = invalid).
        depth_conf: ``[T, H, W]`` confidence (larger = more reliable; VGGT's are > 1).
        extrinsic: ``[T, 3, 4]`` camera-from-world ``[R | t]``, OpenCV axes.
        intrinsic: ``[T, 3, 3]`` pixel intrinsics ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``; the
            centre of pixel (0, 0) is at (0, 0).
        world_points: optional ``[T, H, W, 3]`` point map in the extrinsics' world frame (VGGT's
            point head); None when the predictor has none (``points_source="depth"`` only).
    """

    depth: torch.Tensor
    depth_conf: torch.Tensor
    extrinsic: torch.Tensor
    intrinsic: torch.Tensor
    world_points: torch.Tensor | None = None

    _FIELDS = ("depth", "depth_conf", "extrinsic", "intrinsic", "world_points")

    def to(self, device: str | torch.device) -> "GeometryPrediction":
        """The same prediction with every tensor on ``device``."""
        return GeometryPrediction(
            **{n: (None if getattr(self, n) is None else getattr(self, n).to(device)) for n in self._FIELDS}
        )

    def validate(self, num_frames: int, height: int, width: int) -> "GeometryPrediction":
        """Check shapes against ``(T, H, W)``; cast everything to float32. Raises ValueError."""
        exp = {
            "depth": (num_frames, height, width),
            "depth_conf": (num_frames, height, width),
            "extrinsic": (num_frames, 3, 4),
            "intrinsic": (num_frames, 3, 3),
            "world_points": (num_frames, height, width, 3),
        }
        out = {}
        for name, shape in exp.items():
            x = getattr(self, name)
            if x is None and name == "world_points":
                out[name] = None
                continue
            got = tuple(x.shape)
            if got != shape:
                raise ValueError(f"geometry prediction {name} has shape {got}, expected {shape}")
            out[name] = x.float()
        return GeometryPrediction(**out)


@runtime_checkable
class GeometryPredictor(Protocol):
    """Anything that maps frames to :class:`GeometryPrediction`.

    ``predict(images)`` takes float ``[T, 3, H, W]`` RGB in [0, 1] and returns a prediction at
    ``(H, W)``. ``device`` is where the predictor wants its input.
    """

    device: torch.device

    def predict(self, images: torch.Tensor) -> GeometryPrediction: ...


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class VGGTPredictor:
    """Geometry from VGGT: camera head, depth head and (unless dropped) point head.

    Args:
        model: a :class:`vggt.VGGT` module, or a source for :func:`vggt.load_vggt`: Hub id
            (default ``"facebook/VGGT-1B"``), local folder with ``config.json`` + ``model.safetensors``,
            or a single ``.safetensors``/``.pt`` file (then give ``config``).
        device: default CUDA if available, else CPU.
        dtype: parameter dtype (default float32). On CUDA the aggregator runs under bfloat16
            autocast (float16 on GPUs older than Ampere, compute capability < 8) and the heads in
            float32, as in the VGGT reference; on CPU everything runs in float32 (``autocast=False``).
        config: VGGT config (dict or JSON path) for single-file sources.
        autocast: override the automatic choice (True: bf16/fp16 autocast on CUDA; False: none).
        drop_point_head: when the model is loaded here, delete its point head (saves time; only
            for ``points_source="depth"``, which does not use it). Default False.

    ``predict(images)``: images float ``[T, 3, H, W]`` in [0, 1], ``H, W`` multiples of 14.
    Raises ValueError otherwise.
    """

    def __init__(
        self,
        model: Any = "facebook/VGGT-1B",
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        config: Mapping | str | os.PathLike | None = None,
        autocast: bool | None = None,
        drop_point_head: bool = False,
    ):
        self.device = torch.device(device) if device is not None else _default_device()
        self.dtype = dtype or torch.float32
        if isinstance(model, torch.nn.Module):
            self.model = model.to(self.device).eval()
            self.source = type(model).__name__
        else:
            from vggt import load_vggt

            self.source = str(model)
            self.model = load_vggt(str(model), device=self.device, dtype=self.dtype, config=config).eval()
            if drop_point_head and getattr(self.model, "point_head", None) is not None:
                self.model.point_head = None
        self.model.requires_grad_(False)
        if autocast is None:
            autocast = self.device.type == "cuda"
        self.autocast_dtype: torch.dtype | None = None
        if autocast and self.device.type == "cuda":
            # as the reference: native bf16 from Ampere (sm_80) on, of *this* device; is_bf16_supported()
            # asks the current device and also says True for emulated bf16 (slow, no flash attention)
            major = torch.cuda.get_device_capability(self.device)[0]
            self.autocast_dtype = torch.bfloat16 if major >= 8 else torch.float16

    @property
    def has_point_map(self) -> bool:
        """Whether :meth:`predict` returns ``world_points`` (the model has a point head)."""
        return getattr(self.model, "point_head", None) is not None

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> GeometryPrediction:
        from vggt.utils.pose_enc import pose_encoding_to_extri_intri

        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [T, 3, H, W], got {tuple(images.shape)}")
        t, _, h, w = images.shape
        if h % 14 or w % 14:
            raise ValueError(f"VGGT needs H and W to be multiples of 14, got {h}x{w}")
        x = images.to(self.device, torch.float32)
        if self.dtype != torch.float32 and self.autocast_dtype is None:
            x = x.to(self.dtype)
        out = self.model(x, autocast_dtype=self.autocast_dtype)
        extrinsic, intrinsic = pose_encoding_to_extri_intri(out["pose_enc"].float(), (h, w))
        points = out.get("world_points")
        return GeometryPrediction(
            depth=out["depth"][0, ..., 0].float(),
            depth_conf=out["depth_conf"][0].float(),
            extrinsic=extrinsic[0].float(),
            intrinsic=intrinsic[0].float(),
            world_points=None if points is None else points[0].float(),
        ).validate(t, h, w)


class OraclePredictor:
    """Returns given geometry (ground truth, or geometry from another tool) whatever the frames.

    Args:
        depth: ``[T, H, W]`` (or ``[T, H, W, 1]``) z-depth; <= 0 or non-finite marks no surface.
        extrinsic: ``[T, 3, 4]`` or ``[T, 4, 4]`` camera-from-world, OpenCV axes.
        intrinsic: ``[T, 3, 3]`` pixel intrinsics (pixel (0, 0) centred at (0, 0)).
        depth_conf: optional ``[T, H, W]``; default all ones.
        world_points: optional ``[T, H, W, 3]`` point map (world frame of ``extrinsic``); default
            ``depth`` unprojected with the given cameras (NaN where the depth is invalid), i.e. a
            point head that agrees exactly with the camera head.
        device: where the tensors live (default CPU).

    numpy arrays or tensors. ``predict(images)`` checks that ``images`` is ``[T, 3, H, W]`` with the
    same ``T, H, W`` (ValueError otherwise).
    """

    has_point_map = True

    def __init__(
        self,
        depth,
        extrinsic,
        intrinsic,
        depth_conf=None,
        world_points=None,
        device: str | torch.device = "cpu",
    ):
        from vggt.utils.geometry import unproject_depth_map_to_point_map

        self.device = torch.device(device)

        def tensor(x) -> torch.Tensor:
            return torch.as_tensor(x if isinstance(x, torch.Tensor) else np.asarray(x))

        d = tensor(depth)
        if d.dim() == 4 and d.shape[-1] == 1:
            d = d[..., 0]
        e = tensor(extrinsic)[:, :3, :4]
        k = tensor(intrinsic)
        c = torch.ones_like(d, dtype=torch.float32) if depth_conf is None else tensor(depth_conf)
        if world_points is None:  # from float32 inputs, as build_point_cloud unprojects in "depth" mode
            d32 = d.to(torch.float32)
            ok = torch.isfinite(d32) & (d32 > 0)
            d32 = torch.where(ok, d32, torch.ones_like(d32))
            w = unproject_depth_map_to_point_map(d32, e.float(), k.float())
            w = w.masked_fill(~ok[..., None], float("nan"))
        else:
            w = tensor(world_points)
        self.prediction = GeometryPrediction(
            depth=d.to(self.device, torch.float32),
            depth_conf=c.to(self.device, torch.float32),
            extrinsic=e.to(self.device, torch.float32),
            intrinsic=k.to(self.device, torch.float32),
            world_points=w.to(self.device, torch.float32),
        )

    def predict(self, images: torch.Tensor) -> GeometryPrediction:
        t, _, h, w = images.shape
        return self.prediction.validate(t, h, w)


# ------------------------------------------------------------------------------------------------
# point cloud and reprojection
# ------------------------------------------------------------------------------------------------


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


def confidence_mask(
    depth_conf: torch.Tensor, conf_thres: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Pixels kept by the percentile confidence filter (over all frames jointly).

    Args:
        depth_conf: ``[T, H, W]`` confidences.
        conf_thres: percentile in [0, 100): of the ``N`` candidates, the ``k = max(1, ceil(N (1 -
            conf_thres / 100)))`` most confident are kept, plus any tied with the k-th (keep
            ``conf >= `` the k-th largest candidate confidence). 0 keeps every candidate. This is
            upstream VideoGPA ``utils/pointcloud_utils.py:get_colored_pointcloud`` (``torch.topk``).
        valid: optional bool ``[T, H, W]`` further restricting the candidates (e.g. valid depth).

    Returns:
        bool ``[T, H, W]``. Candidates are finite confidences > 1e-5 (and ``valid``).

    Raises:
        ValueError: ``conf_thres`` outside [0, 100).
    """
    if not 0.0 <= float(conf_thres) < 100.0:
        raise ValueError(f"conf_thres is a percentile in [0, 100), got {conf_thres}")
    cand = torch.isfinite(depth_conf) & (depth_conf > 1e-5)
    if valid is not None:
        cand &= valid
    if conf_thres <= 0:
        return cand
    vals = depth_conf[cand]
    n = vals.numel()
    if n == 0:
        return cand
    k = max(1, int(np.ceil(n * max(0.0, min(1.0, 1.0 - float(conf_thres) / 100.0)))))
    thr = torch.kthvalue(vals.float(), n - k + 1).values  # the k-th largest
    return cand & (depth_conf >= thr)


def build_point_cloud(
    images: torch.Tensor,
    prediction: GeometryPrediction,
    conf_thres: float = 0.0,
    points_source: str = "point_head",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """World points of every kept pixel with its colour.

    Args:
        images: float ``[T, 3, H, W]`` in [0, 1] (colour source; same device as ``prediction``).
        prediction: :class:`GeometryPrediction` at ``(H, W)``.
        conf_thres: percentile filter on ``depth_conf``, see :func:`confidence_mask`.
        points_source: ``"point_head"``: ``prediction.world_points``, candidates = pixels with a
            valid confidence (as released); ``"depth"``: the depth unprojected with the cameras,
            candidates also need positive finite depth. See the module docstring.

    Returns:
        ``points`` float32 ``[N, 3]`` world coordinates, ``colors`` float32 ``[N, 3]`` in [0, 1],
        ``keep`` bool ``[T, H, W]`` (which pixels became points; point order = ``keep.nonzero()``
        order: frame, row, column).

    Raises:
        ValueError: unknown ``points_source``, or ``"point_head"`` without ``world_points``.
    """
    from vggt.utils.geometry import unproject_depth_map_to_point_map

    depth = prediction.depth
    if points_source == "point_head":
        if prediction.world_points is None:
            raise ValueError(
                'points_source="point_head" needs a point map, but the predictor returned none '
                '(VGGT loaded without its point head?); use points_source="depth"'
            )
        world = prediction.world_points.to(depth.device, torch.float32)
        keep = confidence_mask(prediction.depth_conf, conf_thres)
        keep &= torch.isfinite(world).all(dim=-1)  # after the percentile: non-finite points never render
    elif points_source == "depth":
        world = unproject_depth_map_to_point_map(depth, prediction.extrinsic, prediction.intrinsic)
        world = torch.as_tensor(world, device=depth.device, dtype=torch.float32)  # [T, H, W, 3]
        valid = torch.isfinite(depth) & (depth > 0) & torch.isfinite(world).all(dim=-1)
        keep = confidence_mask(prediction.depth_conf, conf_thres, valid)
    else:
        raise ValueError(f"points_source must be one of {POINTS_SOURCES}, got {points_source!r}")
    if bool(keep.all()):  # common case (conf_thres = 0, all valid): no gather needed
        points = world.reshape(-1, 3)
        colors = images.permute(0, 2, 3, 1).reshape(-1, images.shape[1]).float()
    else:
        points = world[keep]
        colors = images.permute(0, 2, 3, 1)[keep].float()
    return points.contiguous(), colors.contiguous(), keep


def reproject_points(
    points: torch.Tensor,
    colors: torch.Tensor,
    extrinsic: torch.Tensor,
    intrinsic: torch.Tensor,
    height: int,
    width: int,
    background: float = 0.0,
    max_chunk_elems: int | None = None,
) -> dict[str, torch.Tensor]:
    """Render a coloured point cloud into ``T`` cameras with a deterministic z-buffer.

    Args:
        points: float ``[N, 3]`` world coordinates.
        colors: float ``[N, C]`` (e.g. RGB in [0, 1]).
        extrinsic: ``[T, 3, 4]`` camera-from-world (OpenCV); intrinsic: ``[T, 3, 3]`` pixels
            (last row ``[0, 0, 1]``).
        height, width: output size in pixels.
        background: value of pixels no point lands on.
        max_chunk_elems: at most this many (frame, point) projections are held at once
            (default 2**22 on CPU, 2**25 on CUDA; results do not depend on it).

    Returns dict:
        ``image`` float ``[T, C, H, W]``: colour of the winning point (``background`` elsewhere);
        ``mask`` bool ``[T, H, W]``: pixel covered; ``depth`` float32 ``[T, H, W]``: winning camera
        depth (inf where uncovered); ``index`` int64 ``[T, H, W]``: winning point index (-1 where
        uncovered).

    A point lands on pixel ``(floor(u + 0.5), floor(v + 0.5))`` of a frame where it has camera
    depth ``z > 0``, with ``(u z, v z, z) = K [R | t] X``. The nearest point wins; equal depths go
    to the smaller index. The winner is the ``amin`` of ``(float32 z bits << 32) | index`` over all
    points landing on the pixel (a ``scatter_reduce``), so it does not depend on write order.
    """
    device = points.device
    n = points.shape[0]
    t = extrinsic.shape[0]
    hw = height * width
    if n >= 2**32:
        raise ValueError("too many points for the packed z-buffer key (>= 2**32)")
    if max_chunk_elems is None:
        max_chunk_elems = 1 << (25 if device.type == "cuda" else 22)
    buf = torch.full((t * hw,), _INT64_MAX, dtype=torch.int64, device=device)
    if n > 0:
        P_T = points.to(torch.float32).T.contiguous()  # [3, N]
        # full projection matrices K [R | t], composed in float64 for accuracy
        M = (intrinsic.to(device, torch.float64) @ extrinsic[:, :3, :4].to(device, torch.float64)).to(
            torch.float32
        )
        frames_per_chunk = max(1, int(max_chunk_elems // n))
        for f0 in range(0, t, frames_per_chunk):
            f1 = min(t, f0 + frames_per_chunk)
            nf = f1 - f0
            # rows ordered (component, frame) so that u z, v z, z are contiguous [F, N] blocks
            A = M[f0:f1, :, :3].transpose(0, 1).reshape(3 * nf, 3)
            bias = M[f0:f1, :, 3].T.reshape(3 * nf, 1)
            h = torch.addmm(bias, A, P_T).view(3, nf, n)
            z = h[2]
            inv = torch.reciprocal(z)
            u = h[0].mul_(inv).add_(0.5).floor_()  # in place: large temporaries are costly on CPU
            v = h[1].mul_(inv).add_(0.5).floor_()
            # NaN/inf compare False, so non-finite projections are rejected too
            ok = z > 0
            ok &= u >= 0
            ok &= u <= width - 1
            ok &= v >= 0
            ok &= v <= height - 1
            sel = ok.view(-1).nonzero().squeeze(1)  # flat (frame, point) indices that land
            del ok, inv
            pidx = sel % n
            lin = v.view(-1)[sel].to(torch.int64) * width + u.view(-1)[sel].to(torch.int64)
            lin += (sel // n + f0) * hw
            key = z.view(-1)[sel].view(torch.int32).to(torch.int64)  # z > 0: bits monotone in z
            key <<= 32
            key |= pidx
            buf.scatter_reduce_(0, lin, key, reduce="amin", include_self=True)
            del h, z, u, v, sel, pidx, lin, key
    covered = buf != _INT64_MAX
    index = torch.where(covered, buf & _LOW32, torch.full_like(buf, -1))
    zbits = (buf >> 32).to(torch.int32)
    depth = torch.where(
        covered, zbits.view(torch.float32), torch.full(zbits.shape, float("inf"), device=device)
    )
    c = colors.shape[1] if colors.dim() == 2 else 1
    if n > 0:
        img = colors.to(torch.float32).reshape(n, c).index_select(0, index.clamp_min(0))
        img.masked_fill_(~covered[:, None], float(background))
    else:
        img = torch.full((t * hw, c), float(background), dtype=torch.float32, device=device)
    return {
        "image": img.view(t, height, width, c).permute(0, 3, 1, 2).contiguous(),
        "mask": covered.view(t, height, width),
        "depth": depth.view(t, height, width),
        "index": index.view(t, height, width),
    }


# ------------------------------------------------------------------------------------------------
# processor
# ------------------------------------------------------------------------------------------------


class VideoProcessor:
    """Score videos (or frame arrays) for 3-D consistency; see the module docstring for the pipeline.

    Args:
        predictor: a :class:`GeometryPredictor` (:class:`VGGTPredictor`, :class:`OraclePredictor`).
        lpips: an :class:`metrics.lpips.LPIPS` module (e.g. from :func:`metrics.lpips.load_lpips`)
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
        max_chunk_elems: reprojection memory bound, see :func:`reproject_points`.

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
        centre square in pixels (the size :func:`save_visuals` writes at).

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


# ------------------------------------------------------------------------------------------------
# visual outputs
# ------------------------------------------------------------------------------------------------


PLY_MAX_POINTS = 200_000  # save_visuals subsamples the fused cloud to at most this many points
PLY_SEED = 0  # ... with numpy's default_rng(PLY_SEED): the same points on every run


def write_ply(
    path: str | os.PathLike, points: np.ndarray, colors: np.ndarray, comments: tuple[str, ...] = ()
) -> Path:
    """Write a coloured point cloud as binary little-endian PLY, atomically.

    Args:
        path: output ``.ply`` file (parent folders created).
        points: float ``[N, 3]`` (written as float32 x, y, z).
        colors: ``[N, 3]`` uint8 (or float in [0, 1], converted) written as uchar red, green, blue.
        comments: header ``comment`` lines (one line each, no newlines).

    Returns:
        the path.
    """
    from utils.io_utils import atomic_write_bytes

    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    col = np.asarray(colors)
    if col.dtype != np.uint8:
        col = np.clip(col.astype(np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    col = col.reshape(-1, 3)
    if col.shape[0] != pts.shape[0]:
        raise ValueError(f"{pts.shape[0]} points but {col.shape[0]} colours")
    rec = np.empty(
        pts.shape[0],
        dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")],
    )
    rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    rec["red"], rec["green"], rec["blue"] = col[:, 0], col[:, 1], col[:, 2]
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        + "".join(f"comment {c}\n" for c in comments)
        + f"element vertex {pts.shape[0]}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "end_header\n"
    ).encode("ascii")
    atomic_write_bytes(path, header + rec.tobytes())
    return Path(path)


def save_visuals(
    result: Mapping[str, Any],
    out_dir: str | os.PathLike,
    fps: float = 2.0,
    size: int | None = None,
    max_points: int = PLY_MAX_POINTS,
    seed: int = PLY_SEED,
) -> dict[str, Path]:
    """Save the visuals of a :meth:`VideoProcessor.score_frames` result (needs ``return_visuals=True``).

    Writes into ``out_dir``: ``reproj_000.png`` ... (reprojected frames, black holes),
    ``side_by_side.mp4`` (frame | reprojection, ``fps``), ``point_cloud.ply`` (binary PLY).

    The scorer works at ``image_size`` (518 px) whatever the video's size; the images are written at
    ``size`` x ``size`` px (default: ``result["source_size"]``, the video's own centre square, set by
    :meth:`VideoProcessor.score_video`; else the scoring size), area-averaged when smaller. The
    point cloud (one point per confident pixel of every frame: 2.7 M for 10 frames at 518 px) is
    subsampled uniformly at random to at most ``max_points`` points (200,000) with
    ``numpy.random.default_rng(seed)``; the PLY header says so in a ``comment`` line.

    Returns:
        ``{"pngs": folder, "video": mp4 path, "ply": ply path}``.
    """
    from PIL import Image

    from utils.io_utils import atomic_write_bytes
    from utils.video_utils import write_video

    vis = result.get("visuals")
    if vis is None:
        raise ValueError("result has no visuals; call score_frames(..., return_visuals=True)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    side = int(size or result.get("source_size") or vis["frames"].shape[1])
    shrink = (lambda im: im) if side >= vis["frames"].shape[1] else (  # noqa: E731
        lambda im: np.asarray(Image.fromarray(im).resize((side, side), Image.BOX)))
    frames = np.stack([shrink(f) for f in vis["frames"]])
    reproj = np.stack([shrink(f) for f in vis["reprojected"]])
    for i, img in enumerate(reproj):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        atomic_write_bytes(out / f"reproj_{i:03d}.png", buf.getvalue())
    video = write_video(out / "side_by_side.mp4", np.concatenate([frames, reproj], axis=2), fps=fps)
    points, colors = vis["points"], vis["colors"]
    comments: tuple[str, ...] = ()
    if points.shape[0] > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(points.shape[0], max_points, replace=False))
        comments = (f"VideoGPA: {max_points} of {points.shape[0]} points, uniform random subsample, "
                    f"numpy default_rng({seed})",)
        points, colors = points[keep], colors[keep]
    ply = write_ply(out / "point_cloud.ply", points, colors, comments)
    return {"pngs": out, "video": video, "ply": ply}
