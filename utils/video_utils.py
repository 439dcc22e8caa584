"""Reading video files: info, frame counts and (sampled, resized) frames (imageio-ffmpeg; no decord, no OpenCV).

Every stage of the VideoGPA pipeline touches video files: candidate generation writes them, the
geometry-consistency scorer samples a few frames per video (VideoGPA, arXiv 2601.23286, Sec. 3:
frames -> VGGT -> point cloud -> reprojection), and the latent encoder of the DPO trainer loads
clips at the model's resolution. This module is the single place that reads them; writing is
``utils.video_writer.write_video``.

Conventions
-----------
* Frames are ``numpy.uint8`` arrays in RGB order, shape ``[T, H, W, 3]`` (time, rows, columns,
  channels), values 0..255.
* Frame ``i`` is the ``i``-th frame the decoder outputs (presentation order, no frame-rate
  conversion: ffmpeg runs with ``-fps_mode passthrough`` so duplicated/dropped timestamps of
  variable-frame-rate files are not papered over).
* Frame sampling and resizing are ``utils.frames`` (uniform indices, first and last included;
  centre crop to the target aspect ratio, then PIL bicubic).

Errors
------
Every reading function raises :class:`VideoReadError` (a ``ValueError``) whose message names the
file for: a missing path, a 0-byte file, a file ffmpeg cannot open (not a video, truncated mp4
whose index is missing), decode errors (truncated stream; unless ``allow_decode_errors=True``), a
video with no frames, and a video with fewer decodable frames than requested.

Reading is done in two cheap passes: ``ffmpeg -f null`` counts the decodable frames (and reports
decode errors), then the frames are streamed through a pipe and only the requested ones are kept,
so memory stays at ``n_frames`` frames even for long videos.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import imageio_ffmpeg
import numpy as np

from utils.frames import center_crop_resize, sample_frame_indices

__all__ = [
    "VideoReadError",
    "VideoInfo",
    "get_video_info",
    "count_frames",
    "frame_size",
    "read_video_frames",
    "load_frames",
    "sample_uniform_frames",
]


class VideoReadError(ValueError):
    """A video file is missing, empty, unreadable, corrupt, or has too few decodable frames.

    The message always names the file. ``path`` holds it as a string.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read video {self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """Basic facts about a video file.

    Attributes:
        path: the file.
        num_frames: number of decodable frames (exact, counted by decoding).
        width, height: frame size in pixels as decoded.
        fps: frames per second from the container (0.0 when unknown).
        duration: seconds from the container (0.0 when unknown).
        codec: codec name hint from ffmpeg, e.g. ``"h264"``.
    """

    path: str
    num_frames: int
    width: int
    height: int
    fps: float
    duration: float
    codec: str


# --------------------------------------------------------------------------------------------
# low level: ffmpeg probing and streaming
# --------------------------------------------------------------------------------------------


def _ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def _check_file(path: str | os.PathLike) -> str:
    p = Path(path)
    if not p.exists():
        raise VideoReadError(path, "file not found")
    if not p.is_file():
        raise VideoReadError(path, "not a regular file")
    if p.stat().st_size == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")
    return str(p)


def _first_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # Prefer the most specific line (the first one), drop ffmpeg's "[tag @ 0x...]" prefixes.
    for ln in lines:
        return re.sub(r"\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", ln)
    return "unknown ffmpeg error"


def _probe_decode(path: str, allow_decode_errors: bool) -> int:
    """Decode the first video stream to the null muxer; return the number of decoded frames."""
    cmd = [
        _ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error",
        "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough",
        "-f", "null", "-progress", "pipe:1", "-nostats", "-",
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        raise VideoReadError(path, "ffmpeg timed out while decoding") from e
    stdout = proc.stdout.decode("utf-8", "replace")
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        low = stderr.lower()
        if "matches no streams" in low or "does not contain any stream" in low:
            raise VideoReadError(path, "no video stream")
        raise VideoReadError(
            path, f"ffmpeg cannot open or decode it (not a video, or truncated): {_first_error_line(stderr)}"
        )
    counts = re.findall(r"^frame=(\d+)\s*$", stdout, flags=re.M)
    n = int(counts[-1]) if counts else 0
    if stderr.strip() and not allow_decode_errors:
        raise VideoReadError(
            path,
            f"decode errors after {n} frames (truncated or corrupt stream; pass "
            f"allow_decode_errors=True to use the decodable part): {_first_error_line(stderr)}",
        )
    return n


def _iter_frames(path: str) -> tuple[dict, Iterator[np.ndarray]]:
    """Open ``path`` with imageio-ffmpeg; return (meta, iterator over uint8 [H, W, 3] frames)."""
    # -map 0:v:0: the stream _probe_decode counts (ffmpeg's default pick is the largest video stream)
    gen = imageio_ffmpeg.read_frames(
        path, pix_fmt="rgb24", output_params=["-map", "0:v:0", "-fps_mode", "passthrough"]
    )
    try:
        meta = next(gen)
    except StopIteration as e:  # pragma: no cover - imageio-ffmpeg always yields meta first
        raise VideoReadError(path, "ffmpeg produced no metadata") from e
    except (OSError, RuntimeError) as e:
        gen.close()
        raise VideoReadError(path, f"ffmpeg cannot open it: {_first_error_line(str(e))}") from e
    w, h = meta["size"]

    def frames() -> Iterator[np.ndarray]:
        try:
            for buf in gen:
                yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
        except RuntimeError as e:
            raise VideoReadError(path, f"stream ended inside a frame: {e}") from e
        finally:
            gen.close()

    return meta, frames()


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def count_frames(path: str | os.PathLike, allow_decode_errors: bool = False) -> int:
    """Number of decodable frames of the first video stream of ``path`` (exact; decodes it all).

    Raises:
        VideoReadError: missing/empty/unreadable file, no video stream, or decode errors (unless
            ``allow_decode_errors``).
    """
    p = _check_file(path)
    return _probe_decode(p, allow_decode_errors)


def get_video_info(path: str | os.PathLike, allow_decode_errors: bool = False) -> VideoInfo:
    """Return :class:`VideoInfo` (exact frame count, size, fps, duration, codec) for ``path``.

    Raises:
        VideoReadError: as :func:`count_frames`.
    """
    p = _check_file(path)
    n = _probe_decode(p, allow_decode_errors)
    meta, it = _iter_frames(p)
    it.close()
    w, h = meta["size"]
    return VideoInfo(
        path=p,
        num_frames=n,
        width=int(w),
        height=int(h),
        fps=float(meta.get("fps") or 0.0),
        duration=float(meta.get("duration") or 0.0),
        codec=str(meta.get("codec", "")),
    )


def frame_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` in pixels of the first video stream, from its header (no decoding).

    Raises:
        VideoReadError: missing, empty or non-video file.
    """
    p = _check_file(path)
    meta, it = _iter_frames(p)
    it.close()
    w, h = meta["size"]
    return int(h), int(w)


def load_frames(
    path: str | os.PathLike,
    n_frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    resample: str = "bicubic",
    allow_decode_errors: bool = False,
    return_indices: bool = False,
    min_frames: int | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Load ``n_frames`` uniformly spaced frames (or all), centre-cropped and resized to ``(height, width)``.

    Args:
        path: video file (anything ffmpeg decodes: mp4, webm, avi, gif, ...).
        n_frames: how many frames; indices from ``utils.frames.sample_frame_indices`` (first and last frame
            included). None loads every frame.
        height, width: output size in pixels; see ``utils.frames.center_crop_resize``. None keeps the size.
        resample: PIL filter name for the resize.
        allow_decode_errors: accept a stream with decode errors and use its decodable frames.
        return_indices: also return the int64 frame indices used.
        min_frames: accept a video with fewer than ``n_frames`` (but at least ``min_frames``)
            decodable frames and return all of them; None: fewer than ``n_frames`` is an error.

    Returns:
        uint8 numpy array ``[T, height, width, 3]`` RGB (``T = n_frames``, or the frame count when
        there are fewer and ``min_frames`` allows it), and the indices ``[T]`` if ``return_indices``.

    Raises:
        VideoReadError: missing/empty/non-video/truncated file, or fewer decodable frames than
            ``n_frames`` (than ``min_frames`` when given).
        ValueError: ``n_frames < 1``.
    """
    p = _check_file(path)
    if n_frames is not None and int(n_frames) < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    total = _probe_decode(p, allow_decode_errors)
    if total == 0:
        raise VideoReadError(p, "no decodable video frames")
    if n_frames is None:
        indices = np.arange(total, dtype=np.int64)
    else:
        if total < int(n_frames) and (min_frames is None or total < int(min_frames)):
            need = "" if min_frames is None else f" (at least {int(min_frames)} needed)"
            raise VideoReadError(p, f"only {total} decodable frame(s), {int(n_frames)} requested{need}")
        indices = sample_frame_indices(total, min(total, int(n_frames)))
    # A frame may be requested more than once only if indices repeat (they do not, see above),
    # but keep the mapping general.
    wanted: dict[int, list[int]] = {}
    for slot, idx in enumerate(indices.tolist()):
        wanted.setdefault(idx, []).append(slot)
    last = int(indices[-1])
    out: list[np.ndarray | None] = [None] * len(indices)
    _meta, it = _iter_frames(p)
    n_seen = 0
    try:
        for i, frame in enumerate(it):
            n_seen = i + 1
            if i in wanted:
                small = center_crop_resize(frame, height, width, resample)
                small = np.array(small, dtype=np.uint8, copy=True)
                for slot in wanted[i]:
                    out[slot] = small
            if i >= last:
                break
    finally:
        it.close()
    if any(f is None for f in out):
        raise VideoReadError(
            p, f"stream ended after {n_seen} frames although {total} were counted (corrupt file?)"
        )
    frames = np.stack(out, axis=0)  # type: ignore[arg-type]
    return (frames, indices) if return_indices else frames


def sample_uniform_frames(
    path: str | os.PathLike,
    n_frames: int = 10,
    size: int | None = 518,
    resample: str = "bicubic",
    allow_decode_errors: bool = False,
    min_frames: int | None = None,
) -> np.ndarray:
    """``n_frames`` frames spread uniformly over the whole video, centre-cropped square, resized.

    This is the frame sampler of the geometry-consistency scorer (VGGT input: square, side a
    multiple of 14, 518 by default as in the VGGT reference and VideoGPA).

    Args:
        path: video file.
        n_frames: number of frames (first and last frame always included).
        size: output side in pixels; None keeps the centre square at its native size.
        resample: PIL filter name (``"bicubic"`` default, ``"area"``...).
        allow_decode_errors, min_frames: see :func:`load_frames` (``min_frames``: a shorter video
            gives all its frames).

    Returns:
        uint8 numpy array ``[n_frames, size, size, 3]`` RGB (fewer frames only with ``min_frames``).

    Raises:
        VideoReadError: see :func:`load_frames` (includes fewer decodable frames than ``n_frames``).
    """
    if size is None:
        side = min(frame_size(path))
    else:
        side = int(size)
    frames = load_frames(path, n_frames, side, side, resample, allow_decode_errors, min_frames=min_frames)
    assert isinstance(frames, np.ndarray)
    return frames


def read_video_frames(path: str | os.PathLike, allow_decode_errors: bool = False) -> np.ndarray:
    """Every frame of ``path`` as uint8 ``[T, H, W, 3]`` RGB at its native size.

    Raises:
        VideoReadError: see :func:`load_frames`.
    """
    return load_frames(path, None, allow_decode_errors=allow_decode_errors)  # type: ignore[return-value]
