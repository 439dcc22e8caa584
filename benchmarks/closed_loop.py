"""Closed loop: does the whole VideoGPA loop move the metric it optimises, on held-out prompts?

Every part of the loop has its own test (VGGT parity, denoiser parity, DPO loss = ln 2 at start,
implicit reward accuracy rising). This benchmark checks the claim end to end, on CPU with the tiny
models (``utils/tiny_models.py``), through the real per-model scripts (``utils.scripts.run_script``):

1. prompts: DL3DV captions (``data/dl3dv_captions_1K.json``), shuffled with a fixed seed; the first
   ``NUM_TRAIN_PROMPTS`` train, the next ``NUM_HELDOUT_PROMPTS`` are held out (disjoint scenes and
   texts, checked);
2. candidates as ``train_dpo/CogVideoX-5B_lora/01_generate.py`` makes them (its code,
   :func:`generate_with_own_seeds`), ``NUM_TRAIN_SEEDS`` per training prompt, every prompt with seeds
   of its own (the tiny model barely listens to the prompt: shared seeds would make every pair the
   same two noise draws);
3. ``train_dpo/video_scorer.py`` (tiny VGGT, random LPIPS) writes ``consistency_score``; a metric
   pass (:func:`add_brightness`) adds ``mean_brightness`` to the same groups JSON;
4. ``train_dpo/CogVideoX-5B_lora/02_encode.py``: latents + prompt embeddings (once, shared by the arms);
5. per arm, ``train_dpo/CogVideoX-5B_lora/03_train.py`` (fresh output folder, no ``--resume``) with
   the arm's ``--metric_name/--metric_mode``;
6. held-out prompts x ``NUM_HELDOUT_SEEDS`` unseen seeds of their own (from ``HELDOUT_SEED_START``):
   the base model and each arm's ``final_lora`` (loaded by ``generate.common.load_pipeline``, as
   ``generate/t2v_inference.py`` does), then the arm's metric on every video (the scorer for
   ``consistency_score``);
7. base vs adapter, paired by (prompt, seed): mean difference with a 95 % BCa bootstrap CI, win rate
   and Wilcoxon signed-rank p (``evaluation.stats.paired_comparison``); DPO loss and implicit reward
   accuracy at the end of training (mean over the last ``END_FRACTION`` of the trainer's CSV log).

Arms (``ARMS``): ``sanity`` (mean frame brightness, winners = darker: a metric a tiny model can
surely learn), ``sanity-reversed`` (the same, winners = brighter: must move the other way) and
``consistency`` (the real consistency score with the tiny, random VGGT and LPIPS: its direction is
reported, not required). The loop works when ``sanity`` gets significantly darker and
``sanity-reversed`` significantly brighter (p < 0.01 and the CI excluding 0).

What it shows with the tiny models (``benchmarks/results/closed_loop.json``): both sanity arms move
brightness significantly and in opposite directions (the preference goes through pairs, latents,
DPO, adapter and sampling), but each the *wrong* way: "darker wins" makes the held-out videos
brighter (+0.0008, p 3e-8), "brighter wins" darker (-0.0016, p 6e-18). The sign is flipped at the
latents: the tiny VAE has random weights, so its encoder is no inverse of its decoder -- the
brightness of ``decode(encode(video))`` correlates *negatively* with the video's (Pearson r -0.22 on
the training videos) -- and its posterior std (1.03) exceeds the spread of its posterior mean (0.33),
so ``02_encode.py``'s latents are mostly sampling noise. DPO moves the generator towards the winners'
*encoded* latents, which the decoder renders brighter. The run prints this round-trip diagnostic
(:func:`vae_round_trip`); a tiny VAE that round-trips (a trained one) is needed for the literal
criterion. A trap the benchmark avoids: the tiny model barely listens to the prompt, so with seeds
shared by all prompts (``01_generate.py``'s default) every pair is the same two noise draws and the
held-out set only ``NUM_HELDOUT_SEEDS`` distinct videos; such a run reported "win rate 1.00,
p = 5e-10" in the expected direction for 16 prompts and nothing for 64.

    python benchmarks/closed_loop.py                      # ~11 min on 2 CPU cores; prints the table
    python benchmarks/closed_loop.py --threads 1          # on a busy machine (2 threads fight other jobs)
    python benchmarks/closed_loop.py --write              # update benchmarks/results/closed_loop.{json,png}
    python benchmarks/closed_loop.py --out X.json         # JSON to X.json, plot to X.png
    python benchmarks/closed_loop.py --run_dir runs/closed_loop   # keep the videos, latents, adapters

JSON and plot are written only with ``--write`` or ``--out`` (``benchmarks/results_io.py``). Exit code 0 when the sanity arms
move as required (``verdict.passed``), 1 when not, 2 on bad input. Measured: 682 s wall, 622 s CPU
with ``--threads 1`` on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from demo import TINY_PAIR_RULES, Stages, StageError, _rules_as_args  # noqa: E402
from results_io import add_output_args, save_results  # noqa: E402  (benchmarks/results_io.py)
from utils.io_utils import JSONInputError, atomic_write_json, read_json  # noqa: E402
from utils.scripts import model_script  # noqa: E402

logger = logging.getLogger("closed_loop")

# --- configuration (every value can be overridden on the command line) ---
CAPTIONS_JSON = ROOT / "data" / "dl3dv_captions_1K.json"
NAME = "closed_loop"         # benchmarks/results/closed_loop.{json,png}
PROMPT_SHUFFLE_SEED = 0
NUM_TRAIN_PROMPTS = 64
NUM_TRAIN_SEEDS = 4          # candidates per training prompt (seeds 0 .. 3), as the released recipe
NUM_HELDOUT_PROMPTS = 64
NUM_HELDOUT_SEEDS = 2
HELDOUT_SEED_START = 1000    # seeds never used for training candidates
INFERENCE_STEPS = 4          # denoising steps (released: 50); the tiny model's videos are noise anyway
# Diffusion-DPO settings for the tiny model. Released VideoGPA: LoRA r 64 / alpha 128, lr 5e-6,
# 10,000 steps with 500 warm-up, batch 1 x 2, beta 1. A tiny random transformer trained for a few
# hundred CPU steps needs a far larger learning rate to move at all, a rank that fits its 32-wide
# attention, no warm-up in so short a run, and a larger batch so that 64 pairs give a stable gradient.
LORA_RANK = 8
LORA_ALPHA = 16
LEARNING_RATE = 1e-3
MAX_STEPS = 150
WARMUP_STEPS = 0
BATCH_SIZE = 4
BETA = 1.0
END_FRACTION = 0.2           # "end of training" = mean over the last 20 % of logged steps
ROUND_TRIP_VIDEOS = 32       # videos decoded for the VAE round-trip diagnostic
ALPHA = 0.01                 # significance level of the pass/fail criterion

# arm: (metric key in the groups JSON, METRIC_MODE of 03_train.py)
ARMS = {
    "sanity": ("mean_brightness", "min"),
    "sanity-reversed": ("mean_brightness", "max"),
    "consistency": ("consistency_score", "min"),
}
SANITY_METRIC = "mean_brightness"
ENCODE = model_script("CogVideoX-5B_lora", "02_encode")
TRAIN = model_script("CogVideoX-5B_lora", "03_train")
SCORER = ROOT / "train_dpo" / "video_scorer.py"


# ------------------------------------------------------------------------------------------------
# prompts and the brightness metric
# ------------------------------------------------------------------------------------------------


def split_prompts(captions_json: Path, n_train: int, n_heldout: int, seed: int) -> tuple[dict, dict]:
    """Shuffle the DL3DV captions with ``seed`` and cut them into disjoint train / held-out prompts.

    Returns:
        Two prompts dicts in the ``data_prep`` format ``{id: {"text_prompt", "source_key"}}``.
    Raises:
        ValueError: too few distinct captions for the requested sizes.
    """
    from data_prep.captions_to_prompts import captions_to_prompts

    captions = read_json(captions_json)
    seen, unique = set(), {}
    for key, text in captions.items():  # identical captions of different scenes count once
        norm = " ".join(str(text).split())
        if norm and norm not in seen:
            seen.add(norm)
            unique[key] = text
    prompts = captions_to_prompts(unique, num_prompts=n_train + n_heldout, seed=seed, add_motion=True)
    if len(prompts) < n_train + n_heldout:
        raise ValueError(f"{captions_json}: {len(prompts)} distinct captions, need {n_train + n_heldout}")
    items = list(prompts.items())
    train, heldout = dict(items[:n_train]), dict(items[n_train:])
    overlap = {p["source_key"] for p in train.values()} & {p["source_key"] for p in heldout.values()}
    assert not overlap and not set(train) & set(heldout), "train and held-out prompts overlap"
    return train, heldout


def generate_with_own_seeds(
    prompts_json: Path, out_dir: Path, base_model: str, num_seeds: int, seed_start: int,
    inference_steps: int, lora_path: Path | None = None,
) -> Path:
    """Candidates of ``01_generate.py`` with seeds of their own for every prompt; returns the groups JSON.

    Prompt ``i`` (file order) gets seeds ``seed_start + i * num_seeds + (0 .. num_seeds - 1)``. The
    tiny model barely listens to its prompt, so videos of one seed look alike whatever the prompt:
    with the script's seeds shared by all prompts, every training pair would be the same two noise
    draws and every held-out item one of ``num_seeds`` videos (pseudo-replication). One script call
    per prompt would reload the pipeline hundreds of times, so this calls the script's own code
    (``generate.candidates.generate_candidates``, one ``groups`` part per prompt, joined by
    ``merge_shards``) with one pipeline loaded by ``generate.common.load_pipeline``, adapter included.
    """
    from generate.candidates import CandidateConfig, generate_candidates, merge_shards
    from generate.common import load_pipeline

    prompts = read_json(prompts_json)
    pipe = load_pipeline(base_model, "t2v", lora_path=lora_path, progress_bar=False)
    parts = []
    for i, (key, entry) in enumerate(prompts.items()):
        one = out_dir / "parts" / f"prompt_{i:04d}.json"
        atomic_write_json(one, {key: entry})
        cfg = CandidateConfig(
            base_model=base_model, prompts_json=str(one), output_dir=str(out_dir), num_seeds=num_seeds,
            seed_start=seed_start + i * num_seeds, num_inference_steps=inference_steps,
            groups_json=str(out_dir / "parts" / f"groups_{i:04d}.json"),
            lora_path=None if lora_path is None else str(lora_path),
        )  # fmt: skip
        generate_candidates(cfg, pipe)
        parts.append(cfg.groups_json)
    merge_shards(parts, out_dir / "groups.json")
    return out_dir / "groups.json"


def mean_brightness(video_path: str | os.PathLike) -> float:
    """Mean pixel value of every frame and channel of a video, in [0, 1] (uint8 / 255)."""
    from utils.video_utils import read_video_frames

    return float(read_video_frames(video_path).mean() / 255.0)


def add_brightness(json_in: Path, json_out: Path, base_path: Path) -> int:
    """The metric pass: copy a groups JSON, adding ``mean_brightness`` to every video without an error.

    Paths in the JSON are relative to ``base_path``. Written atomically. Returns the number of videos
    scored.
    """
    data = read_json(json_in)
    n = 0
    for group in data["groups"]:
        for video in group["videos"]:
            if "error" in video:
                continue
            path = Path(video["video_path"])
            video[SANITY_METRIC] = mean_brightness(path if path.is_absolute() else base_path / path)
            n += 1
    atomic_write_json(json_out, data)
    return n


def vae_round_trip(base_model: str, encoded_json: Path, base_path: Path, n: int) -> dict:
    """How much of a video's brightness survives the VAE round trip the loop depends on.

    DPO learns from ``02_encode.py``'s latents ``E(video)`` (a posterior sample), while new videos
    are ``D(z)``; the loop can only move a video metric when ``D(E(video))`` keeps it. For the first
    ``n`` encoded videos: Pearson r between the brightness of the video and of ``D(stored latents)``,
    and the VAE posterior's spread (std over videos of the posterior mean vs its mean std, in latent
    units): a trained VAE has a near-deterministic posterior, a random one does not.
    """
    import numpy as np
    import torch
    from diffusers import AutoencoderKLCogVideoX

    from train_dpo.dataset import load_latents_file
    from utils.video_utils import read_video_frames

    vae = AutoencoderKLCogVideoX.from_pretrained(base_model, subfolder="vae").eval()
    sf = vae.config.scaling_factor
    videos = [v for g in read_json(encoded_json)["groups"] for v in g["videos"] if "latent_path" in v][:n]
    b_video, b_round, post_mean, post_std = [], [], [], []
    with torch.no_grad():
        for v in videos:
            frames = read_video_frames(base_path / v["video_path"])  # [T, H, W, 3] uint8
            x = torch.from_numpy(frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]  # [1, 3, T, H, W]
            dist = vae.encode(x).latent_dist
            post_mean.append(dist.mean.flatten())
            post_std.append(float(dist.std.mean()))
            z = load_latents_file(base_path / v["latent_path"], "latents")  # [F, C, H, W], x scaling factor
            rt = vae.decode(z.permute(1, 0, 2, 3)[None] / sf).sample.clamp(-1, 1)
            b_video.append(float(frames.mean() / 255.0))
            b_round.append(float(rt.add(1).div(2).mean()))
    return {
        "videos": len(videos),
        "brightness_pearson_r": float(np.corrcoef(b_video, b_round)[0, 1]) if len(videos) > 2 else math.nan,
        "posterior_mean_spread": float(torch.stack(post_mean).std(dim=0).mean()) if videos else math.nan,
        "posterior_std": float(np.mean(post_std)) if videos else math.nan,
    }


def metric_by_item(groups_json: Path, metric: str) -> dict[tuple[str, int], float]:
    """``{(group_id, seed): value}`` of ``metric`` (NaN for a video with an error or no value)."""
    out = {}
    for group in read_json(groups_json)["groups"]:
        for video in group["videos"]:
            value = video.get(metric)
            out[(group["group_id"], int(video["seed"]))] = float(value) if value is not None else math.nan
    return out


# ------------------------------------------------------------------------------------------------
# the loop
# ------------------------------------------------------------------------------------------------


class CpuStages(Stages):
    """:class:`demo.Stages` that also records the CPU seconds (this process and its children) per stage."""

    def __init__(self):
        super().__init__()
        self.cpu_seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        c0 = cpu_seconds()
        try:
            with super().stage(name):
                yield
        finally:
            self.cpu_seconds[name] = round(cpu_seconds() - c0, 2)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def train_args(args) -> list[str]:
    """The settings of ``03_train.py`` shared by every arm (relaxed tiny pair rules of the demo)."""
    return [
        "--lora_rank", str(args.lora_rank), "--lora_alpha", str(args.lora_alpha),
        "--learning_rate", str(args.learning_rate), "--max_steps", str(args.max_steps),
        "--warmup_steps", str(args.warmup_steps), "--batch_size", str(args.batch_size), "--grad_accum", "1",
        "--beta", str(args.beta), "--val_fraction", "0", "--log_every", "1", "--checkpoint_every", "0",
        "--num_workers", "0", "--loggers", "csv", "--no_progress_bar",
    ] + _rules_as_args(TINY_PAIR_RULES)  # fmt: skip


CURVE_KEYS = ("loss", "accuracy", "reward_margin")


def training_curves(metrics_csv: Path) -> dict[str, list[float]]:
    """Per-step DPO loss, implicit reward accuracy and margin from the trainer's CSV log (step order)."""
    from utils.report import read_lightning_csv

    series = read_lightning_csv(metrics_csv)
    return {key: [v for _, v in sorted(series.get(f"train/{key}", []))] for key in CURVE_KEYS}


