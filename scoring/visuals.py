"""Visual outputs of the consistency scorer: reprojected frames (PNG), a side-by-side video (frame |
reprojection) and the fused point cloud as binary PLY.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["PLY_MAX_POINTS", "PLY_SEED", "write_ply", "save_visuals"]


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
    """Save the visuals of a :meth:`scoring.scorer.VideoProcessor.score_frames` result (``return_visuals=True``).

    Writes into ``out_dir``: ``reproj_000.png`` ... (reprojected frames, black holes),
    ``side_by_side.mp4`` (frame | reprojection, ``fps``), ``point_cloud.ply`` (binary PLY).

    The scorer works at ``image_size`` (518 px) whatever the video's size; the images are written at
    ``size`` x ``size`` px (default: ``result["source_size"]``, the video's own centre square, set by
    :meth:`scoring.scorer.VideoProcessor.score_video`; else the scoring size), area-averaged when smaller. The
    point cloud (one point per confident pixel of every frame: 2.7 M for 10 frames at 518 px) is
    subsampled uniformly at random to at most ``max_points`` points (200,000) with
    ``numpy.random.default_rng(seed)``; the PLY header says so in a ``comment`` line.

    Returns:
        ``{"pngs": folder, "video": mp4 path, "ply": ply path}``.
    """
    from PIL import Image

    from utils.io_utils import atomic_write_bytes
    from utils.video_writer import write_video

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
