"""Resize frames to VGGT's input resolution (518 px, sides multiples of 14).

Modes (as ``load_and_preprocess_images`` in the reference):
  * ``"crop"``: width -> ``target_size``, height scaled by the same factor and rounded to a multiple
    of 14; if that height exceeds ``target_size`` the centre ``target_size`` rows are kept.
    Output ``[T, 3, h, target_size]`` with ``h <= target_size``.
  * ``"pad"``: the long side -> ``target_size``, the short side scaled and rounded to a multiple of
    14, then padded symmetrically with white (1.0) to ``target_size x target_size``.
Resampling is bicubic with antialiasing (PIL's filter; uint8 input on CPU is resampled in uint8
like PIL, so results match the reference's PIL path to within one grey level).

Reference: facebookresearch/vggt ``vggt/utils/load_fn.py``.
"""

from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

PATCH = 14


def resized_hw(height: int, width: int, mode: str = "crop", target_size: int = 518) -> Tuple[int, int]:
    """Size ``(h, w)`` a ``height x width`` frame is resized to before cropping/padding."""
    if mode not in ("crop", "pad"):
        raise ValueError(f"mode must be 'crop' or 'pad', got {mode!r}")
    if mode == "pad" and height > width:
        return target_size, round(width * (target_size / height) / PATCH) * PATCH
    return round(height * (target_size / width) / PATCH) * PATCH, target_size


def _to_nchw(frames) -> torch.Tensor:
    if isinstance(frames, np.ndarray):
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"numpy frames must be [T, H, W, 3], got {frames.shape}")
        return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    if isinstance(frames, torch.Tensor):
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim == 4 and frames.shape[1] == 3:
            return frames
        if frames.ndim == 4 and frames.shape[-1] == 3:
            return frames.permute(0, 3, 1, 2)
        raise ValueError(f"tensor frames must be [T, 3, H, W] or [T, H, W, 3], got {tuple(frames.shape)}")
    raise TypeError(f"frames must be a numpy array or torch tensor, got {type(frames).__name__}")


def preprocess_frames(frames: Union[np.ndarray, torch.Tensor], mode: str = "crop",
                      target_size: int = 518) -> torch.Tensor:
    """Frames -> VGGT input.

    Args:
        frames: uint8 (0..255) or float (0..1) RGB; numpy ``[T, H, W, 3]``, or torch
            ``[T, 3, H, W]`` / ``[T, H, W, 3]`` (a single frame without T is accepted).
        mode: "crop" or "pad" (see module docstring). target_size: 518 for VGGT-1B.
    Returns float32 ``[T, 3, H', W']`` in [0, 1] on the input's device, ``H', W'`` multiples of 14.
    Raises ValueError / TypeError for bad shapes, modes or types.
    """
    x = _to_nchw(frames)
    T, _, H, W = x.shape
    h, w = resized_hw(H, W, mode, target_size)
    if x.dtype == torch.uint8 and x.device.type == "cpu":
        x = F.interpolate(x.contiguous(), size=(h, w), mode="bicubic", antialias=True).float() / 255.0
    else:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        x = F.interpolate(x, size=(h, w), mode="bicubic", antialias=True).clamp(0.0, 1.0)
    if mode == "crop" and h > target_size:
        top = (h - target_size) // 2
        x = x[:, :, top:top + target_size]
    if mode == "pad":
        dh, dw = target_size - h, target_size - w
        if dh > 0 or dw > 0:
            x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), value=1.0)
    return x.contiguous()


def load_and_preprocess_images(image_paths: Sequence[str], mode: str = "crop",
                               target_size: int = 518) -> torch.Tensor:
    """Load image files (PIL; RGBA composited on white) and preprocess like the reference.

    Returns float32 ``[N, 3, H, W]`` in [0, 1]; frames of different sizes are padded with white
    to the largest size. Raises ValueError for an empty list.
    """
    from PIL import Image  # optional dependency, only needed here

    if len(image_paths) == 0:
        raise ValueError("at least one image is required")
    images: List[torch.Tensor] = []
    for path in image_paths:
        img = Image.open(path)
        if img.mode == "RGBA":
            img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
        arr = np.asarray(img.convert("RGB"))
        images.append(preprocess_frames(arr, mode, target_size)[0])
    H = max(im.shape[1] for im in images)
    W = max(im.shape[2] for im in images)
    out = []
    for im in images:
        dh, dw = H - im.shape[1], W - im.shape[2]
        out.append(F.pad(im, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), value=1.0) if dh or dw else im)
    return torch.stack(out)