def end_of_training(metrics_csv: Path, fraction: float) -> dict:
    """Mean DPO loss, implicit reward accuracy and margin over the last ``fraction`` of logged steps."""
    curves = training_curves(metrics_csv)
    out = {}
    for key in CURVE_KEYS:
        pts = curves[key]
        tail = pts[-max(1, int(round(len(pts) * fraction))):] if pts else []
        out[key] = sum(tail) / len(tail) if tail else math.nan
    out["steps"] = len(curves["loss"])
    return out


def run_closed_loop(args, run_dir: Path) -> dict:
    """Run every stage in ``run_dir``; returns the results dict (also the JSON written)."""
    from evaluation.stats import paired_comparison
    from metrics.lpips import build_random_lpips_weights
    from utils.tiny_models import ensure_tiny_models

    t0, c0 = time.perf_counter(), cpu_seconds()
    stages = CpuStages()
    consistency_arms = {a for a in args.arms if ARMS[a][0] == "consistency_score"}
    with stages.stage("tiny models"):
        names = ("cogvideox-t2v", "vggt") if consistency_arms else ("cogvideox-t2v",)
        paths = ensure_tiny_models(args.tiny_root, names=names)
        if consistency_arms:  # the demo's tiny scorer: tiny random VGGT, random LPIPS weights
            vgg, lin = build_random_lpips_weights(run_dir / "lpips_random", seed=0, width=0.25)
            score = ["--vggt_model", str(paths["vggt"]), "--num_frames", "8", "--image_size", "112",
                     "--lpips_vgg_weights", str(vgg), "--lpips_lin_weights", str(lin), "--devices", "cpu"]
    base_model = str(paths["cogvideox-t2v"])
    from generate.common import read_model_defaults

    d = read_model_defaults(base_model)
    size = ["--num_frames", str(d.num_frames), "--height", str(d.height), "--width", str(d.width)]

    if args.train_prompts * args.train_seeds > args.heldout_seed_start:
        raise ValueError(f"training seeds 0..{args.train_prompts * args.train_seeds - 1} reach the held-out "
                         f"seeds (from {args.heldout_seed_start}); raise --heldout_seed_start")
    train_prompts, heldout_prompts = split_prompts(
        Path(args.captions), args.train_prompts, args.heldout_prompts, args.prompt_seed
    )
    atomic_write_json(run_dir / "prompts_train.json", train_prompts)
    atomic_write_json(run_dir / "prompts_heldout.json", heldout_prompts)

    # training data: candidates -> scores -> brightness -> latents (shared by every arm)
    cand = run_dir / "train"
    with stages.stage("train: generate"):
        generate_with_own_seeds(run_dir / "prompts_train.json", cand, base_model, args.train_seeds, 0,
                                args.inference_steps)
    groups = cand / "groups.json"
    if consistency_arms:
        stages.run("train: consistency scores", SCORER, score + [
            "--input_json", str(groups), "--output_json", str(cand / "groups_scored.json"),
            "--base_path", str(cand)])  # fmt: skip
        groups = cand / "groups_scored.json"
    with stages.stage("train: brightness"):
        add_brightness(groups, cand / "groups_metrics.json", cand)
    stages.run("train: encode", ENCODE, size + [
        "--base_model", base_model, "--input_json", str(cand / "groups_metrics.json"),
        "--output_json", str(cand / "groups_encoded.json"), "--base_path", str(cand)])  # fmt: skip

    with stages.stage("train: VAE round trip"):
        round_trip = vae_round_trip(base_model, cand / "groups_encoded.json", cand, ROUND_TRIP_VIDEOS)

    # held-out: the base model once, then every arm
    heldout = run_dir / "heldout"
    def heldout_generate(label: str, lora_path: Path | None = None) -> None:
        with stages.stage(f"held-out: generate, {label}"):
            generate_with_own_seeds(run_dir / "prompts_heldout.json", heldout / label, base_model,
                                    args.heldout_seeds, args.heldout_seed_start, args.inference_steps, lora_path)

    heldout_generate("base")
    to_score = consistency_arms | ({"base"} if consistency_arms else set())

    def evaluate(label: str) -> None:
        folder = heldout / label
        groups = folder / "groups.json"
        if label in to_score:
            stages.run(f"held-out: consistency scores, {label}", SCORER, score + [
                "--input_json", str(groups), "--output_json", str(folder / "groups_scored.json"),
                "--base_path", str(folder)])  # fmt: skip
            groups = folder / "groups_scored.json"
        with stages.stage(f"held-out: brightness, {label}"):
            add_brightness(groups, folder / "groups_metrics.json", folder)

    evaluate("base")
    arms = {}
    for arm in args.arms:
        metric, mode = ARMS[arm]
        dpo = run_dir / "dpo" / arm
        shutil.rmtree(dpo, ignore_errors=True)  # resume off: every run trains from the base model
        stages.run(f"{arm}: DPO training", TRAIN, train_args(args) + [
            "--base_model", base_model, "--train_json", str(cand / "groups_encoded.json"),
            "--base_path", str(cand), "--output_dir", str(dpo), "--metric_name", metric,
            "--metric_mode", mode])  # fmt: skip
        heldout_generate(arm, dpo / "final_lora")
        evaluate(arm)
        base_vals = metric_by_item(heldout / "base" / "groups_metrics.json", metric)
        arm_vals = metric_by_item(heldout / arm / "groups_metrics.json", metric)
        keys = sorted(base_vals)
        if set(arm_vals) != set(keys):
            raise StageError(f"{arm}: held-out videos differ from the base model's ({len(arm_vals)} vs {len(keys)})")
        cmp = paired_comparison([base_vals[k] for k in keys], [arm_vals[k] for k in keys],
                                lower_is_better=(mode == "min"))
        # the sanity metric for every arm (cheap): does the consistency arm also change brightness?
        b2 = metric_by_item(heldout / "base" / "groups_metrics.json", SANITY_METRIC)
        a2 = metric_by_item(heldout / arm / "groups_metrics.json", SANITY_METRIC)
        brightness = paired_comparison([b2[k] for k in keys], [a2[k] for k in keys], lower_is_better=True)
        csvs = sorted(dpo.rglob("metrics.csv"))
        train_stats = read_json(dpo / "train_config.json")["data"]
        arms[arm] = {
            "metric": metric,
            "metric_mode": mode,
            "paired": cmp.as_dict(),
            "diffs": [arm_vals[k] - base_vals[k] for k in keys],
            "brightness_paired": brightness.as_dict(),
            "training_end": end_of_training(csvs[-1], END_FRACTION) if csvs else {},
            "curves": training_curves(csvs[-1]) if csvs else {},
            "train_data": train_stats,
        }
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return {
        "arms": arms,
        "verdict": verdict(arms),
        "vae_round_trip": round_trip,
        "settings": {k: getattr(args, k) for k in (
            "train_prompts", "train_seeds", "heldout_prompts", "heldout_seeds", "heldout_seed_start",
            "prompt_seed", "inference_steps", "lora_rank", "lora_alpha", "learning_rate", "max_steps",
            "warmup_steps", "batch_size", "beta")} | {"pair_rules": TINY_PAIR_RULES, "alpha": ALPHA},
        "runtime": {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "stages_wall_s": stages.seconds,
                    "stages_cpu_s": stages.cpu_seconds},
        "machine": {"cpus": os.cpu_count(), "torch_threads": _torch_threads(), "platform": platform.platform(),
                    "python": platform.python_version(), "torch": _torch_version()},
        "commands": stages.commands,
    }


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _torch_version() -> str:
    import torch

    return torch.__version__


