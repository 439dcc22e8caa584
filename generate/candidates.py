"""Candidate videos for Diffusion-DPO: several seeds per prompt, resumable, shardable.

Step 1 of the VideoGPA data pipeline (run by ``train_dpo/<model>/01_generate.py``): every prompt
is generated with ``num_seeds`` seeds (``seed_start, seed_start + 1, ...``); later steps score the
videos of a group for 3-D consistency (VGGT) and pick preferred / rejected pairs within a group.

Outputs (under ``output_dir``, the *output root*)::

    <output_dir>/<group_id>/seed_<seed>.mp4
    <output_dir>/groups.json                    (or --groups_json; per shard: groups.shard<i>of<K>.json)

groups JSON::

    {"groups": [{"group_id": "...", "key": "<prompt id>", "prompt": "...",
                 "image_path": "/abs/first_frame.png",            # image-to-video only
                 "videos": [{"video_path": "<group_id>/seed_0.mp4", "seed": 0}, ...]}, ...],
     "errors": [{"key": "...", "error": "..."}],                  # bad prompt entries, skipped
     "video_root": ".",                                           # output root, relative to the JSON's folder
     "config": {"base_model": ..., "kind": "t2v", "num_frames": 49, "height": 480, "width": 720,
                "num_inference_steps": 50, "guidance_scale": 6.0, "fps": 8, "seeds": [0, 1, 2, 3],
                "prompts_json": ..., "shard": [i, K]}}

``video_path`` is relative to the output root. Every valid group of the shard is listed (in prompt
file order) with the videos finished so far; the JSON is rewritten atomically after every video, so
it is always complete and consistent with the files on disk. Videos are written atomically too
(``utils.video_writer.write_video``); a re-run skips every video that exists and decodes with the
expected frame count and size, and regenerates any other (corrupt) one.

``group_id`` = ``<slug of key>-<8 hex of sha1(key, prompt[, image file name])>``: deterministic,
file-system safe, and new when the prompt text changes.

Sharding (``utils.jobs``, shared with the scorer and the encoder): ``--num_shards K --shard_index i``
gives shard ``i`` a contiguous block of the prompt entries, so concatenating the shards in index
order restores the prompt file order; merge them with ``--merge`` (01_generate.py) or
``python -m generate.candidates_cli merge --output_dir DIR`` (``generate.candidate_shards``: every
shard must be there and written with the same settings, else exit 2). Command line:
``generate.candidates_cli``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generate.model_defaults import read_model_defaults, resolve_video_size
from generate.pipeline import GenerationConfigError, generate_video, load_image, load_pipeline, save_video
from generate.prompts import PromptEntry, load_prompt_entries
from utils.io_utils import JSONInputError, atomic_write_json, read_json, slugify
from utils.jobs import shard_path, shard_range

logger = logging.getLogger(__name__)

__all__ = [
    "GROUPS_JSON_NAME",
    "CandidateConfig",
    "group_id_for",
    "video_relpath",
    "video_is_complete",
    "generate_candidates",
]

GROUPS_JSON_NAME = "groups.json"


@dataclass
class CandidateConfig:
    """Settings of a candidate-generation run (the 01_generate.py constants + command line).

    Attributes:
        base_model: diffusers pipeline folder or hub id.
        prompts_json: prompts JSON (``{"id": {"text_prompt", "image_prompt"}}`` / list) or captions
            JSON (``{key: caption}``), see ``generate.prompts.load_prompt_entries``.
        output_dir: output root for ``<group_id>/seed_<seed>.mp4``.
        kind: ``"t2v"`` or ``"i2v"``.
        num_seeds, seed_start: seeds ``seed_start .. seed_start + num_seeds - 1`` per prompt.
        num_frames, height, width: None = the checkpoint's trained size.
        num_inference_steps, guidance_scale, fps: sampler settings and output frame rate.
        num_prompts: only the first N prompt entries (None = all).
        groups_json: groups JSON path; default ``<output_dir>/groups.json``.
        num_shards, shard_index: this process handles shard ``shard_index`` of ``num_shards``.
        gpu_id, offload, lora_path, lora_scale: see ``generate.pipeline.load_pipeline``.
    """

    base_model: str
    prompts_json: str
    output_dir: str
    kind: str = "t2v"
    num_seeds: int = 4
    seed_start: int = 0
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    num_inference_steps: int = 50
    guidance_scale: float = 6.0
    fps: float = 8
    num_prompts: int | None = None
    groups_json: str | None = None
    num_shards: int = 1
    shard_index: int = 0
    gpu_id: int | None = None
    offload: str = "none"
    lora_path: str | None = None
    lora_scale: float = 1.0
    seeds: list[int] = field(init=False)

    def __post_init__(self) -> None:
        if self.kind not in ("t2v", "i2v"):
            raise GenerationConfigError(f"kind must be 't2v' or 'i2v', got {self.kind!r}")
        if int(self.num_seeds) < 1:
            raise GenerationConfigError(f"num_seeds must be >= 1, got {self.num_seeds}")
        if int(self.num_shards) < 1 or not 0 <= int(self.shard_index) < int(self.num_shards):
            raise GenerationConfigError(
                f"need 0 <= shard_index < num_shards, got shard_index {self.shard_index}, "
                f"num_shards {self.num_shards}"
            )
        self.seeds = [int(self.seed_start) + j for j in range(int(self.num_seeds))]

    @property
    def groups_json_path(self) -> Path:
        """Where the full (unsharded) groups JSON goes."""
        return Path(self.groups_json) if self.groups_json else Path(self.output_dir) / GROUPS_JSON_NAME

    @property
    def out_json_path(self) -> Path:
        """The JSON this process writes: the groups JSON, or its shard file when sharded."""
        if int(self.num_shards) == 1:
            return self.groups_json_path
        return shard_path(self.groups_json_path, self.shard_index, self.num_shards)


def group_id_for(key: str, prompt: str, image_path: str | None = None) -> str:
    """Deterministic, file-system-safe group id: ``<slug(key)[:40]>-<sha1(key, prompt, image name)[:8]>``.

    Only the image's file name enters the hash, so moving the data folder keeps the ids.
    """
    payload = [str(key), str(prompt)] + ([Path(image_path).name] if image_path else [])
    digest = hashlib.sha1(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()[:8]
    return f"{slugify(str(key), max_len=40)}-{digest}"


def video_relpath(group_id: str, seed: int) -> str:
    """``<group_id>/seed_<seed>.mp4`` (POSIX separators), relative to the output root."""
    return f"{group_id}/seed_{int(seed)}.mp4"


def video_is_complete(path: str | os.PathLike, num_frames: int, height: int, width: int) -> bool:
    """True when ``path`` exists and decodes without errors to ``num_frames`` frames of ``height x width``."""
    from utils.video_utils import VideoReadError, get_video_info

    if not Path(path).is_file():
        return False
    try:
        info = get_video_info(path)
    except (VideoReadError, OSError, RuntimeError) as e:
        logger.warning("will regenerate %s: %s", path, e)
        return False
    if (info.num_frames, info.height, info.width) != (num_frames, height, width):
        logger.warning(
            "will regenerate %s: it has %d frames %dx%d, expected %d frames %dx%d",
            path, info.num_frames, info.height, info.width, num_frames, height, width,
        )
        return False
    return True


def _image_error(path: str) -> str | None:
    """None when ``path`` is a readable image, else the reason (naming the file)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as e:  # PIL raises many types for corrupt files
        return f"cannot read image {path}: {e}"
    return None


