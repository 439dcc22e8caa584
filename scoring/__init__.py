"""Geometry-consistency scoring of videos: the VideoGPA reward (arXiv 2601.23286).

One concept per module:

* :mod:`scoring.geometry` -- what a geometry predictor returns (:class:`GeometryPrediction`), the
  predictor interface, the shared setup of the learned predictors, the oracle predictor;
* :mod:`scoring.vggt_predictor`, :mod:`scoring.da3_predictor` -- VGGT and Depth Anything 3;
  :mod:`scoring.geometry_models` -- one builder for either (``build_geometry_predictor``);
* :mod:`scoring.reprojection` -- confidence filter, point cloud, deterministic z-buffer renderer;
* :mod:`scoring.scorer` -- the per-video scorer (:class:`VideoProcessor`: frames -> geometry ->
  reprojection -> MSE + LPIPS, motion), the pipeline described in its docstring;
* :mod:`scoring.visuals` -- reprojected PNGs, side-by-side video, PLY point cloud;
* :mod:`scoring.groups` -- the groups JSON of the batch scorer (reading, video identity, results);
* :mod:`scoring.batch` -- the batch run behind ``train_dpo/video_scorer.py`` (settings check,
  resume, shards, one worker per device).
"""

from .geometry import GeometryPrediction, GeometryPredictor, ModelPredictor, OraclePredictor
from .reprojection import POINTS_SOURCES, build_point_cloud, confidence_mask, reproject_points
from .scorer import ScoringError, VideoProcessor, frames_to_tensor
from .vggt_predictor import VGGTPredictor
from .visuals import save_visuals, write_ply

__all__ = [
    "POINTS_SOURCES",
    "GeometryPrediction",
    "GeometryPredictor",
    "ModelPredictor",
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
