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
(``utils.video_utils.write_video``); a re-run skips every video that exists and decodes with the
expected frame count and size, and regenerates any other (corrupt) one.

``group_id`` = ``<slug of key>-<8 hex of sha1(key, prompt[, image file name])>``: deterministic,
file-system safe, and new when the prompt text changes.

Sharding (``utils.jobs``, shared with the scorer and the encoder): ``--num_shards K --shard_index i``
gives shard ``i`` a contiguous block of the prompt entries, so concatenating the shards in index
order restores the prompt file order; merge them with ``--merge`` (01_generate.py) or
``python -m generate.candidates merge --output_dir DIR`` (every shard must be there and written
with the same settings, else exit 2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

if __package__ in (None, ""):  # `python generate/candidates.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generate.model_defaults import read_model_defaults, resolve_video_size  # noqa: E402
from generate.pipeline import (  # noqa: E402
    OFFLOAD_MODES,
    GenerationConfigError,
    launcher_info,
    generate_video,
    load_image,
    load_pipeline,
    save_video,
)
from generate.prompts import PromptEntry, load_prompt_entries  # noqa: E402
from utils.config_cli import Arg, build_config_parser, config_from_args  # noqa: E402
from utils.io_utils import JSONInputError, atomic_write_json, read_json, slugify  # noqa: E402
from utils.jobs import find_shards, merge_shard_files, shard_path, shard_range  # noqa: E402
from utils.launcher import SHARD_HELP, LaunchInfo  # noqa: E402
from utils.log_filters import quiet_expected_messages  # noqa: E402
from utils.lora import LoraAdapterError  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = [
    "GROUPS_JSON_NAME",
    "CandidateConfig",
    "group_id_for",
    "video_relpath",
    "video_is_complete",
    "generate_candidates",
    "merge_shards",
    "build_arg_parser",
    "run_from_args",
    "main",
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


def merge_shards(shard_jsons: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> dict:
    """Join shard groups JSONs into one groups JSON (atomic write to ``out_path``, :func:`utils.jobs.merge_shard_files`).

    Groups keep the shard order (shard 0 first), which is the prompt file order. A group present in
    several shards (e.g. runs with different K) is listed once with the union of its videos. Each
    shard's ``video_root`` is re-expressed relative to ``out_path``'s folder.

    Args:
        shard_jsons: the shard files, e.g. from :func:`utils.jobs.find_shards`.
        out_path: the merged groups JSON.
    Returns:
        The merged document (``config.shard`` removed, ``config.merged_from`` = shard count).
    Raises:
        JSONInputError: a shard file is missing/malformed/has no ``groups`` list, the shards point
            to different output roots, or were generated with different settings (``config`` other
            than ``shard``: :class:`utils.jobs.ShardError`); the message names the file.
    """
    out_path = Path(out_path)
    paths = [Path(sp) for sp in shard_jsons]

    def settings_of(doc: Any) -> dict | None:
        cfg = doc.get("config") if isinstance(doc, dict) else None
        return {k: v for k, v in cfg.items() if k != "shard"} if isinstance(cfg, dict) else None

    def combine(docs: list) -> dict:
        merged: dict[str, dict] = {}
        errors: list[dict] = []
        roots: set[Path] = set()
        config: dict | None = None
        for sp, doc in zip(paths, docs):
            if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
                raise JSONInputError(f"{sp}: not a groups JSON (no 'groups' list)")
            roots.add((sp.parent / doc.get("video_root", ".")).resolve())
            if config is None and isinstance(doc.get("config"), dict):
                config = settings_of(doc)
            errors.extend(doc.get("errors") or [])
            for i, g in enumerate(doc["groups"]):
                if not isinstance(g, dict) or "group_id" not in g:
                    raise JSONInputError(f"{sp}: groups[{i}] has no 'group_id'")
                if g["group_id"] not in merged:
                    merged[g["group_id"]] = {**g, "videos": list(g.get("videos") or [])}
                    continue
                have = {v["seed"] for v in merged[g["group_id"]]["videos"]}
                merged[g["group_id"]]["videos"] += [v for v in g.get("videos") or [] if v["seed"] not in have]
                merged[g["group_id"]]["videos"].sort(key=lambda v: v["seed"])
                logger.warning("group %s appears in several shards; videos merged", g["group_id"])
        if len(roots) > 1:
            raise JSONInputError(f"shards {list(map(str, paths))} point to different output roots {sorted(map(str, roots))}")
        root = roots.pop() if roots else out_path.parent.resolve()
        return {
            "groups": list(merged.values()),
            "errors": errors,
            "video_root": Path(os.path.relpath(root, out_path.parent.resolve())).as_posix(),
            "config": {**(config or {}), "merged_from": len(paths)},
        }

    out = merge_shard_files(paths, out_path, combine, settings_of)
    logger.info("merged %d shard(s): %d groups -> %s", len(paths), len(out["groups"]), out_path)
    return out


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------


CANDIDATE_ARGS: dict[str, dict[str, str | Arg]] = {
    "model and prompts": {
        "base_model": "diffusers folder or hub id",
        "kind": Arg("text-to-video or image-to-video", choices=("t2v", "i2v")),
        "prompts_json": "prompts or captions JSON",
        "output_dir": "output root of <group_id>/seed_<seed>.mp4",
        "groups_json": "groups JSON (none: <output_dir>/groups.json)",
        "num_prompts": "only the first N prompt entries (none: all)",
    },
    "sampling": {
        "num_seeds": "videos per prompt",
        "seed_start": "seeds seed_start .. seed_start + num_seeds - 1",
        "num_frames": "frames per video (none: the checkpoint's)",
        "height": "height in pixels (none: the checkpoint's)",
        "width": "width in pixels (none: the checkpoint's)",
        "num_inference_steps": "sampler steps",
        "guidance_scale": "classifier-free guidance scale",
        "fps": "frame rate of the written mp4",
        "lora_path": "generate with a LoRA adapter (e.g. for a 2nd round)",
        "lora_scale": "multiplier of the LoRA delta",
    },
    "hardware and sharding": {
        "num_shards": f"split the prompts into K shards ({SHARD_HELP})",
        "shard_index": "which shard this process generates",
        "gpu_id": "CUDA device index (none: $LOCAL_RANK, else 0)",
        "offload": Arg("CPU offloading of the pipeline", choices=tuple(OFFLOAD_MODES)),
    },
}


def build_arg_parser(
    constants: Mapping[str, Any] | None = None, description: str | None = None
) -> argparse.ArgumentParser:
    """Parser of ``01_generate.py`` / ``python -m generate.candidates generate``: every
    :class:`CandidateConfig` field plus ``--merge``.

    Args:
        constants: a per-model script's settings (``{"BASE_MODEL": ..., "KIND": "i2v"}``, any case).
    The shard defaults come from the launcher environment (:mod:`utils.launcher`); inconsistent
    launcher variables do not raise here: the parsed namespace carries ``launch_error`` and
    :func:`run_from_args` reports it (exit code 2).

    Raises:
        SystemExit(2): a constant names no setting (message names it and the nearest one).
    """
    try:
        launch, launch_error = launcher_info(), None
    except GenerationConfigError as e:  # e.g. RANK=4 with WORLD_SIZE=4: reported by run_from_args
        launch, launch_error = LaunchInfo(), str(e)
    p = build_config_parser(
        CandidateConfig, CANDIDATE_ARGS, constants=constants,
        defaults={"num_shards": launch.num_shards, "shard_index": launch.shard_index},
        description=description or "Generate DPO candidate videos (several seeds per prompt).",
    )  # fmt: skip
    p.set_defaults(launch_error=launch_error)
    p.add_argument("--merge", action="store_true",
                   help="do not generate: merge the shard JSONs of --groups_json into it")  # fmt: skip
    return p


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_expected_messages()


def run_from_args(args: argparse.Namespace) -> int:
    """Run generation (or ``--merge``) from parsed :func:`build_arg_parser` arguments; returns the exit code.

    0: done (bad prompt entries are recorded in the JSON's ``errors`` and logged, not fatal);
    2: configuration error (message on stderr).
    """
    _setup_logging()
    try:
        if getattr(args, "launch_error", None):
            raise GenerationConfigError(args.launch_error)
        if args.merge:
            groups_json = Path(args.groups_json) if args.groups_json else Path(args.output_dir) / GROUPS_JSON_NAME
            shards = find_shards(groups_json, args.num_shards if args.num_shards > 1 else None)
            merge_shards(shards, groups_json)
            print(f"merged {len(shards)} shard(s) -> {groups_json}")
            return 0
        cfg = config_from_args(CandidateConfig, args)
        generate_candidates(cfg)
    except (GenerationConfigError, LoraAdapterError, JSONInputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None, constants: Mapping[str, Any] | None = None) -> int:
    """``python -m generate.candidates {generate,merge} ...``; returns the exit code.

    ``generate`` takes the flags of :func:`build_arg_parser`; ``merge`` takes shard files (or
    ``--output_dir`` / ``--groups_json`` to find them) and ``--out`` (default: the groups JSON).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        p = argparse.ArgumentParser(prog="python -m generate.candidates merge",
                                    description="Join shard groups JSONs into one groups JSON.")
        p.add_argument("shards", nargs="*", help="shard JSON files (default: found next to --groups_json)")
        p.add_argument("--output_dir", default=".", help="output root holding groups.json and its shards")
        p.add_argument("--groups_json", default=None, help="default: <output_dir>/groups.json")
        p.add_argument("--num_shards", type=int, default=None)
        p.add_argument("--out", default=None, help="merged JSON (default: the groups JSON)")
        a = p.parse_args(argv[1:])
        _setup_logging()
        groups_json = Path(a.groups_json) if a.groups_json else Path(a.output_dir) / GROUPS_JSON_NAME
        try:
            shards = [Path(s) for s in a.shards] or find_shards(groups_json, a.num_shards)
            out = Path(a.out) if a.out else groups_json
            merge_shards(shards, out)
        except JSONInputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"merged {len(shards)} shard(s) -> {out}")
        return 0
    if argv[:1] == ["generate"]:
        argv = argv[1:]
    return run_from_args(build_arg_parser(constants).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
