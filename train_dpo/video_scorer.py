"""Score candidate videos for 3-D geometric consistency (the VideoGPA reward), resumably.

VideoGPA (arXiv 2601.23286), stage 2 of the pipeline: candidate generation -> **geometry scorer**
-> latent encoding -> preference pairs -> Diffusion-DPO. For every candidate video,
``NUM_FRAMES`` frames are sampled uniformly, reconstructed by VGGT into one point cloud with
cameras, reprojected into every frame and compared (``pipelines.process_video.VideoProcessor``).

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
  than one), or independent shards (``--num_shards N --shard_index i`` each write
  ``<output>.shard<i>-of-<N>.json``; ``--merge`` joins them into the output);
* ``--save_visuals DIR``: per video the reprojected frames (PNG), ``side_by_side.mp4`` (frame |
  reprojection), both at the video's own size, and ``point_cloud.ply`` (binary little-endian: float
  x, y, z, uchar r, g, b; at most 200,000 points, a seeded random subsample, see
  ``pipelines.process_video.save_visuals``);
* LPIPS needs the VGG16 + LPIPS v0.1 weights (``--lpips_vgg_weights`` / ``--lpips_lin_weights``,
  env ``VIDEOGPA_LPIPS_VGG_WEIGHTS`` / ``VIDEOGPA_LPIPS_LIN_WEIGHTS``, or downloaded to the torch hub
  cache); when unavailable the run stops before scoring with instructions, unless ``--no_lpips``.

A video with fewer decodable frames than ``NUM_FRAMES`` (but at least 2) is scored with all of its
frames, recorded as ``num_frames_used``, with one warning per run naming how many videos.

Exit codes: 0 done (individual video failures are recorded, not fatal); 2 bad input / settings
(malformed or missing JSON, wrong structure, LPIPS weights unavailable, settings mismatch);
1 a worker crashed, or no video of the run could be scored (the first error is printed). Run as ``python train_dpo/video_scorer.py`` or ``python -m train_dpo.video_scorer``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from typing import Any, Iterable  # noqa: E402

from pipelines.geometry_models import DEFAULT_IMAGE_SIZE, GEOMETRY_MODELS, build_geometry_predictor  # noqa: E402
from utils.launcher import SHARD_HELP, launch_info  # noqa: E402
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
# covered pixels only. See pipelines/process_video.py.
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

SCORE_KEYS = ("consistency_score", "motion_norm", "motion_norm_released", "mse", "lpips", "coverage", "num_frames_used")
EXTRA_METRIC_KEYS = {"epipolar": ("epipolar", "epipolar_pairs_skipped")}  # metric -> video keys it writes
_EXTRA_KEYS = tuple(k for keys in EXTRA_METRIC_KEYS.values() for k in keys)
SETTINGS_KEY = "consistency_scorer"

logger = logging.getLogger("video_scorer")

__all__ = [
    "main",
    "build_argparser",
    "InputFormatError",
    "load_groups",
    "build_processor",
    "score_video_entry",
    "shard_output_path",
    "merge_shards",
    "SCORE_KEYS",
    "EXTRA_METRIC_KEYS",
]


class InputFormatError(ValueError):
    """The groups JSON is malformed or has the wrong structure (message names the file)."""


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
    launch = launch_info()
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


# ------------------------------------------------------------------------------------------------
# input / output helpers
# ------------------------------------------------------------------------------------------------


def load_groups(path: str | os.PathLike) -> tuple[Any, list]:
    """Read and validate the groups JSON.

    Returns:
        ``(data, groups)``: the parsed JSON (dict with ``"groups"`` or a list) and its group list.

    Raises:
        utils.io_utils.JSONInputError: missing/unreadable/malformed JSON (names file, line, column).
        InputFormatError: wrong structure (not a list / no ``"groups"`` list, a group that is not an
            object or has no ``"videos"`` list, a video entry that is not an object).
    """
    from utils.io_utils import read_json

    data = read_json(path)
    if isinstance(data, dict):
        groups = data.get("groups")
        if not isinstance(groups, list):
            raise InputFormatError(f'{path}: expected an object with a "groups" list (or a list of groups)')
    elif isinstance(data, list):
        groups = data
    else:
        raise InputFormatError(f"{path}: expected a JSON object or list, got {type(data).__name__}")
    for gi, g in enumerate(groups):
        if not isinstance(g, dict):
            raise InputFormatError(f"{path}: group #{gi} is a {type(g).__name__}, expected an object")
        if not isinstance(g.get("videos"), list):
            raise InputFormatError(f'{path}: group #{gi} ({g.get("group_id", "?")}) has no "videos" list')
        for vi, v in enumerate(g["videos"]):
            if not isinstance(v, dict):
                raise InputFormatError(
                    f"{path}: group #{gi} ({g.get('group_id', '?')}) video #{vi} is a {type(v).__name__}, "
                    'expected an object with "video_path"'
                )
    return data, groups


def _video_keys(groups: list) -> list[list[tuple]]:
    """Stable identity of every video: (group id, video path, occurrence) -- order-independent.

    A group without ``group_id`` is identified by its other (non-``videos``) fields, not by its
    position: a shard's output holds a subset of the groups, so positions differ from the input's.
    """
    seen: dict[tuple, int] = {}
    out = []
    for g in groups:
        if "group_id" in g:
            gid = str(g["group_id"])
        else:
            gid = "#" + json.dumps({k: v for k, v in g.items() if k != "videos"}, sort_keys=True, default=str)
        keys = []
        for vi, v in enumerate(g["videos"]):
            vp = v.get("video_path")
            base = (gid, str(vp) if vp is not None else f"#video{vi}")
            n = seen.get(base, 0)
            seen[base] = n + 1
            keys.append(base + (n,))
        out.append(keys)
    return out


def shard_output_path(output_json: str | os.PathLike, shard_index: int, num_shards: int) -> Path:
    """``out.json`` -> ``out.shard<i>-of-<N>.json`` (the file shard ``i`` of ``N`` writes)."""
    p = Path(output_json)
    return p.with_name(f"{p.stem}.shard{shard_index}-of-{num_shards}{p.suffix or '.json'}")


def _settings(args) -> dict[str, Any]:
    return {
        "num_frames": int(args.num_frames),
        "conf_thres": float(args.conf_thres),
        "points_source": str(args.points_source),
        "image_size": int(args.image_size),
        "geometry_model": str(args.geometry_model),
        "geometry_weights": str(geometry_weights(args)),
        "lpips": not args.no_lpips,
        "lpips_weight": float(args.lpips_weight) if not args.no_lpips else None,
        "extra_metrics": sorted(set(args.extra_metrics)),
    }


def geometry_weights(args) -> str:
    """The weights source of the selected geometry model (``--vggt_model`` or ``--da3_model``)."""
    return args.da3_model if args.geometry_model == "da3" else args.vggt_model


def resolve_image_size(args) -> None:
    """Fill ``args.image_size`` None with the geometry model's size (518 VGGT, 504 DA3)."""
    if args.image_size is None:
        args.image_size = DEFAULT_IMAGE_SIZE[args.geometry_model]


