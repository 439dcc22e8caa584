"""The DA3 backbone module: holds the ViT as ``pretrained`` and the layers it reads out.

Reference: ByteDance-Seed/Depth-Anything-3 ``model/dinov2/dinov2.py`` (``DinoV2``), built here from
explicit ViT sizes (the ``backbone`` section of a DA3 config) instead of a ``vitl``-style name.
"""

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from .vision_transformer import DinoVisionTransformer


class DinoV2(nn.Module):
    """``DinoV2(out_layers, **vit_kwargs)``; ``vit_kwargs`` as :class:`DinoVisionTransformer`."""

    def __init__(self, out_layers: Sequence[int], **vit_kwargs):
        super().__init__()
        self.out_layers = [int(i) for i in out_layers]
        self.pretrained = DinoVisionTransformer(**vit_kwargs)

    def forward(self, images: torch.Tensor, cam_token: Optional[torch.Tensor] = None,
                ref_view_strategy: str = "saddle_balanced"
                ) -> Tuple[List[torch.Tensor], List[torch.Tensor], Optional[torch.Tensor]]:
        """Images ``[B, S, 3, H, W]`` (ImageNet-normalised) -> ``(features, camera_features,
        ref_view_idx)``; see :meth:`DinoVisionTransformer.forward` for shapes."""
        return self.pretrained(images, self.out_layers, cam_token=cam_token,
                               ref_view_strategy=ref_view_strategy)
