"""Frame-array operations shared by every stage that samples or resizes video frames.

Frames are ``numpy.uint8`` RGB, ``[H, W, 3]`` per frame. :func:`sample_frame_indices` spreads
``n`` indices uniformly over a clip (first and last frame included); :func:`center_crop_resize`
centre-crops to the target aspect ratio (nothing is stretched) and resamples with PIL (bicubic by
default; PIL's bicubic widens its support when shrinking, so it is anti-aliased like area
averaging). Used by ``utils.video_utils`` (reading), the generation image loader and the
test-time-search verifiers.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["sample_frame_indices", "center_crop_resize"]

_RESAMPLE = {
    "bicubic": Image.BICUBIC,
    "bilinear": Image.BILINEAR,
    "lanczos": Image.LANCZOS,
    "area": Image.BOX,
    "box": Image.BOX,
    "nearest": Image.NEAREST,
}


def sample_frame_indices(num_total: int, n: int) -> np.ndarray:
    """``n`` frame indices spread uniformly over ``[0, num_total - 1]``, first and last included.

    Index ``k`` is ``floor(k * (num_total - 1) / (n - 1) + 0.5)`` (round half up), so the result is
    sorted, starts at 0, ends at ``num_total - 1`` and is strictly increasing when
    ``n <= num_total``. ``n == 1`` gives ``[0]``.

    Args:
        num_total: number of frames available (> 0).
        n: number of indices wanted (> 0, ``<= num_total``).

    Returns:
        int64 numpy array of shape ``[n]``.

    Raises:
        ValueError: ``n`` or ``num_total`` < 1, or ``n > num_total``.
    """
    num_total, n = int(num_total), int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if num_total < 1:
        raise ValueError(f"num_total must be >= 1, got {num_total}")
    if n > num_total:
        raise ValueError(f"cannot sample {n} distinct frames from {num_total}")
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    k = np.arange(n, dtype=np.float64)
    return np.floor(k * (num_total - 1) / (n - 1) + 0.5).astype(np.int64)


def center_crop_resize(
    frame: np.ndarray, height: int | None, width: int | None, resample: str = "bicubic"
) -> np.ndarray:
    """Centre-crop ``frame`` to the aspect ratio ``width / height``, then resize to ``(height, width)``.

    Args:
        frame: uint8 ``[H, W, 3]`` (or ``[H, W]``) image.
        height, width: target size in pixels. If both are None the frame is returned unchanged.
            If only one is given the other follows the frame's aspect ratio (no crop).
        resample: ``"bicubic"`` (default), ``"bilinear"``, ``"lanczos"``, ``"area"`` or ``"nearest"``.

    Returns:
        uint8 array ``[height, width, 3]``.

    The crop keeps the centre: for a frame wider than the target aspect, ``(W - W') // 2``
    columns are removed on the left and the rest on the right (likewise for rows).
    """
    if height is None and width is None:
        return frame
    h, w = frame.shape[:2]
    if height is None:
        height = max(1, int(round(h * width / w)))
        crop_h, crop_w = h, w
    elif width is None:
        width = max(1, int(round(w * height / h)))
        crop_h, crop_w = h, w
    else:
        target = width / height
        if w / h > target:  # too wide -> crop columns
            crop_h, crop_w = h, max(1, int(round(h * target)))
        else:  # too tall -> crop rows
            crop_h, crop_w = max(1, int(round(w / target))), w
    if resample not in _RESAMPLE:
        raise ValueError(f"unknown resample {resample!r}; choose from {sorted(_RESAMPLE)}")
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    cropped = frame[top : top + crop_h, left : left + crop_w]
    if (crop_h, crop_w) == (height, width):
        return np.ascontiguousarray(cropped)
    img = Image.fromarray(np.ascontiguousarray(cropped))
    return np.asarray(img.resize((int(width), int(height)), resample=_RESAMPLE[resample]))