def _has_score(v: dict) -> bool:
    return isinstance(v, dict) and v.get("consistency_score") is not None and not v.get("error")


def _apply(video: dict, result: dict) -> None:
    """Write a score result (or error) into a video entry; extra-metric keys only when ``result`` has them."""
    if "error" in result:
        for k in SCORE_KEYS + _EXTRA_KEYS:
            video.pop(k, None)
        video["error"] = result["error"]
    else:
        video.pop("error", None)
        for k in SCORE_KEYS:
            video[k] = result[k]
        for k in _EXTRA_KEYS:  # not computed in this run: a stale value from the input goes
            if k in result:
                video[k] = result[k]
            else:
                video.pop(k, None)


def _stored_result(video: dict) -> dict:
    """The score keys of an already scored video entry (extra-metric keys only where recorded)."""
    return {k: video.get(k) for k in SCORE_KEYS} | {k: video[k] for k in _EXTRA_KEYS if k in video}


def _resolve_video(base: Path, video_path: str) -> Path:
    p = Path(video_path).expanduser()
    return p if p.is_absolute() else base / p


def _visuals_dir(root: str | None, group: dict, gi: int, video: dict, vi: int) -> str | None:
    if not root:
        return None
    from utils.io_utils import slugify

    gname = slugify(str(group.get("group_id", f"group{gi}")))
    stem = Path(str(video.get("video_path", f"video{vi}"))).stem
    vname = f"{vi:02d}_{slugify(stem)}"
    if "seed" in video:
        vname += f"_seed{slugify(str(video['seed']))}"
    return str(Path(root) / f"{gi:05d}_{gname}" / vname)


