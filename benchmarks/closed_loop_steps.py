"""The steps of ``benchmarks/closed_loop.py`` that are not per-model scripts: the prompt split, candidate
generation with seeds of each prompt's own, the brightness metric pass, the VAE round-trip diagnostic,
and reading a metric per (prompt, seed).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from utils.io_utils import atomic_write_json, read_json  # the benchmarks put the repository root on sys.path

SANITY_METRIC = "mean_brightness"  # key the brightness pass writes into a groups JSON


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
    ``merge_shards``) with one pipeline loaded by ``generate.pipeline.load_pipeline``, adapter included.
    """
    from generate.candidate_shards import merge_shards
    from generate.candidates import CandidateConfig, generate_candidates
    from generate.pipeline import load_pipeline

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

    DPO learns from ``03_encode.py``'s latents ``E(video)`` (a posterior sample), while new videos
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
            x = torch.from_numpy(frames).float().div(127.5).sub(1)
            x = x.permute(3, 0, 1, 2)[None]  # [1, 3, T, H, W] in [-1, 1]
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
