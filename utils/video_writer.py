"""Writing video files atomically (imageio-ffmpeg, x264): candidates, inference outputs, scorer visuals.

Frames are ``numpy.uint8`` ``[T, H, W, 3]`` RGB (the convention of ``utils.video_utils``, which reads
them back); sizes are kept exactly (no macro-block padding). The file appears complete or not at
all (``utils.io_utils.atomic_target``).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import imageio_ffmpeg
import numpy as np

from utils.io_utils import atomic_target

__all__ = ["write_video"]


def _as_uint8_frames(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim == 3:  # grayscale [T, H, W]
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 4 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"frames must have shape [T, H, W, 3], got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("frames is empty (T = 0)")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.nan_to_num(arr, nan=0.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Sequence[np.ndarray],
    fps: float = 8.0,
    crf: int = 18,
    codec: str = "libx264",
    pix_fmt: str | None = None,
) -> Path:
    """Encode ``frames`` to ``path`` atomically (temp file in the same folder + rename).

    Args:
        path: output file; its suffix picks the container (``.mp4`` typical). Parent folders are
            created. An interrupted write leaves the old file (or nothing), never a partial one.
        frames: uint8 ``[T, H, W, 3]`` RGB (float arrays in [0, 1] are converted, grayscale
            ``[T, H, W]`` is expanded). Sizes are kept exactly: no macro-block padding/resizing.
        fps: frames per second (CogVideoX writes 8 fps; 16 for CogVideoX1.5).
        crf: x264 constant rate factor (0 lossless .. 51 worst; 18 is visually lossless).
        codec: ffmpeg encoder name.
        pix_fmt: output pixel format; default ``yuv420p`` (plays everywhere) when height and width
            are even, else ``yuv444p`` (4:2:0 needs even sizes).

    Returns:
        The path written.

    Raises:
        ValueError: bad frame array shape / empty.
        RuntimeError: ffmpeg failed (the message includes ffmpeg's error).
    """
    arr = _as_uint8_frames(frames)
    t, h, w, _ = arr.shape
    if pix_fmt is None:
        pix_fmt = "yuv420p" if (h % 2 == 0 and w % 2 == 0) else "yuv444p"
    path = Path(path)
    out_params = ["-crf", str(int(crf))] if codec in ("libx264", "libx265") else []
    with atomic_target(path, suffix=".tmp" + path.suffix) as tmp:  # ffmpeg creates it: umask permissions
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (w, h),
            fps=Fraction(fps).limit_denominator(100000) if not isinstance(fps, Fraction) else fps,
            codec=codec,
            pix_fmt_in="rgb24",
            pix_fmt_out=pix_fmt,
            quality=None,
            macro_block_size=1,
            ffmpeg_log_level="error",
            output_params=out_params,
        )
        writer.send(None)
        for i in range(t):
            writer.send(arr[i])
        writer.close()
        if os.path.getsize(tmp) == 0:
            raise RuntimeError(f"ffmpeg wrote an empty file for {path}")
    return path