# ------------------------------------------------------------------------------------------------
# scoring
# ------------------------------------------------------------------------------------------------


def build_processor(args, device: str, lpips_module=None):
    """The :class:`pipelines.process_video.VideoProcessor` of one worker (VGGT on ``device``).

    ``lpips_module``: an already loaded LPIPS (moved to ``device``); None loads it from the args
    unless ``args.no_lpips``. Raises :class:`metrics.lpips.LPIPSWeightsError` when unavailable.
    """
    import torch

    from metrics.lpips_weights import load_lpips
    from pipelines.process_video import VideoProcessor

    lp = None
    if not args.no_lpips:
        lp = (
            lpips_module
            if lpips_module is not None
            else load_lpips(
                args.lpips_vgg_weights,
                args.lpips_lin_weights,
                device="cpu",
                allow_download=not args.no_download,
            )
        )
        lp = lp.to(device)
    da3 = args.geometry_model == "da3"
    predictor = build_geometry_predictor(
        args.geometry_model, geometry_weights(args), device=torch.device(device),
        config=args.da3_config if da3 else args.vggt_config, point_map=args.points_source == "point_head",
    )  # fmt: skip
    return VideoProcessor(
        predictor, lpips=lp, conf_thres=args.conf_thres, points_source=args.points_source,
        num_frames=args.num_frames, image_size=args.image_size, lpips_weight=args.lpips_weight,
    )  # fmt: skip


def score_video_entry(
    processor, video: dict, base: Path, visuals_dir: str | None = None, extra_metrics: Iterable[str] = ()
) -> dict[str, Any]:
    """Score one video entry; never raises for a bad video (only for KeyboardInterrupt etc.).

    ``extra_metrics``: names of :data:`EXTRA_METRIC_KEYS`; ``"epipolar"`` adds ``epipolar`` (float
    pixels, or None when every frame pair was skipped) and ``epipolar_pairs_skipped`` (int) from
    :func:`metrics.epipolar.epipolar_error` on the sampled frames (uint8, ``image_size`` square).

    Returns:
        ``{score keys..., "seconds": float}`` or ``{"error": message, "seconds": float}``.
    """
    t0 = time.perf_counter()
    vp = video.get("video_path")
    if vp is None or (isinstance(vp, str) and not vp.strip()):
        return {"error": 'video entry has no "video_path"', "seconds": 0.0}
    if not isinstance(vp, str):
        return {"error": f'"video_path" must be a string, got {type(vp).__name__}', "seconds": 0.0}
    path = _resolve_video(base, vp)
    try:
        epipolar = "epipolar" in extra_metrics
        res = processor.score_video(path, return_visuals=visuals_dir is not None or epipolar)
        res["num_frames_used"] = res["num_frames"]  # fewer than --num_frames for a shorter video
        out = {k: res[k] for k in SCORE_KEYS}
        if epipolar:
            from metrics.epipolar import epipolar_error

            epi = epipolar_error(res["visuals"]["frames"])
            out["epipolar"] = epi.mean_sampson if math.isfinite(epi.mean_sampson) else None
            out["epipolar_pairs_skipped"] = epi.pairs_skipped
        if visuals_dir is not None:
            from pipelines.process_video import save_visuals

            save_visuals(res, visuals_dir, fps=VISUALS_FPS)
    except Exception as e:  # noqa: BLE001 - a failing video is recorded and the run goes on
        msg = str(e) or type(e).__name__
        if type(e).__name__ not in ("VideoReadError",):
            msg = f"{type(e).__name__}: {msg}"
        if "out of memory" in msg.lower():
            try:
                import torch

                torch.cuda.empty_cache()
            except Exception:  # noqa: BLE001
                pass
        return {"error": msg, "seconds": time.perf_counter() - t0}
    out["seconds"] = time.perf_counter() - t0
    return out


