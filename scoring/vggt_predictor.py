"""Geometry from VGGT (Wang et al., CVPR 2025) for the consistency scorer: camera head, depth head and
(unless dropped) point head.

The camera head's pose encoding is turned into camera-from-world extrinsics (OpenCV axes, world =
the first camera's frame) and pixel intrinsics of the input
(:func:`vggt.utils.pose_enc.pose_encoding_to_extri_intri`);
the depth head gives z-depth with confidence, the point head a world point map (the released
VideoGPA reward reprojects it, ``points_source="point_head"``).

Reference: facebookresearch/vggt ``vggt/models/vggt.py``; VideoGPA ``utils/model_utils.py:run_model_gpu``.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch

from .geometry import GeometryPrediction, ModelPredictor

__all__ = ["VGGTPredictor"]


def _load_vggt(source: str, **kwargs) -> torch.nn.Module:
    from vggt import load_vggt

    return load_vggt(source, **kwargs)


class VGGTPredictor(ModelPredictor):
    """Geometry from VGGT: camera head, depth head and (unless dropped) point head.

    Args:
        model: a :class:`vggt.VGGT` module, or a source for :func:`vggt.load_vggt`: Hub id
            (default ``"facebook/VGGT-1B"``), local folder with ``config.json`` + ``model.safetensors``,
            or a single ``.safetensors``/``.pt`` file (then give ``config``).
        device: default CUDA if available, else CPU.
        dtype: parameter dtype (default float32). On CUDA the aggregator runs under bfloat16
            autocast (float16 on GPUs older than Ampere, compute capability < 8) and the heads in
            float32, as in the VGGT reference; on CPU everything runs in float32 (``autocast=False``).
        config: VGGT config (dict or JSON path) for single-file sources.
        autocast: override the automatic choice (True: bf16/fp16 autocast on CUDA; False: none).
        drop_point_head: when the model is loaded here, delete its point head (saves time; only
            for ``points_source="depth"``, which does not use it). Default False.

    ``predict(images)``: images float ``[T, 3, H, W]`` in [0, 1], ``H, W`` multiples of 14.
    Raises ValueError otherwise.
    """

    name = "VGGT"

    def __init__(
        self,
        model: Any = "facebook/VGGT-1B",
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        config: Mapping | str | os.PathLike | None = None,
        autocast: bool | None = None,
        drop_point_head: bool = False,
    ):
        super().__init__(model, _load_vggt, device=device, dtype=dtype, config=config, autocast=autocast)
        loaded_here = not isinstance(model, torch.nn.Module)
        if loaded_here and drop_point_head and getattr(self.model, "point_head", None) is not None:
            self.model.point_head = None

    @property
    def has_point_map(self) -> bool:
        """Whether :meth:`predict` returns ``world_points`` (the model has a point head)."""
        return getattr(self.model, "point_head", None) is not None

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> GeometryPrediction:
        from vggt.utils.pose_enc import pose_encoding_to_extri_intri

        x, (t, h, w) = self._model_input(images)
        out = self.model(x, autocast_dtype=self.autocast_dtype)
        extrinsic, intrinsic = pose_encoding_to_extri_intri(out["pose_enc"].float(), (h, w))
        points = out.get("world_points")
        return GeometryPrediction(
            depth=out["depth"][0, ..., 0].float(),
            depth_conf=out["depth_conf"][0].float(),
            extrinsic=extrinsic[0].float(),
            intrinsic=intrinsic[0].float(),
            world_points=None if points is None else points[0].float(),
        ).validate(t, h, w)
