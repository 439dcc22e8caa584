"""Processing pipelines of VideoGPA.

:mod:`pipelines.process_video` -- geometry-consistency scoring of a video (frames -> VGGT ->
point cloud -> reprojection -> MSE + LPIPS).
"""

from .process_video import (
    GeometryPrediction,
    GeometryPredictor,
    OraclePredictor,
    ScoringError,
    VGGTPredictor,
    VideoProcessor,
    build_point_cloud,
    confidence_mask,
    frames_to_tensor,
    reproject_points,
    save_visuals,
    write_ply,
)

__all__ = [
    "GeometryPrediction",
    "GeometryPredictor",
    "OraclePredictor",
    "ScoringError",
    "VGGTPredictor",
    "VideoProcessor",
    "build_point_cloud",
    "confidence_mask",
    "frames_to_tensor",
    "reproject_points",
    "save_visuals",
    "write_ply",
]