def _worker(device: str, args_dict: dict, task_q, result_q) -> None:
    """Multi-device worker: build a processor on ``device``, score tasks until ``None``."""
    logging.basicConfig(
        level=args_dict.get("log_level", "INFO"), format=f"%(asctime)s [{device}] %(levelname)s: %(message)s"
    )
    args = argparse.Namespace(**args_dict)
    try:
        processor = build_processor(args, device)
    except BaseException as e:  # noqa: BLE001 - report to the parent, then stop
        result_q.put(("fatal", device, f"{type(e).__name__}: {e}"))
        return
    result_q.put(("ready", device, None))
    while True:
        task = task_q.get()
        if task is None:
            break
        gi, items = task
        for vi, video, base, vdir in items:
            res = score_video_entry(processor, video, Path(base), vdir, args.extra_metrics)
            result_q.put(("video", gi, (vi, res)))
        result_q.put(("group_done", gi, device))


def _configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.setLevel(level.upper())


def _default_devices() -> list[str]:
    """Every visible CUDA device (one worker each); under torchrun/srun only this process's GPU."""
    import torch

    if torch.cuda.is_available():
        local = launch_info().local_rank
        if local is not None:
            return [f"cuda:{local % torch.cuda.device_count()}"]
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def merge_shards(
    input_json: str | os.PathLike, shard_paths: Iterable[str | os.PathLike], output_json: str | os.PathLike
) -> dict[str, int]:
    """Join shard outputs into one output: the input JSON with every video's result from the shards.

    Returns counts ``{"videos", "scored", "failed", "missing"}``. Raises JSONInputError /
    InputFormatError for unreadable inputs, FileNotFoundError listing missing shard files.
    """
    from utils.io_utils import atomic_write_json

    data, groups = load_groups(input_json)
    keys = _video_keys(groups)
    shard_paths = [Path(p) for p in shard_paths]
    missing_files = [str(p) for p in shard_paths if not p.is_file()]
    if missing_files:
        raise FileNotFoundError(f"shard output(s) not found: {', '.join(missing_files)}")
    results: dict[tuple, dict] = {}
    settings = None
    for sp in shard_paths:
        sdata, sgroups = load_groups(sp)
        if isinstance(sdata, dict) and SETTINGS_KEY in sdata:
            settings = settings or sdata[SETTINGS_KEY]
        for g_keys, g in zip(_video_keys(sgroups), sgroups):
            for k, v in zip(g_keys, g["videos"]):
                if _has_score(v) or v.get("error"):
                    results[k] = v
    out = copy.deepcopy(data)
    out_groups = out["groups"] if isinstance(out, dict) else out
    counts = {"videos": 0, "scored": 0, "failed": 0, "missing": 0}
    for g_keys, g in zip(keys, out_groups):
        for k, v in zip(g_keys, g["videos"]):
            counts["videos"] += 1
            r = results.get(k)
            if r is None:
                counts["missing"] += 1
                continue
            if _has_score(r):
                _apply(v, _stored_result(r))
                counts["scored"] += 1
            else:
                _apply(v, {"error": r["error"]})
                counts["failed"] += 1
    if isinstance(out, dict) and settings is not None:
        out[SETTINGS_KEY] = settings
    atomic_write_json(output_json, out)
    return counts


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 ok, 1 worker crash, 2 bad input/settings)."""
    args = build_argparser().parse_args(argv)
    _configure_logging(args.log_level)
    quiet_expected_messages()
    from metrics.lpips import LPIPSWeightsError
    from metrics.lpips_weights import load_lpips
    from utils.io_utils import JSONInputError, atomic_write_json

    # ---- merge mode --------------------------------------------------------------------------
    if args.merge is not None:
        shard_files = args.merge or [
            shard_output_path(args.output_json, i, args.num_shards) for i in range(args.num_shards)
        ]
        try:
            counts = merge_shards(args.input_json, shard_files, args.output_json)
        except (JSONInputError, InputFormatError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"merged {len(shard_files)} shard(s) into {args.output_json}: {counts}")
        if counts["missing"]:
            logger.warning("%d video(s) have no result in any shard", counts["missing"])
        return 0

    # ---- validate arguments and input -------------------------------------------------------------
    if args.num_shards < 1 or not 0 <= args.shard_index < args.num_shards:
        print(
            f"error: need 0 <= --shard_index < --num_shards, got {args.shard_index} / {args.num_shards}",
            file=sys.stderr,
        )
        return 2
    if not 0 <= args.conf_thres < 100:
        print(f"error: --conf_thres is a percentile in [0, 100), got {args.conf_thres}", file=sys.stderr)
        return 2
    if args.num_frames < 2:
        print(f"error: --num_frames must be >= 2, got {args.num_frames}", file=sys.stderr)
        return 2
    resolve_image_size(args)
    if args.image_size % 14:
        print(
            f"error: --image_size must be a multiple of 14 (the patch size), got {args.image_size}",
            file=sys.stderr,
        )
        return 2
    try:
        data, groups = load_groups(args.input_json)
    except (JSONInputError, InputFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    base = Path(args.base_path) if args.base_path else Path(args.input_json).resolve().parent
    out_path = Path(args.output_json)
    if args.num_shards > 1:
        out_path = shard_output_path(out_path, args.shard_index, args.num_shards)
    settings = _settings(args)

    # ---- output skeleton, resume from an existing output ------------------------------------------
    keys = _video_keys(groups)
    shard_groups = [gi for gi in range(len(groups)) if gi % args.num_shards == args.shard_index]
    out = copy.deepcopy(data)
    out_groups = out["groups"] if isinstance(out, dict) else out
    if args.num_shards > 1:  # a shard's output holds its own groups only
        sel = [out_groups[gi] for gi in shard_groups]
        if isinstance(out, dict):
            out["groups"] = sel
        else:
            out = sel
        out_groups = sel
    if isinstance(out, dict):
        out[SETTINGS_KEY] = settings
    group_of = {gi: out_groups[j] for j, gi in enumerate(shard_groups)}

    previous: dict[tuple, dict] = {}
    if out_path.exists() and not args.overwrite:
        try:
            pdata, pgroups = load_groups(out_path)
        except (JSONInputError, InputFormatError) as e:
            print(
                f"error: existing output cannot be resumed ({e}); fix it or pass --overwrite", file=sys.stderr
            )
            return 2
        psettings = pdata.get(SETTINGS_KEY) if isinstance(pdata, dict) else None
        if psettings is not None:  # outputs written before extra metrics existed had none
            psettings = {"extra_metrics": [], **psettings}
        if psettings is not None and psettings != settings:
            diff = {
                k: (psettings.get(k), settings.get(k))
                for k in settings
                if psettings.get(k) != settings.get(k)
            }
            print(f"error: {out_path} was scored with different settings {diff} (old, new); "
                  "pass --overwrite or choose another --output_json", file=sys.stderr)  # fmt: skip
            return 2
        for g_keys, g in zip(_video_keys(pgroups), pgroups):
            for k, v in zip(g_keys, g["videos"]):
                previous[k] = v

    todo: dict[int, list[tuple[int, dict, str, str | None]]] = {}
    n_total = n_skipped = 0
    for gi in shard_groups:
        g = group_of[gi]
        for vi, v in enumerate(g["videos"]):
            n_total += 1
            prev = previous.get(keys[gi][vi])
            if prev is not None and _has_score(prev):
                _apply(v, _stored_result(prev))
                n_skipped += 1
                continue
            if prev is not None and prev.get("error") and not args.retry_errors:
                _apply(v, {"error": prev["error"]})
                n_skipped += 1
                continue
            todo.setdefault(gi, []).append((vi, v, str(base), _visuals_dir(args.save_visuals, g, gi, v, vi)))
    n_todo = sum(len(x) for x in todo.values())
    logger.info("%d video(s) in %d group(s): %d to score, %d already done (output %s)",
                n_total, len(shard_groups), n_todo, n_skipped, out_path)  # fmt: skip

    stats = {"scored": 0, "failed": 0, "skipped": n_skipped, "seconds": 0.0}
    t_run = time.perf_counter()
    if n_todo == 0:
        atomic_write_json(out_path, out)
        _summary(stats, time.perf_counter() - t_run, out_path)
        return _outcome(group_of, args.num_frames, out_path)

    devices = (
        [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else _default_devices()
    )

    # LPIPS availability is checked once, before any model is loaded (fails fast with instructions).
    lpips_module = None
    if not args.no_lpips:
        try:
            lpips_module = load_lpips(args.lpips_vgg_weights, args.lpips_lin_weights, device="cpu",
                                      allow_download=not args.no_download)  # fmt: skip
        except LPIPSWeightsError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    from tqdm import tqdm

    bar = tqdm(total=n_todo, desc="scoring", unit="video", disable=args.no_progress, file=sys.stderr)

    def record(gi: int, vi: int, res: dict) -> None:
        video = group_of[gi]["videos"][vi]
        stats["seconds"] += res.get("seconds", 0.0)
        _apply(video, res)
        if "error" in res:
            stats["failed"] += 1
            logger.warning(
                "group %s video %s: %s",
                group_of[gi].get("group_id", gi),
                video.get("video_path"),
                res["error"],
            )
        else:
            stats["scored"] += 1
        bar.update(1)

    try:
        if len(devices) == 1:
            try:
                processor = build_processor(args, devices[0], lpips_module)
            except Exception as e:  # noqa: BLE001 - e.g. VGGT weights not found
                print(
                    f"error: cannot build the scorer on {devices[0]}: {type(e).__name__}: {e}",
                    file=sys.stderr,
                )
                return 2
            for gi in sorted(todo):
                for vi, video, b, vdir in todo[gi]:
                    record(gi, vi, score_video_entry(processor, video, Path(b), vdir, args.extra_metrics))
                atomic_write_json(out_path, out)
        else:
            rc = _run_multi_device(args, devices, todo, record, lambda: atomic_write_json(out_path, out))
            if rc:
                return rc
    finally:
        bar.close()
    atomic_write_json(out_path, out)
    _summary(stats, time.perf_counter() - t_run, out_path)
    return _outcome(group_of, args.num_frames, out_path)


def _outcome(group_of: dict, num_frames: int, out_path: Path) -> int:
    """Warn once about videos scored with fewer frames; exit code 1 when no video has a score."""
    videos = [(g, v) for g in group_of.values() for v in g["videos"]]
    short = [v for _, v in videos if _has_score(v) and (v.get("num_frames_used") or num_frames) < num_frames]
    if short:
        logger.warning("%d video(s) have fewer than --num_frames %d decodable frames and were scored with all of "
                       "theirs (\"num_frames_used\" in %s), e.g. %s: %d frames", len(short), num_frames, out_path,
                       short[0].get("video_path"), short[0]["num_frames_used"])  # fmt: skip
    if videos and not any(_has_score(v) for _, v in videos):
        g, v = next(((g, v) for g, v in videos if v.get("error")), videos[0])
        print(f"error: none of the {len(videos)} video(s) could be scored; first error "
              f"(group {g.get('group_id', '?')}, {v.get('video_path')}): {v.get('error')}", file=sys.stderr)
        return 1
    return 0


def _run_multi_device(args, devices: list[str], todo: dict, record, write) -> int:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    task_q, result_q = ctx.Queue(), ctx.Queue()
    for gi in sorted(todo):
        task_q.put((gi, todo[gi]))
    for _ in devices:
        task_q.put(None)
    procs = [
        ctx.Process(target=_worker, args=(d, vars(args), task_q, result_q), daemon=True) for d in devices
    ]
    for p in procs:
        p.start()
    pending = set(todo)
    alive = len(procs)
    try:
        while pending:
            try:
                kind, a, b = result_q.get(timeout=5.0)
            except Exception:  # queue.Empty: check the workers are still alive
                if not any(p.is_alive() for p in procs):
                    print("error: all workers exited before finishing", file=sys.stderr)
                    return 1
                continue
            if kind == "fatal":
                alive -= 1
                logger.error("worker %s failed to start: %s", a, b)
                if alive == 0:
                    print(f"error: no worker could start (last: {b})", file=sys.stderr)
                    return 1
            elif kind == "video":
                vi, res = b
                record(a, vi, res)
            elif kind == "group_done":
                pending.discard(a)
                write()
        return 0
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()


def _summary(stats: dict, wall: float, out_path: Path) -> None:
    n = stats["scored"] + stats["failed"]
    per = stats["seconds"] / n if n else 0.0
    print(f"scored {stats['scored']}, skipped {stats['skipped']}, failed {stats['failed']}; "
          f"{per:.2f} s/video, wall {wall:.1f} s; output {out_path}")


if __name__ == "__main__":
    sys.exit(main())
