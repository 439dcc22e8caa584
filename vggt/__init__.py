"""VGGT (Visual Geometry Grounded Transformer, Wang et al. CVPR 2025), re-implemented from scratch.

Numerically equivalent to facebookresearch/vggt and loads the ``facebook/VGGT-1B`` weights.

    from vggt import VGGT, load_vggt
    model = load_vggt("facebook/VGGT-1B", device="cuda")
    pred = model(images, autocast_dtype=torch.bfloat16)   # images [S, 3, H, W] in [0, 1]
"""

from .hub import load_vggt
from .models import VGGT

__all__ = ["VGGT", "load_vggt"]
