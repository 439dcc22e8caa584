"""The batch run of the geometry scorer behind ``train_dpo/video_scorer.py``: groups JSON in, scored JSON out.

:func:`run` takes the parsed command line (the options of ``train_dpo/video_scorer.py``) and

* checks the settings (confidence percentile, frame count, image size multiple of 14) and the input;
* builds the output skeleton for this shard (:func:`utils.jobs.shard_range`: a contiguous block of
  the groups, written to :func:`utils.jobs.shard_path` of the output when ``--num_shards > 1``);
* resumes from an existing output: videos already scored (and, unless ``--retry_errors``, videos
  with a recorded error) are kept; an output scored with other settings is refused (exit 2);
* scores the rest on one device, or one worker per device (:mod:`scoring.workers`), rewriting the
  output atomically after every group;
* ``--merge``: joins the shard outputs (:func:`scoring.groups.merge_shards`).

Exit codes: 0 done (failed videos are recorded, not fatal); 2 bad input / settings; 1 a worker
crashed, or no video of the run could be scored.
"""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from .geometry_models import DEFAULT_IMAGE_SIZE, build_geometry_predictor
from .groups import (
    SCORE_KEYS,
    SETTINGS_KEY,
    InputFormatError,
    apply_result,
    has_score,
    load_groups,
    merge_shards,
    stored_result,
    video_keys,
)

logger = logging.getLogger("video_scorer")

__all__ = ["run", "build_processor", "score_video_entry", "geometry_weights", "resolve_image_size"]


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


def build_processor(args, device: str, lpips_module=None):
    """The :class:`scoring.scorer.VideoProcessor` of one worker (the geometry model on ``device``).

    ``lpips_module``: an already loaded LPIPS (moved to ``device``); None loads it from the args
    unless ``args.no_lpips``. Raises :class:`metrics.lpips.LPIPSWeightsError` when unavailable.
    """
    from metrics.lpips_weights import load_lpips
    from .scorer import VideoProcessor

    lp = None
    if not args.no_lpips:  # VideoProcessor moves it to the predictor's device
        lp = lpips_module if lpips_module is not None else load_lpips(
            args.lpips_vgg_weights, args.lpips_lin_weights, device="cpu", allow_download=not args.no_download)
    da3 = args.geometry_model == "da3"
    predictor = build_geometry_predictor(
        args.geometry_model, geometry_weights(args), device=device,
        config=args.da3_config if da3 else args.vggt_config, point_map=args.points_source == "point_head",
    )  # fmt: skip
    return VideoProcessor(
        predictor, lpips=lp, conf_thres=args.conf_thres, points_source=args.points_source,
        num_frames=args.num_frames, image_size=args.image_size, lpips_weight=args.lpips_weight,
    )  # fmt: skip


def score_video_entry(
    processor, video: dict, base: Path, visuals_dir: str | None = None, extra_metrics: Iterable[str] = (),
    visuals_fps: float = 2.0,
) -> dict[str, Any]:
    """Score one video entry; never raises for a bad video (only for KeyboardInterrupt etc.).

    ``extra_metrics``: names of :data:`EXTRA_METRIC_KEYS`; ``"epipolar"`` adds ``epipolar`` (float
    pixels, or None when every frame pair was skipped) and ``epipolar_pairs_skipped`` (int) from
    :func:`metrics.epipolar.epipolar_error` on the sampled frames (uint8, ``image_size`` square).

    Returns:
        ``{score keys..., "seconds": float}`` or ``{"error": message, "seconds": float}``.
    """
    from utils.video_utils import VideoReadError

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
            from .visuals import save_visuals

            save_visuals(res, visuals_dir, fps=visuals_fps)
    except Exception as e:  # noqa: BLE001 - a failing video is recorded and the run goes on
        msg = str(e) or type(e).__name__
        if not isinstance(e, VideoReadError):  # its message already names the file and the problem
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