def _prepare_entries(cfg: CandidateConfig) -> tuple[list[dict], list[dict]]:
    """(groups of this shard, errors of this shard) from the prompts file."""
    entries: list[PromptEntry] = load_prompt_entries(
        cfg.prompts_json, cfg.num_prompts, need_image=(cfg.kind == "i2v")
    )
    seen: set[str] = set()
    unique: list[tuple[PromptEntry, str | None]] = []
    for e in entries:
        gid = None if e.error else group_id_for(e.key, e.prompt, e.image_path if cfg.kind == "i2v" else None)
        if gid is not None:
            if gid in seen:
                logger.warning("duplicate prompt entry %r (same key and prompt): generated once", e.key)
                continue
            seen.add(gid)
        unique.append((e, gid))
    groups, errors = [], []
    for idx in shard_range(len(unique), cfg.shard_index, cfg.num_shards):
        e, gid = unique[idx]
        if not e.error and cfg.kind == "i2v":
            e.error = _image_error(e.image_path)
        if e.error:
            errors.append({"key": e.key, "error": e.error})
            continue
        g: dict[str, Any] = {"group_id": gid, "key": e.key, "prompt": e.prompt}
        if cfg.kind == "i2v":
            g["image_path"] = e.image_path
        g["videos"] = []
        groups.append(g)
    return groups, errors


