"""Score candidate videos for 3-D geometric consistency (the VideoGPA reward), resumably.

VideoGPA (arXiv 2601.23286), stage 2 of the pipeline: candidate generation -> **geometry scorer**
-> latent encoding -> preference pairs -> Diffusion-DPO. For every candidate video,
``NUM_FRAMES`` frames are sampled uniformly, reconstructed by VGGT into one point cloud with
cameras, reprojected into every frame and compared (``scoring.scorer.VideoProcessor``; the batch
run: ``scoring.batch``).

Input JSON (``INPUT_JSON``; video paths relative to ``BASE_PATH``, absolute ones used as is)::

    {"groups": [{"group_id": "...", "prompt": "...", "image_path": "...",   # image_path: I2V
                 "videos": [{"video_path": "x/seed0.mp4", "seed": 0}, ...]}, ...], ...}

or a plain list of such groups. Output JSON (``OUTPUT_JSON``): the input with, per video,
``consistency_score`` (mse + lpips, lower = more 3-D consistent), ``motion_norm``,
``motion_norm_released``, ``mse``, ``lpips`` (null with ``--no_lpips``), ``coverage``, ``num_frames_used``; or
``"error": "<message>"`` for a video that could not be scored (missing/corrupt file, too few
frames, no ``video_path``...). ``--extra_metrics epipolar`` adds ``epipolar`` (mean Sampson
distance in pixels of SIFT matches of consecutive sampled frames, :mod:`metrics.epipolar`, as
``evaluation/scoring.py`` computes it; null when every frame pair was skipped) and
``epipolar_pairs_skipped``, so pairs can be built from it (``METRIC_NAME = "epipolar"``,
``METRIC_MODE = "min"``: the paper's DPO-with-epipolar arm). Every other key
is preserved; a top-level ``"consistency_scorer"`` object (dict inputs only) records the settings
(including ``points_source``: ``POINTS_SOURCE = "point_head"`` is the released reward).

Behaviour:
* the output is rewritten atomically after every group, so an interrupted run loses at most the
  group in progress;
* a re-run reads the existing output and skips videos already scored (and, unless
  ``--retry_errors``, videos with a recorded error); settings must match (else exit 2, use
  ``--overwrite``);
* one worker per device (``--devices cuda:0,cuda:1``; processes started with ``spawn`` when more
  than one), or independent shards (``--num_shards N --shard_index i``: a contiguous block of the
  groups each, written to ``<output>.shard<i>of<N>.json``; ``--merge`` joins them into the output
  and refuses missing shards or shards scored with other settings; shard files of earlier versions,
  ``<output>.shard<i>-of-<N>.json``, still merge; ``utils.jobs``);
* ``--save_visuals DIR``: per video the reprojected frames (PNG), ``side_by_side.mp4`` (frame |
  reprojection), both at the video's own size, and ``point_cloud.ply`` (binary little-endian: float
  x, y, z, uchar r, g, b; at most 200,000 points, a seeded random subsample, see
  ``scoring.visuals.save_visuals``);
* LPIPS needs the VGG16 + LPIPS v0.1 weights (``--lpips_vgg_weights`` / ``--lpips_lin_weights``,
  env ``VIDEOGPA_LPIPS_VGG_WEIGHTS`` / ``VIDEOGPA_LPIPS_LIN_WEIGHTS``, or downloaded to the torch hub
  cache); when unavailable the run stops before scoring with instructions, unless ``--no_lpips``.

A video with fewer decodable frames than ``NUM_FRAMES`` (but at least 2) is scored with all of its
frames, recorded as ``num_frames_used``, with one warning per run naming how many videos.

Exit codes: 0 done (individual video failures are recorded, not fatal); 2 bad input / settings
(malformed or missing JSON, wrong structure, LPIPS weights unavailable, settings mismatch,
inconsistent torchrun/srun variables, missing shard at ``--merge``);
1 a worker crashed, no video of the run could be scored (the first error is printed), or
``--merge`` found videos with no result in any shard (an unfinished shard).
Run as ``python train_dpo/video_scorer.py`` or ``python -m train_dpo.video_scorer``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import logging  # noqa: E402
from typing import Any, Mapping  # noqa: E402

from scoring.geometry_models import GEOMETRY_MODELS  # noqa: E402
from scoring.groups import EXTRA_METRIC_KEYS  # noqa: E402
from utils.config_cli import apply_constants  # noqa: E402
from utils.jobs import launch_defaults  # noqa: E402
from utils.launcher import SHARD_HELP  # noqa: E402
from utils.log_filters import quiet_expected_messages  # noqa: E402

# ------------------------------------------------------------------------------------------------
# Configuration (every constant can be overridden on the command line)
# ------------------------------------------------------------------------------------------------
INPUT_JSON = "outputs/candidates/groups.json"  # candidate groups (see module docstring)
OUTPUT_JSON = "outputs/candidates/groups_scored.json"  # same + scores
BASE_PATH = None  # video paths are relative to this; None: the folder of INPUT_JSON
NUM_FRAMES = 10  # frames sampled uniformly per video (first and last included)
CONF_THRES = 0  # depth-confidence percentile filter in [0, 100); 0 keeps every point
# "point_head": VGGT's point map reprojected with the camera head's cameras, black holes counted
# (the released VideoGPA reward); "depth": depth head unprojected with the cameras, metrics on
# covered pixels only. See scoring/scorer.py.
POINTS_SOURCE = "point_head"
GEOMETRY_MODEL = "vggt"  # vggt (released training rewards) | da3 (Depth Anything 3, the released benchmark's)
VGGT_MODEL = "facebook/VGGT-1B"  # hub id, local folder, or single weights file (+ VGGT_CONFIG)
VGGT_CONFIG = None  # VGGT config (JSON path) for single-file VGGT_MODEL
DA3_MODEL = "depth-anything/DA3-LARGE"  # hub id, local folder, or single weights file (+ DA3_CONFIG)
DA3_CONFIG = None  # DA3 config (JSON path) for single-file DA3_MODEL
IMAGE_SIZE = None  # square frame side fed to the geometry model (multiple of 14); None: 518 VGGT, 504 DA3
DEVICES = None  # e.g. ["cuda:0", "cuda:1"]; None: every visible CUDA device, else ["cpu"]
LPIPS_VGG_WEIGHTS = None  # None: $VIDEOGPA_LPIPS_VGG_WEIGHTS, else torchvision URL (hub cache)
LPIPS_LIN_WEIGHTS = None  # None: $VIDEOGPA_LPIPS_LIN_WEIGHTS, else PerceptualSimilarity URL
LPIPS_WEIGHT = 1.0  # consistency_score = mse + LPIPS_WEIGHT * lpips
VISUALS_FPS = 2.0  # frame rate of the side-by-side visual mp4
EXTRA_METRICS = ()  # more per-video metrics, any of EXTRA_METRIC_KEYS: ("epipolar",)

logger = logging.getLogger("video_scorer")

__all__ = ["main", "build_argparser"]


# ------------------------------------------------------------------------------------------------
# argument parsing
# ------------------------------------------------------------------------------------------------


def build_argparser() -> argparse.ArgumentParser:
    """The command-line interface; defaults are the module constants."""
    p = argparse.ArgumentParser(
        prog="video_scorer",
        description="Score candidate videos for 3-D consistency (VGGT reprojection MSE + LPIPS).",
    )
    p.add_argument("--input_json", default=INPUT_JSON, help="candidate groups JSON")
    p.add_argument("--output_json", default=OUTPUT_JSON, help="scored JSON (also read to resume)")
    p.add_argument(
        "--base_path", default=BASE_PATH, help="video paths are relative to this (default: input JSON folder)"
    )
    p.add_argument("--num_frames", type=int, default=NUM_FRAMES)
    p.add_argument(
        "--conf_thres", type=float, default=CONF_THRES, help="confidence percentile filter [0, 100)"
    )
    p.add_argument(
        "--points_source", choices=("point_head", "depth"), default=POINTS_SOURCE,
        help="point_head: the released reward (point map, black holes); depth: depth head, covered pixels",
    )  # fmt: skip
    p.add_argument("--geometry_model", choices=GEOMETRY_MODELS, default=GEOMETRY_MODEL,
                   help="geometry backbone: vggt (VGGT-1B) or da3 (Depth Anything 3)")  # fmt: skip
    p.add_argument("--vggt_model", default=VGGT_MODEL, help="VGGT: hub id, folder or weights file")
    p.add_argument("--vggt_config", default=VGGT_CONFIG, help="VGGT config JSON for a single weights file")
    p.add_argument("--da3_model", default=DA3_MODEL, help="DA3: hub id, folder or weights file")
    p.add_argument("--da3_config", default=DA3_CONFIG, help="DA3 config JSON for a single weights file")
    p.add_argument("--image_size", type=int, default=IMAGE_SIZE,
                   help="square frame side (multiple of 14); default 518 for VGGT, 504 for DA3")  # fmt: skip
    p.add_argument(
        "--devices",
        default=",".join(DEVICES) if DEVICES else None,
        help="comma-separated devices, one worker each (default: all CUDA devices, else cpu)",
    )
    launch, launch_error = launch_defaults()  # an inconsistent environment is reported by main (exit 2)
    p.set_defaults(launch_error=launch_error)
    p.add_argument("--num_shards", type=int, default=launch.num_shards,
                   help=f"split the groups into N shards ({SHARD_HELP})")
    p.add_argument("--shard_index", type=int, default=launch.shard_index, help="which shard this process scores")
    p.add_argument(
        "--merge",
        nargs="*",
        default=None,
        metavar="SHARD_JSON",
        help="merge shard outputs into --output_json (no paths: the --num_shards default names)",
    )
    p.add_argument(
        "--save_visuals", default=None, metavar="DIR", help="write PNGs, side-by-side mp4 and PLY per video"
    )
    p.add_argument("--visuals_fps", type=float, default=VISUALS_FPS, help="frame rate of the side-by-side mp4")
    p.add_argument(
        "--lpips_vgg_weights",
        default=LPIPS_VGG_WEIGHTS,
        help="VGG16 weights (vgg16-397923af.pth) path or URL",
    )
    p.add_argument(
        "--lpips_lin_weights", default=LPIPS_LIN_WEIGHTS, help="LPIPS v0.1 lin weights (vgg.pth) path or URL"
    )
    p.add_argument("--no_lpips", action="store_true", help="disable LPIPS (lpips = null, score = mse)")
    p.add_argument("--no_download", action="store_true", help="never download LPIPS weights")
    p.add_argument("--lpips_weight", type=float, default=LPIPS_WEIGHT)
    p.add_argument(
        "--extra_metrics", nargs="*", choices=tuple(EXTRA_METRIC_KEYS), default=list(EXTRA_METRICS),
        help="more per-video metrics (epipolar: mean Sampson distance of the sampled frames, px)",
    )  # fmt: skip
    p.add_argument("--retry_errors", action="store_true", help="re-score videos that have a recorded error")
    p.add_argument("--overwrite", action="store_true", help="ignore an existing output (score everything)")
    p.add_argument("--no_progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--log_level", default="INFO")
    return p


def _configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.setLevel(level.upper())


def main(argv: list[str] | None = None, constants: Mapping[str, Any] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 ok, 1 worker crash or incomplete
    merge, 2 bad input/settings).

    ``constants``: a per-model ``02_score.py``'s UPPER_CASE constants (``{"INPUT_JSON": ...}``), the
    defaults of the options of the same name (``utils.config_cli.apply_constants``: a name that is
    no option exits 2 naming the nearest); ``argv`` wins.
    """
    parser = build_argparser()
    apply_constants(parser, constants or {})
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    quiet_expected_messages()
    if args.launch_error:
        print(f"error: {args.launch_error}", file=sys.stderr)
        return 2
    from scoring.batch import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
