"""DepthAnything3Net: backbone + DualDPT head + camera decoder (+ camera encoder for input cameras).

Reference: ByteDance-Seed/Depth-Anything-3 ``model/da3.py`` (``DepthAnything3Net.forward`` with
``use_ray_pose=False``, ``infer_gs=False``: depth head, then cameras from the camera decoder).
The sky, Gaussian-splatting and ray-pose branches are not implemented (DA3-Large has no sky or
Gaussian head; ray pose is an alternative camera read-out VideoGPA does not use).
"""

from contextlib import nullcontext
from typing import Dict, Optional

import torch
from torch import nn

from ..utils.cameras import invert_rigid, pose_encoding_to_c2w_intrinsics
from .cam_dec import CameraDec
from .cam_enc import CameraEnc
from .dinov2 import DinoV2
from .dualdpt import DualDPT


class DepthAnything3Net(nn.Module):
    """The DA3 network; parameter names as under ``model.`` in the hub checkpoints.

    Args: ``backbone``, ``head``, ``cam_dec``, ``cam_enc``: keyword dicts of :class:`DinoV2`
    (``out_layers`` + :class:`DinoVisionTransformer` sizes), :class:`DualDPT`, :class:`CameraDec`
    and :class:`CameraEnc` (``cam_dec``/``cam_enc`` may be None: no cameras).
    """

    PATCH_SIZE = 14

    def __init__(self, backbone: dict, head: dict, cam_dec: Optional[dict] = None,
                 cam_enc: Optional[dict] = None):
        super().__init__()
        self.backbone = DinoV2(**backbone)
        self.head = DualDPT(**head)
        self.cam_dec = CameraDec(**cam_dec) if cam_dec is not None else None
        self.cam_enc = CameraEnc(**cam_enc) if cam_dec is not None and cam_enc is not None else None
        self.patch_size = self.backbone.pretrained.patch_size

    def forward(self, images: torch.Tensor, extrinsics: Optional[torch.Tensor] = None,
                intrinsics: Optional[torch.Tensor] = None,
                ref_view_strategy: str = "saddle_balanced", frames_chunk_size: Optional[int] = 8,
                autocast_dtype: Optional[torch.dtype] = None) -> Dict[str, torch.Tensor]:
        """Depth, rays and cameras for S views of a scene.

        Args:
            images: float ``[B, S, 3, H, W]`` (or ``[S, 3, H, W]``), RGB ImageNet-normalised
                (``(x - mean) / std`` of x in [0, 1], see :func:`depth_anything_3.normalize_images`);
                H, W multiples of 14 (504 px on the long side is DA3's default processing size).
            extrinsics, intrinsics: optional input cameras, ``[B, S, 4, 4]`` world-to-camera
                (OpenCV, normalised with :func:`depth_anything_3.utils.cameras.normalize_extrinsics`)
                and ``[B, S, 3, 3]`` pixels; encoded by the camera encoder into the views' token 0.
                Both or neither. With cameras no reference view is selected.
            ref_view_strategy: reference-view choice for S >= 3 (``"saddle_balanced"``, ``"first"``,
                ``"middle"``, ``"saddle_sim_range"``).
            frames_chunk_size: the head processes this many frames at once (None: all).
            autocast_dtype: e.g. ``torch.bfloat16``: run the backbone under autocast on the input's
                device (as the reference API does on GPUs); camera encoder, head and camera decoder
                always run with autocast disabled in their parameter dtype.

        Returns dict (B added if the input had none):
            ``depth`` ``[B, S, H, W]`` z-depth (scene scale is arbitrary, > 0), ``depth_conf``
            ``[B, S, H, W]`` (> 1), ``ray`` ``[B, S, 8h, 8w, 6]`` (h, w = patch grid; per-pixel ray
            origin and direction, unscaled), ``ray_conf`` ``[B, S, 8h, 8w]`` (> 1), ``pose_enc``
            ``[B, S, 9]`` (camera-to-world, see :mod:`depth_anything_3.utils.cameras`),
            ``extrinsics`` ``[B, S, 3, 4]`` world-to-camera ``[R | t]`` (OpenCV axes; world = the
            reference view's camera frame), ``intrinsics`` ``[B, S, 3, 3]`` pixels of (H, W) with
            the centre of pixel (0, 0) at (0, 0), and ``ref_view_idx`` LongTensor ``[B]`` when a
            reference view was selected. Camera keys are absent without a camera decoder.
        Raises ValueError for bad shapes or only one of extrinsics / intrinsics.
        """
        if images.ndim == 4:
            images = images.unsqueeze(0)
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be [B, S, 3, H, W] or [S, 3, H, W], got {tuple(images.shape)}")
        B, S, _, H, W = images.shape
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"image size {H}x{W} is not a multiple of {self.patch_size}")
        if (extrinsics is None) != (intrinsics is None):
            raise ValueError("give both extrinsics and intrinsics, or neither")
        no_autocast = torch.autocast(device_type=images.device.type, enabled=False)

        cam_token = None
        if extrinsics is not None:
            if self.cam_enc is None:
                raise ValueError("this model has no camera encoder; input cameras are not supported")
            if extrinsics.shape[:2] != (B, S) or intrinsics.shape != (B, S, 3, 3):
                raise ValueError(f"cameras must be [B, S, 4, 4] and [B, S, 3, 3] for B={B}, S={S}, got "
                                 f"{tuple(extrinsics.shape)} and {tuple(intrinsics.shape)}")
            with no_autocast:
                cam_token = self.cam_enc(extrinsics, intrinsics, (H, W))

        ctx = (torch.autocast(device_type=images.device.type, dtype=autocast_dtype)
               if autocast_dtype is not None else nullcontext())
        with ctx:
            features, camera_features, ref_idx = self.backbone(images, cam_token=cam_token,
                                                               ref_view_strategy=ref_view_strategy)
        with no_autocast:
            out = self.head(features, H, W, frames_chunk_size)
            if self.cam_dec is not None:
                dtype = self.cam_dec.fc_t.weight.dtype
                out["pose_enc"] = self.cam_dec(camera_features[-1].to(dtype))
                c2w, out["intrinsics"] = pose_encoding_to_c2w_intrinsics(out["pose_enc"], (H, W))
                out["extrinsics"] = invert_rigid(c2w)
        if ref_idx is not None:
            out["ref_view_idx"] = ref_idx
        return out
