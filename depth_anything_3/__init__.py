"""Depth Anything 3 (Lin et al., 2025), re-implemented from scratch.

Numerically equivalent to ByteDance-Seed/Depth-Anything-3 (``DepthAnything3Net`` without the sky /
Gaussian / ray-pose branches) and loads the hub checkpoints (``depth-anything/DA3-LARGE``) unchanged.

    from depth_anything_3 import load_da3, preprocess_frames
    model = load_da3("depth-anything/DA3-LARGE", device="cuda")
    x = preprocess_frames(frames_uint8)[None].cuda()       # [1, S, 3, 504, 504] for 518 px frames
    out = model(x, autocast_dtype=torch.bfloat16)          # depth, extrinsics (w2c), intrinsics, ...
"""

from .config import PRESETS, resolve_config
from .hub import load_da3
from .model.depth_anything3 import DepthAnything3, build_da3
from .preprocess import denormalize_to_uint8, normalize_images, preprocess_frames, resize_frames

__all__ = ["DepthAnything3", "PRESETS", "build_da3", "denormalize_to_uint8", "load_da3",
           "normalize_images", "preprocess_frames", "resize_frames", "resolve_config"]