def run(args) -> int:
    """Score (or ``--merge``) as the parsed ``train_dpo/video_scorer.py`` command line says.

    Returns the exit code (0 done, 1 worker crash, nothing scored or a merge missing videos, 2 bad
    input or settings).
    """
    from metrics.lpips import LPIPSWeightsError
    from metrics.lpips_weights import load_lpips
    from utils.io_utils import JSONInputError, atomic_write_json
    from utils.jobs import ShardError, check_shard, find_shards, shard_path, shard_range

    from .workers import default_devices, run_multi_device

    # ---- merge mode --------------------------------------------------------------------------
    if args.merge is not None:
        try:
            k = args.num_shards if args.num_shards > 1 else None  # 1: the one shard count on disk
            shard_files = args.merge or find_shards(args.output_json, k)
            counts = merge_shards(args.input_json, shard_files, args.output_json)
        except (JSONInputError, InputFormatError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"merged {len(shard_files)} shard(s) into {args.output_json}: {counts}")
        if counts["missing"]:  # an unfinished shard: the merged file is incomplete, not done
            print(f"error: {counts['missing']} video(s) have no result in any shard (unfinished shard?); "
                  "re-run that shard, then --merge again (or score the merged file: it resumes)",
                  file=sys.stderr)  # fmt: skip
            return 1
        return 0

    # ---- validate arguments and input -------------------------------------------------------------
    try:
        check_shard(args.shard_index, args.num_shards)
    except ShardError as e:
        print(f"error: {e}", file=sys.stderr)
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
        out_path = shard_path(out_path, args.shard_index, args.num_shards)
    settings = _settings(args)

    # ---- output skeleton, resume from an existing output ------------------------------------------
    keys = video_keys(groups)
    shard_groups = list(shard_range(len(groups), args.shard_index, args.num_shards))
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
        for g_keys, g in zip(video_keys(pgroups), pgroups):
            for k, v in zip(g_keys, g["videos"]):
                previous[k] = v

    todo: dict[int, list[tuple[int, dict, str, str | None]]] = {}
    n_total = n_skipped = 0
    for gi in shard_groups:
        g = group_of[gi]
        for vi, v in enumerate(g["videos"]):
            n_total += 1
            prev = previous.get(keys[gi][vi])
            if prev is not None and has_score(prev):
                apply_result(v, stored_result(prev))
                n_skipped += 1
                continue
            if prev is not None and prev.get("error") and not args.retry_errors:
                apply_result(v, {"error": prev["error"]})
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
        [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else default_devices()
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
        apply_result(video, res)
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
                    record(gi, vi, score_video_entry(processor, video, Path(b), vdir, args.extra_metrics,
                                                     args.visuals_fps))
                atomic_write_json(out_path, out)
        else:
            rc = run_multi_device(args, devices, todo, record, lambda: atomic_write_json(out_path, out))
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
    short = [v for _, v in videos if has_score(v) and (v.get("num_frames_used") or num_frames) < num_frames]
    if short:
        logger.warning("%d video(s) have fewer than --num_frames %d decodable frames and were scored with all of "
                       "theirs (\"num_frames_used\" in %s), e.g. %s: %d frames", len(short), num_frames, out_path,
                       short[0].get("video_path"), short[0]["num_frames_used"])  # fmt: skip
    if videos and not any(has_score(v) for _, v in videos):
        g, v = next(((g, v) for g, v in videos if v.get("error")), videos[0])
        print(f"error: none of the {len(videos)} video(s) could be scored; first error "
              f"(group {g.get('group_id', '?')}, {v.get('video_path')}): {v.get('error')}", file=sys.stderr)
        return 1
    return 0


def _summary(stats: dict, wall: float, out_path: Path) -> None:
    n = stats["scored"] + stats["failed"]
    per = stats["seconds"] / n if n else 0.0
    print(f"scored {stats['scored']}, skipped {stats['skipped']}, failed {stats['failed']}; "
          f"{per:.2f} s/video, wall {wall:.1f} s; output {out_path}")
