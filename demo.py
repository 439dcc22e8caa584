"""The whole VideoGPA loop in one command, on real prompts and real images.

    python demo.py                                   # tiny local models, CPU, a few minutes
    python demo.py --captions data/dl3dv_captions_1K.json --images data/images --num_prompts 4 --num_seeds 3 --steps 20
    python demo.py --preset cogvideox-5b --run_dir runs/5b   # the real models, one CUDA GPU
    python demo.py --modes ti2v                               # tiny, only the Wan2.2-TI2V loop
    python demo.py --preset wan2.2-ti2v-5b --run_dir runs/wan # Wan2.2-TI2V-5B, one CUDA GPU

Stages (each one is the per-model script of its step, called with the arguments shown in
``report.json``; the demo is a thin driver, not a second implementation):

1. tiny checkpoints (``utils/tiny_models.py``; tiny preset only, built once under ``checkpoints/tiny``)
2. prompts: DL3DV captions -> T2V prompts, first frames -> I2V / TI2V prompts (``data_prep/``)
3. candidates: ``train_dpo/<model>/01_generate.py``, NUM_SEEDS videos per prompt
4. geometry scores: ``train_dpo/<model>/02_score.py`` (``train_dpo/video_scorer.py``: VGGT -> point cloud ->
   reprojection -> MSE + LPIPS)
5. latents: ``train_dpo/<model>/03_encode.py`` (VAE latents + prompt/image conditioning)
6. Diffusion-DPO LoRA training: ``train_dpo/<model>/04_train.py`` (winner/loser pairs per prompt)
7. inference with the trained adapter: ``generate/{t2v,i2v}_inference.py`` (and the base model, same seed)
   (TI2V: Wan2.2-TI2V-5B with a first frame, ``i2v_inference.py``)
8. ``report.md`` / ``report.json`` + PNG figures in the run folder

The tiny preset runs on random tiny models (``utils/tiny_models.py``), random LPIPS weights and a
tiny random VGGT, so its numbers exercise the code but mean nothing; its pair-selection thresholds
are relaxed (``TINY_PAIR_RULES``) so that random scores still give pairs, and it scores with the
depth head (``--points_source depth``: the random point head lands off-screen). The real presets use
the hub checkpoints, the published LPIPS weights, the released reward (VGGT point head) and the
released training settings.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from utils.io_utils import JSONInputError, atomic_write_json, read_json  # noqa: E402
from utils.scripts import model_script, run_script  # noqa: E402

logger = logging.getLogger("demo")

# --- configuration (every value can be overridden on the command line) ---
CAPTIONS_JSON = REPO_ROOT / "data" / "dl3dv_captions_1K.json"  # real DL3DV scene captions
IMAGES_DIR = REPO_ROOT / "data" / "images"  # real first frames for image-to-video
RUN_DIR = REPO_ROOT / "runs" / "demo"
TINY_ROOT = REPO_ROOT / "checkpoints" / "tiny"
NUM_PROMPTS = 3
NUM_SEEDS = 3
TRAIN_STEPS = 20
PRESET = "tiny"
DEFAULT_MODES = ("t2v", "i2v", "ti2v")  # tiny preset: CogVideoX T2V, CogVideoX-I2V, Wan2.2-TI2V (first frame)
TINY_MODEL_OF_MODE = {"t2v": "cogvideox-t2v", "i2v": "cogvideox-i2v", "ti2v": "wan2.2-ti2v"}
IMAGE_MODES = ("i2v", "ti2v")  # modes whose prompts are first frames
TINY_NOTES = [
    "Tiny preset: the CogVideoX / Wan models, the VGGT model and the LPIPS weights are randomly initialised "
    "(utils/tiny_models.py, metrics.lpips_weights.build_random_lpips_weights), the videos are noise and the pair "
    "rules are relaxed, so every number below exercises the code and means nothing. "
    "`python demo.py --preset cogvideox-5b` runs the same loop with the real models.",
]
# Relaxed pair rules for random tiny models (released values: min_gap 0.05, threshold 0.8, motion 0.001).
TINY_PAIR_RULES = {"min_gap": 0.0, "metric_threshold": None, "motion_threshold": None}


def _rules_as_args(rules: dict) -> list[str]:
    """``{"min_gap": 0.0, "metric_threshold": None}`` -> ``["--min_gap", "0.0", "--metric_threshold", "none"]``."""
    return [a for k, v in rules.items() for a in (f"--{k}", "none" if v is None else str(v))]


@dataclass
class Loop:
    """One generate -> score -> encode -> train -> infer loop for one model."""

    mode: str  # "t2v", "i2v" (CogVideoX-I2V) or "ti2v" (Wan2.2-TI2V with a first frame)
    model_dir: str  # folder under train_dpo/
    base_model: str
    extra_generate: list[str] = field(default_factory=list)
    extra_score: list[str] = field(default_factory=list)
    extra_encode: list[str] = field(default_factory=list)
    extra_train: list[str] = field(default_factory=list)
    extra_infer: list[str] = field(default_factory=list)


def _tiny_loops(args, modes: list[str]) -> tuple[list[Loop], dict]:
    from metrics.lpips_weights import build_random_lpips_weights
    from utils.tiny_models import ensure_tiny_models

    paths = ensure_tiny_models(args.tiny_root, names=["vggt"] + [TINY_MODEL_OF_MODE[m] for m in modes])
    lpips_dir = Path(args.run_dir) / "lpips_random"
    vgg, lin = lpips_dir / "lpips_vgg16_random.safetensors", lpips_dir / "lpips_lin_random.safetensors"
    if not (vgg.is_file() and lin.is_file()):
        vgg, lin = build_random_lpips_weights(lpips_dir, seed=0, width=0.25)
    steps = ["--num_inference_steps", str(args.inference_steps)]
    # the tiny random VGGT's point head collapses off-screen: score its depth head (real presets: point_head)
    score = ["--vggt_model", str(paths["vggt"]), "--num_frames", "8", "--image_size", "112",
             "--lpips_vgg_weights", str(vgg), "--lpips_lin_weights", str(lin), "--devices", "cpu",
             "--points_source", "depth"]
    train = ["--lora_rank", "8", "--lora_alpha", "16", "--learning_rate", "1e-3", "--warmup_steps", "0",
             "--batch_size", "1", "--global_batch", "1", "--val_fraction", "0", "--log_every", "1", "--checkpoint_every",
             str(max(1, args.steps // 2)), "--no_progress_bar"] + _rules_as_args(TINY_PAIR_RULES)

    def loop(mode, model_dir):
        from generate.model_defaults import read_model_defaults
        from utils.tiny_wan import TINY_WAN_HEIGHT, TINY_WAN_NUM_FRAMES, TINY_WAN_WIDTH

        path = paths[TINY_MODEL_OF_MODE[mode]]
        if mode == "ti2v":  # the Wan scripts default to the real 121 x 704 x 1280: the tiny Wan's size
            size = ["--num_frames", str(TINY_WAN_NUM_FRAMES), "--height", str(TINY_WAN_HEIGHT),
                    "--width", str(TINY_WAN_WIDTH)]
            return Loop(mode, model_dir, str(path), extra_generate=steps + size, extra_score=score,
                        extra_encode=size, extra_train=train, extra_infer=steps + size)
        d = read_model_defaults(path)
        size = ["--num_frames", str(d.num_frames), "--height", str(d.height), "--width", str(d.width)]
        return Loop(mode, model_dir, str(path), extra_generate=steps, extra_score=score,
                    extra_encode=size, extra_train=train, extra_infer=steps)

    dirs = {"t2v": "CogVideoX-5B_lora", "i2v": "CogVideoX-I2V-5B_lora", "ti2v": "Wan2.2-TI2V-5B_lora"}
    loops = [loop(m, dirs[m]) for m in modes]
    return loops, {"tiny_models": {k: str(v) for k, v in paths.items()}, "lpips_weights": [str(vgg), str(lin)]}


PRESETS = {
    # name: (mode, per-model folder, hub id). Real presets use the scripts' own configuration.
    "cogvideox-5b": ("t2v", "CogVideoX-5B_lora", "THUDM/CogVideoX-5b"),
    "cogvideox-5b-i2v": ("i2v", "CogVideoX-I2V-5B_lora", "THUDM/CogVideoX-5b-I2V"),
    "cogvideox1.5-5b": ("t2v", "CogVideoX1.5-5B_lora", "THUDM/CogVideoX1.5-5B"),
    "wan2.2-ti2v-5b": ("ti2v", "Wan2.2-TI2V-5B_lora", "Wan-AI/Wan2.2-TI2V-5B-Diffusers"),
}


class StageError(RuntimeError):
    """A stage's script exited non-zero; the message names the stage and its arguments."""


