"""Point cloud and reprojection of the consistency scorer: confidence filter, world points, z-buffer.

* :func:`confidence_mask`: the percentile confidence filter over all frames jointly (upstream
  VideoGPA ``utils/pointcloud_utils.py:get_colored_pointcloud``, ``torch.topk``).
* :func:`build_point_cloud`: the coloured world points of every kept pixel, from the point map
  (``points_source="point_head"``, the released reward) or the depth unprojected with the cameras
  (``"depth"``); see :mod:`scoring.scorer` for the two modes.
* :func:`reproject_points`: the deterministic z-buffer renderer. Each point is projected into every
  frame's camera (``u = fx x / z + skew y / z + cx``, rounded with ``floor(u + 0.5)``); per pixel the
  point with the smallest camera depth wins, ties go to the smaller point index. It is a
  ``scatter_reduce`` ``amin`` over a packed int64 key ``(float32 depth bits << 32) | point index``:
  a min does not depend on the order in which parallel writes land, so repeated runs give identical
  results. Vectorised over frames, in chunks that bound memory.

Coordinates: world points in the extrinsics' world frame; extrinsics camera-from-world ``[R | t]``
(OpenCV axes); intrinsics in pixels with the centre of pixel (0, 0) at (0, 0).
"""

from __future__ import annotations

import numpy as np
import torch

from vggt.utils.geometry import unproject_depth_map_to_point_map

from .geometry import GeometryPrediction

__all__ = ["POINTS_SOURCES", "confidence_mask", "build_point_cloud", "reproject_points"]

POINTS_SOURCES = ("point_head", "depth")  # where the world points come from, see scoring.scorer

_INT64_MAX = torch.iinfo(torch.int64).max
_LOW32 = 0xFFFFFFFF


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
