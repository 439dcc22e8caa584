"""DA3 input preprocessing of the reference API (``process_res=504``, ``"upper_bound_resize"``).

Per frame (uint8 RGB ``[H, W, 3]``):
  1. the longest side is resized to ``process_res``: new size ``(round(w * s), round(h * s))``
     with ``s = process_res / max(h, w)`` (Python's round, ties to even), skipped when the longest
     side already equals it; OpenCV ``INTER_AREA`` when shrinking, ``INTER_CUBIC`` when enlarging;
  2. each side goes to the nearest multiple of 14 (ties up) by a second OpenCV resize
     (``INTER_CUBIC`` if either side grows, else ``INTER_AREA``), skipped when already there;
  3. ``/ 255`` then ImageNet normalisation ``(x - mean) / std`` in float32.
VideoGPA's 518 x 518 frames become 504 x 504 (a 36 x 36 patch grid).
OpenCV is used because ``INTER_AREA`` (a fractional box filter for non-integer factors) has no
exact torch / PIL equivalent. All frames must have one size (the reference would centre-crop
mixed sizes to the smallest; not supported here).

Reference: ByteDance-Seed/Depth-Anything-3 ``utils/io/input_processor.py`` (``InputProcessor``:
``_resize_longest_side``, ``_make_divisible_by_resize``, ``_normalize_image``) and ``api.py``
(``_add_processed_images``: the de-normalised uint8 frames the reference returns).
"""

from typing import Sequence, Tuple, Union

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PATCH = 14
DEFAULT_PROCESS_RES = 504
METHODS = ("upper_bound_resize", "lower_bound_resize")


def _nearest_multiple(x: int, p: int = PATCH) -> int:
    down = (x // p) * p
    up = down + p
    return up if abs(up - x) <= abs(x - down) else down


def processed_size(height: int, width: int, process_res: int = DEFAULT_PROCESS_RES,
                   method: str = "upper_bound_resize") -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """``((h1, w1), (h2, w2))``: the size after the bound resize and after the multiple-of-14 resize.

    ``method``: ``"upper_bound_resize"`` (longest side -> ``process_res``) or
    ``"lower_bound_resize"`` (shortest side). Raises ValueError for another method.
    """
    if method not in METHODS:
        raise ValueError(f"unsupported process_res_method {method!r}; choose from {METHODS}")
    side = max(height, width) if method == "upper_bound_resize" else min(height, width)
    if side == process_res:
        h1, w1 = height, width
    else:
        s = process_res / float(side)
        h1, w1 = max(1, int(round(height * s))), max(1, int(round(width * s)))
    return (h1, w1), (max(1, _nearest_multiple(h1)), max(1, _nearest_multiple(w1)))


def resize_frames(frames: Union[np.ndarray, Sequence[np.ndarray]], process_res: int = DEFAULT_PROCESS_RES,
                  method: str = "upper_bound_resize") -> np.ndarray:
    """Steps 1-2: uint8 RGB frames ``[T, H, W, 3]`` (array or list) -> uint8 ``[T, H', W', 3]``.

    ``H'``, ``W'`` are multiples of 14 (504 x 504 for 518 x 518 input). Raises ValueError for
    non-uint8 or non-RGB frames or frames of different sizes.
    """
    import cv2

    arrays = [np.asarray(f) for f in frames]
    if not arrays:
        raise ValueError("no frames to preprocess")
    for a in arrays:
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 RGB [H, W, 3], got {a.dtype} {a.shape}")
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"frames have different sizes {sorted({a.shape for a in arrays})}")
    H, W = arrays[0].shape[:2]
    (h1, w1), (h2, w2) = processed_size(H, W, process_res, method)
    bound_side = max(H, W) if method == "upper_bound_resize" else min(H, W)
    first = cv2.INTER_CUBIC if bound_side < process_res else cv2.INTER_AREA
    second = cv2.INTER_CUBIC if h2 > h1 or w2 > w1 else cv2.INTER_AREA
    out = []
    for a in arrays:
        if (h1, w1) != (H, W):
            a = cv2.resize(a, (w1, h1), interpolation=first)
        if (h2, w2) != (h1, w1):
            a = cv2.resize(a, (w2, h2), interpolation=second)
        out.append(np.ascontiguousarray(a))
    return np.stack(out)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation ``(x - mean) / std`` per RGB channel of float ``[..., 3, H, W]`` in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device)[:, None, None]
    return (images - mean) / std


def preprocess_frames(frames: Union[np.ndarray, Sequence[np.ndarray]],
                      process_res: int = DEFAULT_PROCESS_RES,
                      method: str = "upper_bound_resize") -> torch.Tensor:
    """uint8 RGB frames ``[T, H, W, 3]`` -> the DA3 input, float32 ``[T, 3, H', W']``
    ImageNet-normalised (add the batch axis with ``[None]``); see the module docstring."""
    resized = torch.from_numpy(resize_frames(frames, process_res, method))
    return normalize_images(resized.permute(0, 3, 1, 2).float() / 255.0).contiguous()


def denormalize_to_uint8(images: torch.Tensor) -> np.ndarray:
    """The reference's ``processed_images``: float ``[T, 3, H, W]`` normalised -> uint8
    ``[T, H, W, 3]`` = ``uint8(clip(x * std + mean, 0, 1) * 255)`` (truncated, so a value can be
    one below the resized frame's; VideoGPA's released scorer uses these / 255 as frames)."""
    x = images.detach().permute(0, 2, 3, 1).cpu().numpy().astype(np.float64)
    x = np.clip(x * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN), 0, 1)
    return (x * 255).astype(np.uint8)
