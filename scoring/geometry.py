"""What a geometry predictor returns and the interface every predictor of the scorer has.

:class:`GeometryPrediction`: per frame z-depth, depth confidence, camera-from-world extrinsics
(OpenCV axes: x right, y down, z forward), pixel intrinsics and an optional world point map, at the
frames' resolution. :class:`GeometryPredictor`: the protocol (``predict(images) -> prediction``).
:class:`ModelPredictor`: the shared part of the two learned predictors
(:class:`scoring.vggt_predictor.VGGTPredictor`, :class:`scoring.da3_predictor.DA3Predictor`):
weights loading, device, parameter dtype and autocast policy (:func:`utils.device.half_dtype`), and
the input checks. :class:`OraclePredictor`: given ground truth (tests, known-geometry checks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import numpy as np
import torch

from utils.device import half_dtype, resolve_device
from vggt.utils.geometry import unproject_depth_map_to_point_map

__all__ = ["GeometryPrediction", "GeometryPredictor", "ModelPredictor", "OraclePredictor"]


@dataclass
class GeometryPrediction:
    """Per-frame geometry at the frames' resolution (all float32 tensors on one device).

    Attributes:
        depth: ``[T, H, W]`` z-depth along the optical axis (world units; <= 0 or non-finite = invalid).
        depth_conf: ``[T, H, W]`` confidence (larger = more reliable; VGGT's are > 1).
        extrinsic: ``[T, 3, 4]`` camera-from-world ``[R | t]``, OpenCV axes.
        intrinsic: ``[T, 3, 3]`` pixel intrinsics ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``; the
            centre of pixel (0, 0) is at (0, 0).
        world_points: optional ``[T, H, W, 3]`` point map in the extrinsics' world frame (VGGT's
            point head); None when the predictor has none (``points_source="depth"`` only).
    """

    depth: torch.Tensor
    depth_conf: torch.Tensor
    extrinsic: torch.Tensor
    intrinsic: torch.Tensor
    world_points: torch.Tensor | None = None

    _FIELDS = ("depth", "depth_conf", "extrinsic", "intrinsic", "world_points")

    def to(self, device: str | torch.device) -> "GeometryPrediction":
        """The same prediction with every tensor on ``device``."""
        return GeometryPrediction(
            **{n: (None if getattr(self, n) is None else getattr(self, n).to(device)) for n in self._FIELDS}
        )

    def validate(self, num_frames: int, height: int, width: int) -> "GeometryPrediction":
        """Check shapes against ``(T, H, W)``; cast everything to float32. Raises ValueError."""
        exp = {
            "depth": (num_frames, height, width),
            "depth_conf": (num_frames, height, width),
            "extrinsic": (num_frames, 3, 4),
            "intrinsic": (num_frames, 3, 3),
            "world_points": (num_frames, height, width, 3),
        }
        out = {}
        for name, shape in exp.items():
            x = getattr(self, name)
            if x is None and name == "world_points":
                out[name] = None
                continue
            got = tuple(x.shape)
            if got != shape:
                raise ValueError(f"geometry prediction {name} has shape {got}, expected {shape}")
            out[name] = x.float()
        return GeometryPrediction(**out)


@runtime_checkable
class GeometryPredictor(Protocol):
    """Anything that maps frames to :class:`GeometryPrediction`.

    ``predict(images)`` takes float ``[T, 3, H, W]`` RGB in [0, 1] and returns a prediction at
    ``(H, W)``. ``device`` is where the predictor wants its input.
    """

    device: torch.device

    def predict(self, images: torch.Tensor) -> GeometryPrediction: ...


class ModelPredictor:
    """Shared setup of the learned geometry predictors (VGGT, DA3): one policy, one set of checks.

    Args:
        model: a ``torch.nn.Module``, or a source for ``loader``: hub id, local folder with
            ``config.json`` + ``model.safetensors``, or a single weights file (then give ``config``).
        loader: ``loader(source, device=, dtype=, config=) -> module`` (:func:`vggt.load_vggt`,
            :func:`depth_anything_3.load_da3`).
        device: default CUDA if available, else CPU (:func:`utils.device.resolve_device`).
        dtype: parameter dtype (default float32).
        config: model config (dict or JSON path) for single-file sources.
        autocast: None: autocast of the backbone on CUDA in :func:`utils.device.half_dtype`
            (bf16 from compute capability 8, else fp16), as the references; none on CPU. True /
            False force it on / off (True is ignored on CPU).

    Subclasses set ``name`` (used in error messages) and call :meth:`_model_input` in ``predict``.
    """

    name = "model"

    def __init__(self, model: Any, loader: Callable[..., torch.nn.Module],
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                 config: Mapping | str | os.PathLike | None = None, autocast: bool | None = None):
        self.device = resolve_device(device)
        self.dtype = dtype or torch.float32
        if isinstance(model, torch.nn.Module):
            self.model = model.to(self.device).eval()
            self.source = type(model).__name__
        else:
            self.source = str(model)
            self.model = loader(str(model), device=self.device, dtype=self.dtype, config=config).eval()
        self.model.requires_grad_(False)
        if autocast is None:
            autocast = self.device.type == "cuda"
        self.autocast_dtype: torch.dtype | None = (
            half_dtype(self.device) if autocast and self.device.type == "cuda" else None
        )

    def _model_input(
        self, images: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Check ``images`` (float ``[T, 3, H, W]``, H and W multiples of 14, the patch size), move it
        to the device as float32, apply ``transform`` (e.g. ImageNet normalisation), then cast to the
        parameter dtype when it is not float32 and there is no autocast. Returns ``(x, (T, H, W))``.
        Raises ValueError naming the shape."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [T, 3, H, W], got {tuple(images.shape)}")
        t, _, h, w = images.shape
        if h % 14 or w % 14:
            raise ValueError(f"{self.name} needs H and W to be multiples of 14, got {h}x{w}")
        x = images.to(self.device, torch.float32)
        if transform is not None:
            x = transform(x)
        if self.dtype != torch.float32 and self.autocast_dtype is None:
            x = x.to(self.dtype)
        return x, (t, h, w)


class OraclePredictor:
    """Returns given geometry (ground truth, or geometry from another tool) whatever the frames.

    Args:
        depth: ``[T, H, W]`` (or ``[T, H, W, 1]``) z-depth; <= 0 or non-finite marks no surface.
        extrinsic: ``[T, 3, 4]`` or ``[T, 4, 4]`` camera-from-world, OpenCV axes.
        intrinsic: ``[T, 3, 3]`` pixel intrinsics (pixel (0, 0) centred at (0, 0)).
        depth_conf: optional ``[T, H, W]``; default all ones.
        world_points: optional ``[T, H, W, 3]`` point map (world frame of ``extrinsic``); default
            ``depth`` unprojected with the given cameras (NaN where the depth is invalid), i.e. a
            point head that agrees exactly with the camera head.
        device: where the tensors live (default CPU).

    numpy arrays or tensors. ``predict(images)`` checks that ``images`` is ``[T, 3, H, W]`` with the
    same ``T, H, W`` (ValueError otherwise).
    """

    has_point_map = True

    def __init__(
        self,
        depth,
        extrinsic,
        intrinsic,
        depth_conf=None,
        world_points=None,
        device: str | torch.device = "cpu",
    ):
        self.device = torch.device(device)

        def tensor(x) -> torch.Tensor:
            return torch.as_tensor(x if isinstance(x, torch.Tensor) else np.asarray(x))

        d = tensor(depth)
        if d.dim() == 4 and d.shape[-1] == 1:
            d = d[..., 0]
        e = tensor(extrinsic)[:, :3, :4]
        k = tensor(intrinsic)
        c = torch.ones_like(d, dtype=torch.float32) if depth_conf is None else tensor(depth_conf)
        if world_points is None:  # from float32 inputs, as build_point_cloud unprojects in "depth" mode
            d32 = d.to(torch.float32)
            ok = torch.isfinite(d32) & (d32 > 0)
            d32 = torch.where(ok, d32, torch.ones_like(d32))
            w = unproject_depth_map_to_point_map(d32, e.float(), k.float())
            w = w.masked_fill(~ok[..., None], float("nan"))
        else:
            w = tensor(world_points)
        self.prediction = GeometryPrediction(
            depth=d.to(self.device, torch.float32),
            depth_conf=c.to(self.device, torch.float32),
            extrinsic=e.to(self.device, torch.float32),
            intrinsic=k.to(self.device, torch.float32),
            world_points=w.to(self.device, torch.float32),
        )

    def predict(self, images: torch.Tensor) -> GeometryPrediction:
        t, _, h, w = images.shape
        return self.prediction.validate(t, h, w)

