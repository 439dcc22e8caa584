"""The replication run of ``evaluate.py``: generate every arm, score every video, summarise.

Steps (each resumable; see ``evaluate.py`` for the command line):

1. settings = the script's constants, then the preset's values for what is still None, then flags;
2. arms (``evaluation.arms``): ``original`` + adapter arms; an arm without adapter path is skipped
   with a message, an arm whose adapter is missing/malformed gets an error row per video;
3. prompts: captions/prompts JSON (T2V) or a first-frame folder with ``captions.json`` (I2V,
   ``data_prep.generate_i2v_prompts``); bad entries get error rows; ``--num_shards/--shard_index``
   take a contiguous block of prompts;
4. generation per arm (``evaluation.generation``), skipped with ``--score_only`` (then the videos
   are discovered in ``--videos_dir``, released naming accepted);
5. scoring (``evaluation.scoring``): one row per video appended to ``scores.csv`` (or the shard's
   ``scores.shard<i>of<K>.csv``), rewritten atomically after every video; rows already present are
   kept (``--retry_errors`` re-does the error rows) when the run's settings match the CSV's
   settings record (``evaluation.run_settings``; else exit 2, or ``--overwrite`` starts over);
   out-of-memory / CUDA errors stop the run instead of becoming error rows
   (``evaluation.device_errors``);
6. ``summary.json``, ``summary.md`` and plots (``evaluation.summary``); sharded runs summarise after
   ``--merge`` (shards ``0..K-1`` of ``--num_shards K``). Under ``torchrun``/``srun`` the shard
   defaults come from the launcher (``utils.launcher``), so one command runs every shard.

Exit codes: 0 done (per-video errors are recorded in scores.csv and counted at the end), 2 bad
input or settings, 1 failure (a crash, no video could be scored, or shards missing at ``--merge``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping, Sequence

logger = logging.getLogger("evaluate")

__all__ = ["build_parser", "main", "resolve_settings"]


def _floats(text: str) -> list[float]:
    return [float(x) for x in str(text).split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in str(text).split(",") if x.strip()]


def build_parser(constants: Mapping[str, Any] | None = None) -> argparse.ArgumentParser:
    """Command line of ``evaluate.py``.

    Args:
        constants: the script's constants but ``ARMS`` (``{"PRESET": "cogvideox-5b", ...}``), defaults
            of the options of the same name (None = the preset's value).

    Raises:
        SystemExit(2): a constant names no option (message naming it and the nearest option).
    """
    from evaluation.presets import PRESETS, REPO_ROOT
    from scoring.reprojection import POINTS_SOURCES
    from utils.config_cli import apply_constants
    from utils.launcher import SHARD_HELP, launch_info

    p = argparse.ArgumentParser(description="VideoGPA evaluation: base model vs adapters, paired statistics.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--output_dir", default=None, help="default: runs/evaluate/<preset>")
    p.add_argument("--videos_dir", default=None, help="default: <output_dir>/videos")
    p.add_argument("--base_model", default=None)
    p.add_argument("--kind", choices=("t2v", "i2v"), default=None)
    p.add_argument("--prompts_json", default=None, help="captions or prompts JSON (T2V, or I2V with image_prompt)")
    p.add_argument("--images_dir", default=None, help="I2V: folder of first frames (+ captions.json)")
    p.add_argument("--num_prompts", type=int, default=None)
    p.add_argument("--seeds", type=_ints, default=None, help="comma list, e.g. 456 or 0,1,2")
    p.add_argument("--lora_weights", type=_floats, default=None, help="comma list, e.g. 0.2,0.5,1.0")
    p.add_argument("--arm", action="append", default=[], metavar="NAME=ADAPTER",
                   help="adapter arm (repeatable), e.g. dpo=checkpoints/VideoGPA-T2V-lora; NAME= skips the arm")
    p.add_argument("--num_inference_steps", type=int, default=None)
    p.add_argument("--guidance_scale", type=float, default=None)
    p.add_argument("--fps", type=float, default=None)
    p.add_argument("--num_frames", type=int, default=None, help="video frames (default: the checkpoint's)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--gpu_id", type=int, default=None)
    p.add_argument("--offload", choices=("none", "model", "sequential"), default="none")
    p.add_argument("--score_num_frames", type=int, default=None, help="frames per video for geometry metrics")
    p.add_argument("--image_size", type=int, default=None)
    p.add_argument("--conf_thres", type=float, default=None)
    p.add_argument("--points_source", choices=POINTS_SOURCES, default=None,
                   help="world points of the reprojection: point_head (released reward) or depth (tiny preset)")
    p.add_argument("--mask_uncovered", action=argparse.BooleanOptionalAction, default=False,
                   help="metrics on covered pixels only (default off: released, holes black and counted)")
    p.add_argument("--lpips_weight", type=float, default=1.0)
    p.add_argument("--geometry_model", default=None, help="geometry backbone: vggt or da3 (released benchmark: da3)")
    p.add_argument("--geometry_weights", default=None, help="hub id, folder or weights file")
    p.add_argument("--lpips_vgg_weights", default=None)
    p.add_argument("--lpips_lin_weights", default=None)
    p.add_argument("--device", default=None, help="scoring device (default: CUDA if available)")
    p.add_argument("--bootstrap_resamples", type=int, default=None)
    p.add_argument("--score_only", action="store_true", help="score the videos in --videos_dir, generate nothing")
    p.add_argument("--retry_errors", action="store_true", help="redo rows of scores.csv that have an error")
    p.add_argument("--overwrite", action="store_true",
                   help="settings differ from the scores CSV's record: discard its rows (and, when generation "
                        "settings changed, this run's videos) and start over")
    launch = launch_info()
    p.add_argument("--num_shards", type=int, default=launch.num_shards, help=f"split the prompts into K shards ({SHARD_HELP})")
    p.add_argument("--shard_index", type=int, default=launch.shard_index, help="which shard this process runs")
    p.add_argument("--merge", action="store_true", help="join the shard CSVs into scores.csv and summarise")
    p.add_argument("--summarize", metavar="CSV", default=None,
                   help="only summarise this scores CSV (this project's or the released one) into --output_dir")
    p.add_argument("--tiny_root", default=str(REPO_ROOT / "checkpoints" / "tiny"))
    apply_constants(p, constants or {})
    return p


def resolve_settings(args: argparse.Namespace, constants_arms: Mapping[str, str | None]) -> tuple[argparse.Namespace, dict, list[str]]:
    """Fill None settings from the preset; build the tiny assets. Returns (settings, arm specs, notes)."""
    from evaluation.presets import PRESETS, REPO_ROOT, prepare_tiny

    s = argparse.Namespace(**vars(args))
    preset = PRESETS[s.preset]
    for k, v in preset.items():
        if k != "arms" and getattr(s, k, None) is None:
            setattr(s, k, v)
    s.output_dir = Path(s.output_dir or REPO_ROOT / "runs" / "evaluate" / s.preset)
    s.videos_dir = Path(s.videos_dir or s.output_dir / "videos")
    arms: dict[str, str | None] = dict(preset.get("arms", {}))
    arms.update({k: v for k, v in constants_arms.items() if v is not None or k not in arms})
    for spec in s.arm:
        if "=" in spec:
            name, path = spec.split("=", 1)
            arms[name.strip()] = path.strip() or None
        else:
            arms[spec] = arms.get(spec)  # validated by parse_arm_specs
    from evaluation.scoring import GEOMETRY_MODELS

    if s.geometry_model not in GEOMETRY_MODELS:
        raise ValueError(f"--geometry_model {s.geometry_model!r}: choose from {GEOMETRY_MODELS}")
    notes = []
    if s.preset == "tiny":
        need_adapter = not arms.get("dpo") and not s.score_only and not s.merge
        tiny = prepare_tiny(s.output_dir / "tiny_assets", s.tiny_root, base_model=s.base_model,
                            vggt=s.geometry_weights is None, lpips=s.lpips_vgg_weights is None, adapter=need_adapter)
        for k, v in tiny.items():
            if k != "random_adapter" and getattr(s, k) is None:
                setattr(s, k, v)
        notes.append("tiny preset: random tiny models and random LPIPS weights; the numbers test the code "
                     "and mean nothing.")
        if need_adapter:
            arms["dpo"] = tiny["random_adapter"]
            notes.append(f"arm `dpo` is a seeded random LoRA adapter built for this run ({tiny['random_adapter']}); "
                         "give --arm dpo=PATH for a trained one, e.g. the demo's runs/demo/t2v/dpo/final_lora.")
    return s, arms, notes


def _row(key, prompt: str, path: str, error: str | None = None, metrics: Mapping | None = None) -> dict:
    return {"prompt_id": key.prompt_id, "prompt": prompt, "seed": key.seed, "arm": key.arm,
            "lora_weight": key.lora_weight, "video_path": path, **(metrics or {}), "error": error or ""}


def _prompt_items(s) -> list:
    from evaluation.arms import load_prompt_items

    if s.kind == "i2v" and s.images_dir and not s.prompts_json:
        from data_prep.generate_i2v_prompts import generate_i2v_prompts
        from utils.io_utils import atomic_write_json

        prompts = generate_i2v_prompts(s.images_dir)
        s.prompts_json = str(s.output_dir / "prompts_i2v.json")
        atomic_write_json(s.prompts_json, prompts)
    if not s.prompts_json:
        raise FileNotFoundError("no prompts: give --prompts_json (captions/prompts JSON) or --images_dir (I2V)")
    return load_prompt_items(s.prompts_json, s.num_prompts, need_image=(s.kind == "i2v"))


def _build_evaluator(s):
    from evaluation.scoring import ScoringSettings, VideoEvaluator
    from metrics.lpips_weights import load_lpips

    settings = ScoringSettings(geometry_model=s.geometry_model, geometry_weights=s.geometry_weights,
                               num_frames=s.score_num_frames, image_size=s.image_size, conf_thres=s.conf_thres,
                               points_source=s.points_source, mask_uncovered=s.mask_uncovered,
                               lpips_weight=s.lpips_weight, device=s.device)
    lp = load_lpips(s.lpips_vgg_weights, s.lpips_lin_weights, device=s.device or "cpu")
    return VideoEvaluator(settings, lp)


def _plan(s, arms, items) -> tuple[list, dict]:
    """(todo [(VideoKey, prompt, path)], error rows {key: row}) for generate-and-score mode."""
    from evaluation.arms import adapter_error, arm_video_keys
    from evaluation.generation import GenerationSettings, generate_arm

    todo, errors = [], {}
    gen = GenerationSettings(s.base_model, s.kind, s.num_inference_steps, s.guidance_scale, s.fps,
                             s.num_frames, s.height, s.width, s.gpu_id, s.offload)
    for arm in arms:
        keys = arm_video_keys(arm, items, s.seeds)
        arm_err = adapter_error(arm)
        if arm_err:
            logger.error("%s: its videos are recorded with this error", arm_err)
        gen_err = {}
        if not arm_err:
            gen_err = generate_arm(gen, arm, items, s.seeds, s.videos_dir)
        for key, it in keys:
            path = str(s.videos_dir / key.prompt_id / key.name)
            err = it.error or arm_err or gen_err.get(key)
            if err:
                errors[key] = _row(key, it.prompt, path, err)
            else:
                todo.append((key, it.prompt, path))
    return todo, errors


def _discover(s, items_by_pid: dict) -> list:
    from evaluation.layout import discover_videos

    found, bad = discover_videos(s.videos_dir)
    for f in bad:
        logger.warning("not an evaluation video name (seed_<seed>_<arm>[_w<weight>].mp4), skipped: %s", f)
    return [(k, items_by_pid.get(k.prompt_id, ""), str(p)) for k, p in found]


def run(s, arm_specs: dict, notes: list[str]) -> int:
    from tqdm.auto import tqdm

    from evaluation.arms import parse_arm_specs
    from evaluation.device_errors import is_device_error
    from evaluation.run_settings import settings_gate
    from evaluation.scores_csv import read_scores, row_key, shard_csv_path, write_scores
    from evaluation.summary import write_summary
    from utils.jobs import shard_range
    from scoring.scorer import ScoringError
    from utils.video_utils import VideoReadError

    t0 = time.perf_counter()
    arms, skipped = parse_arm_specs(arm_specs, s.lora_weights)
    for msg in skipped:
        logger.info("%s", msg)
    notes = notes + skipped
    sharded = s.num_shards > 1
    if not 0 <= s.shard_index < s.num_shards:
        raise ValueError(f"need 0 <= shard_index < num_shards, got {s.shard_index}, {s.num_shards}")
    csv_path = s.output_dir / "scores.csv"
    out_csv = shard_csv_path(csv_path, s.shard_index, s.num_shards) if sharded else csv_path
    rows: dict = {row_key(r): r for r in read_scores(out_csv)} if out_csv.is_file() else {}
    if s.score_only:
        s.num_prompts = None  # prompt texts of every entry: the folder may hold any of them
        items = _prompt_items(s) if s.prompts_json or s.images_dir else []
        record, keep = settings_gate(s, arms, items, out_csv, bool(rows))
        todo = _discover(s, {it.prompt_id: it.prompt for it in items})
        pids = sorted({k.prompt_id for k, _, _ in todo})
        keep_pids = {pids[i] for i in shard_range(len(pids), s.shard_index, s.num_shards)}
        todo, err_rows = [t for t in todo if t[0].prompt_id in keep_pids], {}
    else:
        items = _prompt_items(s)
        items = [items[i] for i in shard_range(len(items), s.shard_index, s.num_shards)]
        record, keep = settings_gate(s, arms, items, out_csv, bool(rows))
        todo, err_rows = _plan(s, arms, items)
    if not keep:
        rows = {}
    for key, r in err_rows.items():
        k = row_key(r)
        if k not in rows or rows[k].get("error"):
            rows[k] = r
    write_scores(out_csv, rows.values())

    def done(key) -> bool:
        k = row_key(vars(key))  # the VideoKey's fields are the row's key columns
        return k in rows and not (s.retry_errors and rows[k].get("error"))

    pending = [t for t in todo if not done(t[0])]
    logger.info("%d video(s) to score, %d already in %s", len(pending), len(todo) - len(pending), out_csv)
    evaluator = _build_evaluator(s) if pending else None
    for key, prompt, path in tqdm(pending, desc="score", unit="video"):
        try:
            row = _row(key, prompt, path, metrics=evaluator.score_video(path))
        except (VideoReadError, ScoringError, ValueError, RuntimeError, OSError) as e:
            if is_device_error(e):
                raise  # out of memory / CUDA: not the video's fault; the CSV holds every finished row
            logger.error("cannot score %s: %s", path, e)
            row = _row(key, prompt, path, error=f"scoring failed: {type(e).__name__}: {e}")
        rows[row_key(row)] = row
        write_scores(out_csv, rows.values())
    n_err = sum(1 for r in rows.values() if r.get("error"))
    logger.info("scores: %s (%d rows, %.1f s)", out_csv, len(rows), time.perf_counter() - t0)
    errors = f"{n_err} row(s) with an error (column `error` of {out_csv.name}; --retry_errors redoes them)"
    if sharded:
        print(f"shard {s.shard_index}/{s.num_shards}: {len(rows)} rows, {errors} -> {out_csv}; "
              "run --merge when every shard is done")
    else:
        summary = write_summary(s.output_dir, list(read_scores(csv_path)), n_resamples=s.bootstrap_resamples,
                                notes=notes, settings=record)
        print(f"scores: {csv_path}\nsummary: {s.output_dir / 'summary.md'} ({summary['videos']} videos, "
              f"{time.perf_counter() - t0:.1f} s)\n{errors}")
    if n_err == len(rows) and (rows or not sharded):
        print(f"error: no video could be scored ({out_csv})", file=sys.stderr)
        return 1
    return 0


def _merge(s, notes) -> int:
    """Join ``scores.shard<i>of<K>.csv`` for ``i < K = --num_shards`` into ``scores.csv`` and summarise.

    Returns 0; 1 when shard files are missing (the partial merge is written and says so); 2 when
    there is nothing to merge. Raises SettingsMismatchError when the shards' settings records differ.
    """
    from evaluation.run_settings import SettingsMismatchError, describe_difference, differing_keys, read_settings, write_settings
    from evaluation.scores_csv import merge_score_files, read_scores, shard_csv_path
    from evaluation.summary import write_summary

    k = s.num_shards
    csv_path = s.output_dir / "scores.csv"
    if k < 2:
        print("error: --merge joins the shard files of --num_shards K (K > 1): give the K of the sharded run",
              file=sys.stderr)
        return 2
    files = [shard_csv_path(csv_path, i, k) for i in range(k)]
    present = [f for f in files if f.is_file()]
    missing = [f.name for f in files if not f.is_file()]
    others = sorted(set(s.output_dir.glob("scores.shard*of*.csv")) - set(files))
    if others:
        logger.warning("ignored shard file(s) of another --num_shards: %s", ", ".join(f.name for f in others))
    if not present:
        print(f"error: none of the {k} shard files scores.shard<i>of{k}.csv is in {s.output_dir}", file=sys.stderr)
        return 2
    records = {f.name: read_settings(f) for f in present}
    known = {n: r for n, r in records.items() if r is not None}
    record = next(iter(known.values()), None)
    for name, r in known.items():
        diff = differing_keys(record, r)
        if diff:
            first = next(iter(known))
            raise SettingsMismatchError(f"shards {first} and {name} were made with different settings: "
                                        f"{describe_difference(record, r, diff)}")
    n = merge_score_files(present, csv_path)
    if record is not None:
        write_settings(csv_path, record)
    if missing:
        notes = notes + [f"incomplete merge: shard file(s) missing: {', '.join(missing)}"]
    write_summary(s.output_dir, read_scores(csv_path), n_resamples=s.bootstrap_resamples, notes=notes, settings=record)
    print(f"merged {len(present)} of {k} shard file(s): {n} rows -> {csv_path}")
    if missing:
        print(f"error: shard file(s) missing, the merge is incomplete: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


@contextmanager
def _cpu_threads(n: int | None):
    """Run with ``n`` torch CPU threads (restored afterwards). The tiny preset uses 1: its tensors are
    so small that thread start-up and contention dominate (10x slower with 2 threads on a busy machine)."""
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def main(argv: Sequence[str] | None, constants: Mapping[str, Any]) -> int:
    """Entry point of ``evaluate.py``; ``constants`` are its UPPER_CASE constants
    (``utils.scripts.script_constants``): ``ARMS`` (adapter arms) and defaults of the options of the
    same name. Raises SystemExit(2) for a constant that names no option."""
    from evaluation.arms import ArmSpecError
    from evaluation.scores_csv import ScoresFormatError
    from evaluation.summary import summarize_csv
    from generate.pipeline import GenerationConfigError
    from metrics.lpips import LPIPSWeightsError
    from utils.io_utils import JSONInputError

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    constants = dict(constants)
    constants_arms = constants.pop("ARMS", None) or {}
    parser = build_parser(constants)  # outside the try: a misspelled constant exits 2 (SystemExit)
    try:
        args = parser.parse_args(argv)  # inside: inconsistent launcher variables are bad input
        if args.summarize:
            out = Path(args.output_dir) if args.output_dir else Path(args.summarize).parent
            s = summarize_csv(args.summarize, out, n_resamples=args.bootstrap_resamples or 10_000)
            print(f"summary of {args.summarize}: {out / 'summary.md'} ({s['videos']} videos)")
            return 0
        s, arm_specs, notes = resolve_settings(args, constants_arms)
        with _cpu_threads(1 if s.preset == "tiny" else None):
            return _merge(s, notes) if s.merge else run(s, arm_specs, notes)
    except (ArmSpecError, ScoresFormatError, JSONInputError, GenerationConfigError, LPIPSWeightsError,
            FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a crash: the CSV on disk holds every finished row
        logger.exception("evaluation failed: %s", e)
        return 1
