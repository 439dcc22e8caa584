"""The geometry backbones of the scorer, the evaluation and the test-time verifier: one builder.

``GEOMETRY_MODELS``: ``"vggt"`` (VGGT-1B, :class:`scoring.vggt_predictor.VGGTPredictor`; camera
head + depth head + point head, the backbone of the released training rewards) and ``"da3"``
(Depth Anything 3, :class:`scoring.da3_predictor.DA3Predictor`; depth head + camera decoder, the
backbone of the released benchmark scores, ``replicate_scorer.py``). Both return a
:class:`scoring.geometry.GeometryPrediction` with the same conventions (camera-from-world
OpenCV extrinsics, intrinsics in pixels of the input), so every consumer takes either.

Per backbone: the default weights (hub id) and the square frame side it is run at: 518 px for
VGGT (its training size), 504 px for DA3 (the reference preprocessing's upper bound,
``depth_anything_3.preprocess``; the released evaluation resizes its 518 px frames to 504 before
DA3, we sample the frames at 504 directly -- one area resize instead of two).
"""

from __future__ import annotations

import os

import torch

__all__ = ["GEOMETRY_MODELS", "DEFAULT_WEIGHTS", "DEFAULT_IMAGE_SIZE", "build_geometry_predictor"]

GEOMETRY_MODELS = ("vggt", "da3")
DEFAULT_WEIGHTS = {"vggt": "facebook/VGGT-1B", "da3": "depth-anything/DA3-LARGE"}
DEFAULT_IMAGE_SIZE = {"vggt": 518, "da3": 504}


def build_geometry_predictor(
    model: str = "vggt",
    weights: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    config: str | os.PathLike | None = None,
    point_map: bool = True,
):
    """Load the geometry predictor ``model`` from ``weights``.

    Args:
        model: one of :data:`GEOMETRY_MODELS`.
        weights: hub id, local folder (``config.json`` + ``model.safetensors``) or single weights
            file; None: :data:`DEFAULT_WEIGHTS` of ``model``.
        device: None: CUDA when available, else CPU.
        config: config JSON of a single weights file.
        point_map: VGGT only: keep the point head (needed by ``points_source="point_head"``);
            False drops it (the ``"depth"`` reward needs only depth and cameras). DA3 always
            supplies its point map (depth unprojected with its own cameras).

    Returns:
        an object with ``predict(images [T, 3, H, W] in [0, 1]) -> GeometryPrediction``.

    Raises:
        ValueError: unknown ``model``; loading errors of :func:`vggt.load_vggt` /
        :func:`depth_anything_3.load_da3` (missing files, unavailable hub) propagate.
    """
    if model not in GEOMETRY_MODELS:
        raise ValueError(f"unknown geometry model {model!r}; choose from {GEOMETRY_MODELS}")
    weights = str(weights) if weights is not None else DEFAULT_WEIGHTS[model]
    device = torch.device(device) if device is not None else None
    if model == "vggt":
        from scoring.vggt_predictor import VGGTPredictor

        return VGGTPredictor(weights, device=device, config=config, drop_point_head=not point_map)
    from scoring.da3_predictor import DA3Predictor

    return DA3Predictor(weights, device=device, config=config)
