"""VGGT: Visual Geometry Grounded Transformer (Wang et al., CVPR 2025).

One feed-forward pass maps S frames of a scene to per-frame cameras, depth maps and world point
maps (all expressed in the first camera's frame). Parameter names follow the released
``facebook/VGGT-1B`` checkpoint; the track head is not implemented (its ``track_head.*`` weights
are ignored by :func:`vggt.load_vggt`).

Reference: facebookresearch/vggt ``vggt/models/vggt.py``.
"""

from typing import Dict, Optional, Sequence

import torch
from torch import nn

from ..heads import CameraHead, DPTHead
from .aggregator import Aggregator


class VGGT(nn.Module):
    """VGGT model; ``VGGT()`` is the VGGT-1B architecture.

    Args (every key of ``tests/fixtures/vggt/vggt_tiny_config.json`` is accepted):
        img_size: square size (px) the DINOv2 position table is built for (518).
        patch_size: 14. embed_dim: token width (1024). depth: frame/global block pairs (24).
        num_heads, mlp_ratio, qk_norm, rope_freq: aggregator attention settings.
        num_register_tokens: registers of both DINOv2 and the aggregator (4).
        patch_embed: "dinov2" (ViT with registers) or "conv" (plain patchify).
        encoder_depth, encoder_num_heads: DINOv2 encoder size (24, 16: ViT-L/14).
        camera_trunk_depth, camera_num_heads: camera head trunk (4, 16).
        dpt_features, dpt_out_channels, dpt_intermediate_layer_idx: both DPT heads.
        enable_camera / enable_depth / enable_point: build these heads (default True).
        enable_track / enable_track_head: must be False (track head not implemented).
        init_values: layer-scale init of aggregator and camera trunk blocks (0.01).
    """

    def __init__(self, img_size: int = 518, patch_size: int = 14, embed_dim: int = 1024,
                 depth: int = 24, num_heads: int = 16, mlp_ratio: float = 4.0,
                 num_register_tokens: int = 4, patch_embed: str = "dinov2", encoder_depth: int = 24,
                 encoder_num_heads: int = 16, qk_norm: bool = True, rope_freq: float = 100,
                 camera_trunk_depth: int = 4, camera_num_heads: int = 16, dpt_features: int = 256,
                 dpt_out_channels: Sequence[int] = (256, 512, 1024, 1024),
                 dpt_intermediate_layer_idx: Sequence[int] = (4, 11, 17, 23),
                 enable_camera: bool = True, enable_depth: bool = True, enable_point: bool = True,
                 enable_track: bool = False, enable_track_head: bool = False,
                 init_values: float = 0.01):
        super().__init__()
        if enable_track or enable_track_head:
            raise NotImplementedError("the VGGT track head is not implemented; pass enable_track=False "
                                      "(load_vggt ignores track_head.* weights)")
        self.config = dict(
            img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, mlp_ratio=mlp_ratio, num_register_tokens=num_register_tokens,
            patch_embed=patch_embed, encoder_depth=encoder_depth, encoder_num_heads=encoder_num_heads,
            qk_norm=qk_norm, rope_freq=rope_freq, camera_trunk_depth=camera_trunk_depth,
            camera_num_heads=camera_num_heads, dpt_features=dpt_features,
            dpt_out_channels=list(dpt_out_channels),
            dpt_intermediate_layer_idx=list(dpt_intermediate_layer_idx), enable_camera=enable_camera,
            enable_depth=enable_depth, enable_point=enable_point, init_values=init_values)

        self.aggregator = Aggregator(
            img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, mlp_ratio=mlp_ratio, num_register_tokens=num_register_tokens,
            patch_embed=patch_embed, encoder_depth=encoder_depth, encoder_num_heads=encoder_num_heads,
            qk_norm=qk_norm, rope_freq=rope_freq, init_values=init_values,
        )
        dim = 2 * embed_dim
        self.camera_head = (
            CameraHead(dim_in=dim, trunk_depth=camera_trunk_depth, num_heads=camera_num_heads,
                       mlp_ratio=mlp_ratio, init_values=init_values)
            if enable_camera else None
        )

        def dpt(output_dim, activation):
            return DPTHead(dim_in=dim, patch_size=patch_size, output_dim=output_dim, activation=activation,
                           conf_activation="expp1", features=dpt_features, out_channels=dpt_out_channels,
                           intermediate_layer_idx=dpt_intermediate_layer_idx)

        self.point_head = dpt(4, "inv_log") if enable_point else None
        self.depth_head = dpt(2, "exp") if enable_depth else None
        self.track_head = None

    def forward(self, images: torch.Tensor, frames_chunk_size: Optional[int] = 8,
                autocast_dtype: Optional[torch.dtype] = None) -> Dict[str, torch.Tensor]:
        """Predict cameras, depth and point maps for one or more frame sequences.

        Args:
            images: float ``[B, S, 3, H, W]`` or ``[S, 3, H, W]``, RGB in [0, 1]; H and W multiples of
                ``patch_size`` (518 px on the long side is what VGGT-1B was trained for).
            frames_chunk_size: DPT heads process this many frames at a time (None: all at once);
                results do not depend on it.
            autocast_dtype: e.g. ``torch.bfloat16``: run the aggregator under autocast on the
                input's device (heads always run with autocast disabled, in their parameter dtype,
                as in the reference). None: no autocast of our own (an outer one still applies).

        Returns dict (B added if the input had none):
            ``pose_enc`` [B, S, 9] (translation, quaternion XYZW, fov_h, fov_w; camera-from-world,
            see :func:`vggt.utils.pose_enc.pose_encoding_to_extri_intri`), ``pose_enc_list`` (the 4
            camera-head iterates), ``depth`` [B, S, H, W, 1] (z-depth, first-camera units),
            ``depth_conf`` [B, S, H, W] (> 1), ``world_points`` [B, S, H, W, 3] (first camera's
            OpenCV frame), ``world_points_conf`` [B, S, H, W] (> 1), ``images`` (the input, eval
            mode only). Heads that are disabled are omitted.
        """
        if images.ndim == 4:
            images = images.unsqueeze(0)
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be [B, S, 3, H, W] or [S, 3, H, W], got {tuple(images.shape)}")
        p = self.aggregator.patch_size
        if images.shape[-2] % p or images.shape[-1] % p:
            raise ValueError(f"image size {tuple(images.shape[-2:])} is not a multiple of {p}")

        needed = set()
        if self.camera_head is not None:
            needed.add(self.aggregator.depth - 1)
        for head in (self.depth_head, self.point_head):
            if head is not None:
                needed.update(i % self.aggregator.depth for i in head.intermediate_layer_idx)

        if autocast_dtype is not None:
            with torch.autocast(device_type=images.device.type, dtype=autocast_dtype):
                tokens, patch_start_idx = self.aggregator(images, keep_layers=needed)
        else:
            tokens, patch_start_idx = self.aggregator(images, keep_layers=needed)

        out = {}
        if self.camera_head is not None:
            poses = self.camera_head(tokens)
            out["pose_enc"] = poses[-1]
            out["pose_enc_list"] = poses
        if self.depth_head is not None:
            out["depth"], out["depth_conf"] = self.depth_head(tokens, images, patch_start_idx,
                                                              frames_chunk_size)
        if self.point_head is not None:
            out["world_points"], out["world_points_conf"] = self.point_head(
                tokens, images, patch_start_idx, frames_chunk_size)
        if not self.training:
            out["images"] = images
        return out