class Stages:
    """Times each stage and records the command line it ran."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.commands: dict[str, list[str]] = {}
        self.skipped: dict[str, str] = {}

    @contextmanager
    def stage(self, name: str):
        logger.info("=== %s", name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - t0, 2)
            logger.info("=== %s: %.1f s", name, self.seconds[name])

    def run(self, name: str, script: Path, argv: list[str], skip_reason: str | None = None) -> None:
        """Run ``script`` with ``argv`` as stage ``name``, or record it as skipped (``skip_reason``)."""
        self.commands[name] = [str(script.relative_to(REPO_ROOT))] + argv
        if skip_reason:
            logger.info("=== %s: skipped, %s", name, skip_reason)
            self.skipped[name] = skip_reason
            self.seconds[name] = 0.0
            return
        with self.stage(name):
            code = run_script(script, argv)
        if code != 0:
            raise StageError(f"stage '{name}' failed (exit {code}): python {' '.join(self.commands[name])}")


def finished_training_steps(dpo_dir: Path) -> int | None:
    """Optimiser steps of a finished training in ``dpo_dir``, else None.

    Finished = ``final_lora/`` (written only when ``Trainer.fit`` completes) and
    ``lightning/last.ckpt`` (its ``global_step``, read memory-mapped: no tensor is loaded).
    """
    import torch

    ckpt, adapter = dpo_dir / "lightning" / "last.ckpt", dpo_dir / "final_lora" / "adapter_model.safetensors"
    if not (ckpt.is_file() and adapter.is_file()):
        return None
    try:
        return int(torch.load(ckpt, map_location="cpu", mmap=True, weights_only=True)["global_step"])
    except Exception as e:  # noqa: BLE001 - an unreadable checkpoint: train (and resume) again
        logger.warning("cannot read %s (%s); training again", ckpt, e)
        return None


def _prompts(args, run_dir: Path, modes: set[str]) -> dict[str, Path]:
    from data_prep.captions_to_prompts import captions_to_prompts
    from data_prep.generate_i2v_prompts import generate_i2v_prompts

    out = {}
    if "t2v" in modes:
        prompts = captions_to_prompts(read_json(args.captions), num_prompts=args.num_prompts, add_motion=True)
        if not prompts:
            raise StageError(f"no usable captions in {args.captions}")
        out["t2v"] = run_dir / "prompts_t2v.json"
        atomic_write_json(out["t2v"], prompts)
    if modes & set(IMAGE_MODES):  # CogVideoX-I2V and Wan2.2-TI2V: the same first frames and prompts
        prompts = generate_i2v_prompts(args.images)
        prompts = dict(list(prompts.items())[: args.num_prompts])
        if not prompts:
            raise StageError(f"no readable images in {args.images}")
        path = run_dir / "prompts_i2v.json"
        atomic_write_json(path, prompts)
        out.update({m: path for m in modes & set(IMAGE_MODES)})
    return out


def _first_prompt(prompts_json: Path) -> dict:
    return next(iter(read_json(prompts_json).values()))


def run_loop(loop: Loop, prompts_json: Path, run_dir: Path, args, stages: Stages) -> dict:
    """Run one model's loop; returns the paths it wrote."""
    root = run_dir / loop.mode
    cand = root / "candidates"
    groups, scored, encoded = cand / "groups.json", cand / "groups_scored.json", cand / "groups_encoded.json"
    dpo, infer = root / "dpo", root / "inference"
    m = loop.mode
    stages.run(f"{m}: generate candidates", model_script(loop.model_dir, "01_generate"),
               ["--base_model", loop.base_model, "--prompts_json", str(prompts_json), "--output_dir", str(cand),
                "--num_seeds", str(args.num_seeds)] + loop.extra_generate)
    stages.run(f"{m}: geometry scores", model_script(loop.model_dir, "02_score"),
               ["--input_json", str(groups), "--output_json", str(scored), "--base_path", str(cand)]
               + loop.extra_score)
    stages.run(f"{m}: encode latents", model_script(loop.model_dir, "03_encode"),
               ["--base_model", loop.base_model, "--input_json", str(scored), "--output_json", str(encoded),
                "--base_path", str(cand)] + loop.extra_encode)
    done = finished_training_steps(dpo)
    if done is not None and done > args.steps:
        logger.warning("%s already holds a training of %d steps (> --steps %d); kept. Use another --run_dir "
                       "to train fewer steps.", dpo, done, args.steps)
    stages.run(f"{m}: DPO training", model_script(loop.model_dir, "04_train"),
               ["--base_model", loop.base_model, "--train_json", str(encoded), "--base_path", str(cand),
                "--output_dir", str(dpo), "--max_steps", str(args.steps), "--resume", "auto"] + loop.extra_train,
               skip_reason=f"finished training of {done} steps in {dpo}" if done is not None and done >= args.steps
               else None)
    adapter = dpo / "final_lora"
    entry = _first_prompt(prompts_json)
    with_image = m in IMAGE_MODES
    script = REPO_ROOT / "generate" / ("i2v_inference.py" if with_image else "t2v_inference.py")
    positional = [entry["text_prompt"]] + ([entry["image_prompt"]] if with_image else [])
    common = ["--seed", "0", "--skip_existing"] + loop.extra_infer
    stages.run(f"{m}: inference with adapter", script,
               positional + ["--base_model", loop.base_model, "--lora_path", str(adapter),
                             "--output_dir", str(infer / "videogpa_lora")] + common)
    stages.run(f"{m}: inference, base model", script,
               positional + ["--base_model", loop.base_model, "--output_dir", str(infer / "base")] + common)
    metrics_csv = sorted(dpo.rglob("metrics.csv"))
    return {
        "prompts_json": prompts_json,
        "groups_json": groups,
        "scored_json": scored,
        "encoded_json": encoded,
        "adapter": adapter,
        "metrics_csv": metrics_csv[-1] if metrics_csv else None,
        "videos": sorted(str(p) for p in cand.rglob("*.mp4")),
        "inference_videos": sorted(str(p) for p in infer.rglob("*.mp4")),
    }