def _doc(cfg: CandidateConfig, size: tuple[int, int, int], groups: list[dict], errors: list[dict]) -> dict:
    out_json = cfg.out_json_path
    return {
        "groups": groups,
        "errors": errors,
        "video_root": Path(os.path.relpath(Path(cfg.output_dir).resolve(), out_json.parent.resolve())).as_posix(),
        "config": {
            "base_model": str(cfg.base_model),
            "kind": cfg.kind,
            "num_frames": size[0],
            "height": size[1],
            "width": size[2],
            "num_inference_steps": int(cfg.num_inference_steps),
            "guidance_scale": float(cfg.guidance_scale),
            "fps": cfg.fps,
            "seeds": list(cfg.seeds),
            "prompts_json": str(cfg.prompts_json),
            "lora_path": None if cfg.lora_path is None else str(cfg.lora_path),
            "lora_scale": float(cfg.lora_scale),
            "shard": [int(cfg.shard_index), int(cfg.num_shards)],
        },
    }


def _warn_on_changed_settings(out_json: Path, doc: dict) -> None:
    if not out_json.is_file():
        return
    try:
        old = read_json(out_json).get("config", {})
    except (JSONInputError, AttributeError):
        return
    keys = ("base_model", "num_inference_steps", "guidance_scale", "lora_path", "lora_scale")
    changed = [k for k in keys if k in old and old[k] != doc["config"][k]]
    if changed:
        logger.warning(
            "%s was written with different %s; existing videos are kept (delete them to regenerate)",
            out_json, ", ".join(f"{k} ({old[k]!r} -> {doc['config'][k]!r})" for k in changed),
        )


def generate_candidates(cfg: CandidateConfig, pipe=None) -> dict:
    """Generate (or finish) the candidate videos of one shard and write its groups JSON.

    Args:
        cfg: run settings.
        pipe: an already loaded pipeline (from ``generate.pipeline.load_pipeline``); by default one is
            loaded once, and only if some video is missing.
    Returns:
        The groups document as written to ``cfg.out_json_path``.
    Raises:
        JSONInputError: missing/malformed prompts file.
        GenerationConfigError / LoraAdapterError: bad model folder, size or adapter.
        Any exception of the pipeline propagates (the JSON on disk lists every video finished so far;
        re-run to resume).
    """
    from tqdm.auto import tqdm

    cfg.output_dir = str(cfg.output_dir)
    size = resolve_video_size(read_model_defaults(cfg.base_model), cfg.num_frames, cfg.height, cfg.width)
    num_frames, height, width = size
    groups, errors = _prepare_entries(cfg)
    for err in errors:
        logger.error("skipping prompt entry: %s", err["error"])
    out_root = Path(cfg.output_dir)
    out_json = cfg.out_json_path
    doc = _doc(cfg, size, groups, errors)
    _warn_on_changed_settings(out_json, doc)

    todo: list[tuple[dict, int]] = []
    for g in tqdm(groups, desc="checking existing videos", unit="group", leave=False, disable=len(groups) < 50):
        for seed in cfg.seeds:
            rel = video_relpath(g["group_id"], seed)
            if video_is_complete(out_root / rel, num_frames, height, width):
                g["videos"].append({"video_path": rel, "seed": seed})
            else:
                todo.append((g, seed))
    atomic_write_json(out_json, doc)
    logger.info(
        "%d groups, %d videos done, %d to generate -> %s", len(groups),
        len(groups) * len(cfg.seeds) - len(todo), len(todo), out_json,
    )

    if todo:
        if pipe is None:
            pipe = load_pipeline(
                cfg.base_model, cfg.kind, gpu_id=cfg.gpu_id, lora_path=cfg.lora_path,
                lora_scale=cfg.lora_scale, offload=cfg.offload, progress_bar=False,
            )
        bar = tqdm(todo, desc="candidates", unit="video")
        image_of: tuple[str, Any] = ("", None)  # todo is grouped: load each first frame once
        for g, seed in bar:
            bar.set_postfix_str(f"{g['group_id']} seed {seed}", refresh=False)
            image = None
            if cfg.kind == "i2v":
                if image_of[0] != g["group_id"]:
                    image_of = (g["group_id"], load_image(g["image_path"], height, width))
                image = image_of[1]
            frames = generate_video(
                pipe, g["prompt"], image=image, seed=seed, num_frames=num_frames, height=height,
                width=width, num_inference_steps=cfg.num_inference_steps, guidance_scale=cfg.guidance_scale,
            )
            rel = video_relpath(g["group_id"], seed)
            save_video(frames, out_root / rel, fps=cfg.fps)
            g["videos"].append({"video_path": rel, "seed": seed})
            g["videos"].sort(key=lambda v: v["seed"])
            atomic_write_json(out_json, doc)
        bar.close()
    n_videos = sum(len(g["videos"]) for g in doc["groups"])
    logger.info("done: %d groups, %d videos, %d bad prompt entries -> %s",
                len(doc["groups"]), n_videos, len(errors), out_json)
    return doc
