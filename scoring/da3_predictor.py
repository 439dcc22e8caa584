"""Geometry from Depth Anything 3 for the consistency scorer (same protocol as ``VGGTPredictor``).

DA3 (``depth_anything_3``) predicts per frame a z-depth map with confidence and a camera; its
``extrinsics`` output is already camera-from-world (OpenCV axes, world = the reference view's
camera frame; DA3's pose encoding itself is camera-to-world, the net inverts it), and its
``intrinsics`` are in pixels of the input with the centre of pixel (0, 0) at (0, 0), the
:class:`scoring.geometry.GeometryPrediction` conventions. DA3 has no point head: its point
map ``world_points`` is the depth unprojected with its own cameras (VideoGPA's
``world_points_from_depth`` for DA3), so ``points_source="point_head"`` (the released reward) and
``"depth"`` give the same cloud with DA3. Frames are ImageNet-normalised
here; they are not resized: VideoGPA's released evaluation runs DA3 at 504 x 504 (its 518 px
frames through :func:`depth_anything_3.resize_frames`), so resize the frames before scoring to
reproduce it.

Reference: VideoGPA ``pipelines/process_video.py`` (DA3 branch: ``model.inference`` with
``ref_view_strategy="saddle_balanced"``, ``extrinsics``/``intrinsics``/``depth``/``conf``).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch

from depth_anything_3 import load_da3, normalize_images
from vggt.utils.geometry import unproject_depth_map_to_point_map

from .geometry import GeometryPrediction, ModelPredictor

__all__ = ["DA3Predictor"]


class DA3Predictor(ModelPredictor):
    """Geometry from DA3: depth head + camera decoder.

    Args:
        model: a :class:`depth_anything_3.DepthAnything3` module, or a source for
            :func:`depth_anything_3.load_da3`: Hub id (default ``"depth-anything/DA3-LARGE"``),
            a local folder with ``config.json`` + ``model.safetensors``, or one weights file.
        device: default CUDA if available, else CPU.
        dtype: parameter dtype (default float32).
        config: DA3 config (dict or JSON path) for single-file sources.
        autocast: None: bf16 autocast of the backbone on CUDA (fp16 before compute capability 8),
            none on CPU; True / False force it on / off (on CPU True is ignored).
        ref_view_strategy: DA3's reference-view choice (``"saddle_balanced"``, as released).

    ``predict(images)``: float ``[T, 3, H, W]`` RGB in [0, 1], H and W multiples of 14 -> a
    :class:`GeometryPrediction` at ``(H, W)`` (float32, on ``device``) with ``world_points``
    ``[T, H, W, 3]`` (depth unprojected). Raises ValueError otherwise.
    """

    name = "DA3"
    has_point_map = True

    def __init__(self, model: Any = "depth-anything/DA3-LARGE", device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None, config: Mapping | str | os.PathLike | None = None,
                 autocast: bool | None = None, ref_view_strategy: str = "saddle_balanced"):
        super().__init__(model, load_da3, device=device, dtype=dtype, config=config, autocast=autocast)
        self.ref_view_strategy = ref_view_strategy

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> GeometryPrediction:
        x, (t, h, w) = self._model_input(images, normalize_images)
        out = self.model(x[None], ref_view_strategy=self.ref_view_strategy,
                         autocast_dtype=self.autocast_dtype)
        depth = out["depth"][0].float()
        extrinsic, intrinsic = out["extrinsics"][0].float(), out["intrinsics"][0].float()
        return GeometryPrediction(
            depth=depth,
            depth_conf=out["depth_conf"][0].float(),
            extrinsic=extrinsic,
            intrinsic=intrinsic,
            world_points=unproject_depth_map_to_point_map(depth, extrinsic, intrinsic),
        ).validate(t, h, w)