def _video_difference(videos: list[str]) -> float | None:
    """Mean absolute pixel difference (0-255) between the adapter's and the base model's video."""
    import numpy as np

    from utils.video_utils import read_video_frames

    lora = [v for v in videos if "videogpa_lora" in v]
    base = [v for v in videos if "/base/" in v.replace("\\", "/")]
    if not lora or not base:
        return None
    a, b = read_video_frames(lora[0]).astype(np.float32), read_video_frames(base[0]).astype(np.float32)
    return float(np.abs(a - b).mean()) if a.shape == b.shape else None


def _quiet(tiny: bool) -> None:
    """Expected library messages off (``utils/log_filters.py``); for the tiny models also the
    loading progress bars (they load in milliseconds) and the toy tokenizer's truncation reports."""
    from utils.log_filters import quiet_expected_messages, quiet_tiny_model_messages

    if not tiny:
        quiet_expected_messages()
        return
    quiet_tiny_model_messages()
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=["tiny", *PRESETS], default=PRESET,
                   help="tiny: random tiny models on CPU (default); others: the real models on a GPU")
    p.add_argument("--captions", default=str(CAPTIONS_JSON), help="DL3DV-style captions JSON {key: caption}")
    p.add_argument("--images", default=str(IMAGES_DIR), help="folder of first frames for image-to-video")
    p.add_argument("--run_dir", default=str(RUN_DIR))
    p.add_argument("--num_prompts", type=int, default=NUM_PROMPTS)
    p.add_argument("--num_seeds", type=int, default=NUM_SEEDS)
    p.add_argument("--steps", type=int, default=TRAIN_STEPS, help="DPO optimiser steps")
    p.add_argument("--inference_steps", type=int, default=4, help="denoising steps (tiny preset)")
    p.add_argument("--modes", nargs="+", choices=tuple(TINY_MODEL_OF_MODE), default=list(DEFAULT_MODES),
                   help="tiny preset: the loops to run (t2v, i2v: CogVideoX; ti2v: Wan2.2-TI2V, first frame)")
    p.add_argument("--tiny_root", default=str(TINY_ROOT))
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _quiet(args.preset == "tiny")
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    stages = Stages()
    try:
        if args.preset == "tiny":
            with stages.stage("tiny checkpoints"):
                loops, extra = _tiny_loops(args, list(dict.fromkeys(args.modes)))
        else:
            mode, model_dir, hub_id = PRESETS[args.preset]
            loops, extra = [Loop(mode, model_dir, hub_id)], {}
        with stages.stage("prompts"):
            prompts = _prompts(args, run_dir, {lp.mode for lp in loops})
        results = {lp.mode: run_loop(lp, prompts[lp.mode], run_dir, args, stages) for lp in loops}
    except StageError as e:
        logger.error("%s", e)
        return 1
    except (JSONInputError, FileNotFoundError) as e:
        logger.error("bad input: %s", e)
        return 2

    from train_dpo.pairs import PairSelectionConfig, select_preference_pairs
    from utils.report import write_report

    with stages.stage("report"):
        groups, pairs, pair_stats, diffs = [], [], {}, {}
        rules = PairSelectionConfig(**(TINY_PAIR_RULES if args.preset == "tiny" else {}))
        for mode, res in results.items():
            data = read_json(res["encoded_json"])
            for g in data["groups"]:
                groups.append({**g, "group_id": f"{mode}/{g['group_id']}", "mode": mode})
            sel, pair_stats[mode] = select_preference_pairs(data, rules)
            pairs += [{"group_id": f"{mode}/{p.group_id}", "winner": p.winner["video_path"],
                       "loser": p.loser["video_path"], "metric_w": p.metric_w, "metric_l": p.metric_l}
                      for p in sel]
            diffs[mode] = _video_difference(res["inference_videos"])
        paths = {f"{mode}: {k}": (v if isinstance(v, list) else str(v))
                 for mode, res in results.items() for k, v in res.items()}
        notes = TINY_NOTES if args.preset == "tiny" else []
        out = write_report(run_dir, groups, pairs, stages.seconds, paths,
                           metrics_csvs={mode: r["metrics_csv"] for mode, r in results.items()},
                           extra={"preset": args.preset, "adapter_vs_base_mean_abs_pixel_diff": diffs, **extra},
                           pair_selection=pair_stats, commands=stages.commands, skipped=stages.skipped,
                           notes=notes)
    print(f"\nreport: {out['md']}")
    for name, sec in stages.seconds.items():
        print(f"  {name:32s} " + (f"skipped ({stages.skipped[name]})" if name in stages.skipped else f"{sec:7.1f} s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