def verdict(arms: dict) -> dict:
    """The criterion: ``sanity`` significantly lower, ``sanity-reversed`` significantly higher (``passed``).

    Also ``opposite_directions``: both sanity arms move significantly and in opposite directions,
    whatever the sign -- the preference went through the loop, even where the VAE round trip flips
    the metric (see :func:`vae_round_trip`).
    """
    out, signs = {}, {}
    for arm, sign in (("sanity", -1), ("sanity-reversed", +1)):
        if arm not in arms:
            continue
        p = arms[arm]["paired"]
        significant = p["wilcoxon_p"] < ALPHA and p["ci_excludes_zero"]
        signs[arm] = math.copysign(1, p["mean_diff"]) if significant else 0
        out[arm] = bool(significant and signs[arm] == sign)
    out["passed"] = bool(out) and all(out.values())
    out["opposite_directions"] = len(signs) == 2 and 0 not in signs.values() and len(set(signs.values())) == 2
    return out


# ------------------------------------------------------------------------------------------------
# output
# ------------------------------------------------------------------------------------------------


def format_table(results: dict) -> str:
    """Markdown table: per arm the paired comparison on its own metric and the end-of-training stats."""
    head = ("| arm | metric (winners) | n | base | adapter | diff (95% CI) | win rate | Wilcoxon p "
            "| DPO loss | implicit acc. |")
    lines = [head, "|" + "---|" * 10]
    for arm, r in results["arms"].items():
        p, t = r["paired"], r["training_end"]
        lines.append(
            f"| {arm} | {r['metric']} ({'lower' if r['metric_mode'] == 'min' else 'higher'}) | {p['n']} "
            f"| {p['mean_base']:.4f} | {p['mean_treated']:.4f} "
            f"| {p['mean_diff']:+.4f} [{p['ci_low']:+.4f}, {p['ci_high']:+.4f}] | {p['win_rate']:.2f} "
            f"| {p['wilcoxon_p']:.2g} | {t.get('loss', math.nan):.3f} | {t.get('accuracy', math.nan):.2f} |"
        )
    rt = results["runtime"]
    lines.append("")
    lines.append(f"runtime: {rt['wall_s']:.0f} s wall, {rt['cpu_s']:.0f} s CPU "
                 f"({results['machine']['cpus']} cores, {results['machine']['torch_threads']} torch threads)")
    r = results["vae_round_trip"]
    lines.append(f"VAE round trip ({r['videos']} training videos): brightness of video vs decode(encoded latents) "
                 f"r = {r['brightness_pearson_r']:+.2f}; posterior std {r['posterior_std']:.2f} vs spread of "
                 f"its mean {r['posterior_mean_spread']:.2f}")
    v = results["verdict"]
    lines.append("verdict: " + ", ".join(f"{k}={v[k]}" for k in v))
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """Top row: per arm, histogram of paired differences (adapter - base) with mean and CI.
    Bottom row: DPO loss, implicit reward accuracy and margin per step for every arm."""
    from utils.report import plot_png

    arms = results["arms"]

    def draw(plt):
        n = max(3, len(arms))
        fig, axes = plt.subplots(2, n, figsize=(4.2 * n, 6.5), squeeze=False)
        for ax, (arm, r) in zip(axes[0], arms.items()):
            p = r["paired"]
            ax.hist(r["diffs"], bins=20, color="0.7")
            ax.axvline(0, color="k", lw=1)
            ax.axvline(p["mean_diff"], color="tab:red", lw=2, label=f"mean {p['mean_diff']:+.3g}")
            ax.axvspan(p["ci_low"], p["ci_high"], color="tab:red", alpha=0.2, label="95% CI")
            ax.set_title(f"{arm}: p={p['wilcoxon_p']:.2g}, win {p['win_rate']:.2f}", fontsize=10)
            ax.set_xlabel(f"{r['metric']}: adapter - base (held-out)")
            ax.legend(fontsize=8)
        for ax in axes[0][len(arms):]:
            ax.axis("off")
        window = 10
        for ax, key, title in zip(axes[1], ("loss", "accuracy", "reward_margin"),
                                  ("DPO loss", "implicit reward accuracy", "implicit reward margin")):
            for arm, r in arms.items():
                vals = r["curves"].get(key, [])
                smooth = [sum(vals[max(0, i - window + 1): i + 1]) / len(vals[max(0, i - window + 1): i + 1])
                          for i in range(len(vals))]
                ax.plot(range(len(vals)), smooth, label=arm)
            ax.set_title(f"{title} (moving mean of {window})", fontsize=10)
            ax.set_xlabel("optimiser step")
            ax.legend(fontsize=8)
        for ax in axes[1][3:]:
            ax.axis("off")
        fig.tight_layout()
        return fig

    plot_png(path, draw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--captions", default=str(CAPTIONS_JSON))
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    p.add_argument("--train_prompts", type=int, default=NUM_TRAIN_PROMPTS)
    p.add_argument("--train_seeds", type=int, default=NUM_TRAIN_SEEDS)
    p.add_argument("--heldout_prompts", type=int, default=NUM_HELDOUT_PROMPTS)
    p.add_argument("--heldout_seeds", type=int, default=NUM_HELDOUT_SEEDS)
    p.add_argument("--heldout_seed_start", type=int, default=HELDOUT_SEED_START)
    p.add_argument("--prompt_seed", type=int, default=PROMPT_SHUFFLE_SEED)
    p.add_argument("--inference_steps", type=int, default=INFERENCE_STEPS)
    p.add_argument("--lora_rank", type=int, default=LORA_RANK)
    p.add_argument("--lora_alpha", type=float, default=LORA_ALPHA)
    p.add_argument("--learning_rate", type=float, default=LEARNING_RATE)
    p.add_argument("--max_steps", type=int, default=MAX_STEPS)
    p.add_argument("--warmup_steps", type=int, default=WARMUP_STEPS)
    p.add_argument("--batch_size", type=int, default=BATCH_SIZE)
    p.add_argument("--beta", type=float, default=BETA)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's, one per core); 1 is fairer on a busy machine")
    p.add_argument("--tiny_root", default=str(ROOT / "checkpoints" / "tiny"))
    p.add_argument("--run_dir", default=None, help="keep every file here (default: a temporary folder, removed)")
    add_output_args(p, NAME)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    tmp = None
    if args.run_dir:
        run_dir = Path(args.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="closed_loop_")
        run_dir = Path(tmp)
    try:
        results = run_closed_loop(args, run_dir)
    except StageError as e:
        logger.error("%s", e)
        return 1
    except (JSONInputError, ValueError, FileNotFoundError) as e:
        logger.error("bad input: %s", e)
        return 2
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\n" + format_table(results))
    json_path = save_results(args, NAME, results)
    if json_path is not None:
        plot(results, json_path.with_suffix(".png"))
        print(f"wrote {json_path.with_suffix('.png')}")
    return 0 if results["verdict"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
