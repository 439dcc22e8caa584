"""Output files of the inference scripts and when an existing one may be kept (``--skip_existing``).

A plain generation writes ``<name>_seed<seed>.mp4`` and beside it ``<name>_seed<seed>.json``, its
*settings record*: what decides the video (:func:`generation_record`: prompt, image, base model,
adapter and LoRA scale, seed, steps, guidance, frames/size, fps). A search writes its settings
into its ``.search.json`` (``generate/search_cli.py``). The file name alone does not say which
adapter, scale, steps or guidance made a video, so with ``--skip_existing`` a video is kept only
when (:func:`stale_reason`):

* the video exists and decodes;
* its record exists, has no ``error``, and every expected setting equals the recorded one;
* it is newer than the adapter's weights (an adapter retrained in place gives new videos).

Records are written atomically after the video, and the old record is removed before a video is
replaced, so a run killed in between leaves a video without a record: generated again.
"""

from __future__ import annotations

import hashlib

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from utils.io_utils import JSONInputError, atomic_write_json, read_json, slugify

__all__ = ["output_name", "output_path", "record_path", "generation_record", "stale_reason", "save_video_with_record"]


def output_name(kind: str, prompt: str, image_path: str | None, max_len: int = 60) -> str:
    """The video's base name: the prompt's slug (t2v) or the image file's stem slug (i2v).

    A slug cut at ``max_len`` characters gets ``-<first 8 hex of sha1(text)>`` appended, so long
    prompts that share their first words (202 of the 1,000 DL3DV captions share a 60-character
    slug with another: 871 names) never write the same file; short names are unchanged.
    """
    text = Path(image_path).stem if kind == "i2v" else prompt
    full = slugify(text, max_len=10_000)
    if len(full) <= max_len:
        return full
    return f"{slugify(text, max_len=max_len)}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]}"


def output_path(out_dir: str | os.PathLike, name: str, seed: int) -> Path:
    """``<out_dir>/<name>_seed<seed>.mp4``."""
    return Path(out_dir) / f"{name}_seed{int(seed)}.mp4"


def record_path(video: str | os.PathLike) -> Path:
    """The settings record of a plain video: ``<video stem>.json`` beside it."""
    return Path(video).with_suffix(".json")


def _model_id(path_or_id: str | os.PathLike | None) -> str | None:
    """A local folder as its absolute path (so ``./m`` and ``/abs/m`` agree), a hub id as given."""
    if path_or_id is None:
        return None
    p = Path(path_or_id).expanduser()
    return str(p.resolve()) if p.exists() else str(path_or_id)


def generation_record(*, kind: str, prompt: str, image_path: str | None, base_model: str, lora_path: str | None,
                      lora_scale: float, seed: int, num_inference_steps: int, guidance_scale: float,
                      num_frames: int, height: int, width: int, fps: float) -> dict[str, Any]:
    """The settings that decide a generated video, JSON-ready (local paths made absolute).

    ``lora_scale`` is the multiplier of the adapter's ``alpha / r`` actually used (after the
    per-model default); it is recorded as None when there is no adapter (``lora_path`` None).
    """
    return {"kind": kind, "prompt": prompt, "image": _model_id(image_path), "base_model": _model_id(base_model),
            "lora_path": _model_id(lora_path), "lora_scale": float(lora_scale) if lora_path is not None else None,
            "seed": int(seed), "num_inference_steps": int(num_inference_steps), "guidance_scale": float(guidance_scale),
            "num_frames": int(num_frames), "height": int(height), "width": int(width), "fps": float(fps)}  # fmt: skip


def _differences(recorded: Any, expected: Any, prefix: str = "") -> list[str]:
    """Dotted keys of ``expected`` whose recorded value differs (one level into nested dicts)."""
    if isinstance(recorded, dict) and isinstance(expected, dict) and not prefix:
        out = []
        for k in expected:
            out += _differences(recorded.get(k), expected[k], k) if k in recorded else [k]
        return out
    if isinstance(recorded, dict) and isinstance(expected, dict):
        keys = set(recorded) | set(expected)
        return [f"{prefix}.{k}" for k in sorted(keys) if recorded.get(k) != expected.get(k)]
    return [] if recorded == expected else [prefix]


def stale_reason(video: str | os.PathLike, record: str | os.PathLike, expected: Mapping[str, Any],
                 lora_path: str | os.PathLike | None) -> str | None:
    """Why ``video`` must be made again, or None when it is a finished output of ``expected``.

    Args:
        video: the mp4.
        record: its JSON (plain: :func:`record_path`; search: the ``.search.json``).
        expected: ``{key: value}`` every one of which must equal the record's (nested dicts are
            compared whole, differences reported per sub-key); other record keys are ignored.
        lora_path: the adapter folder; its ``*.safetensors`` / ``*.bin`` must be older than the video.
    Returns:
        None (keep it) or a short reason, e.g. ``"settings differ: lora_path, lora_scale"``.
    """
    from utils.video_utils import VideoReadError, get_video_info

    video, record = Path(video), Path(record)
    if not video.is_file():
        return "no video"
    try:
        rec = read_json(record)
    except JSONInputError:
        return f"no readable settings record {record.name}"
    if not isinstance(rec, dict):
        return f"settings record {record.name} is not a JSON object"
    if rec.get("error"):
        return f"the recorded run failed: {rec['error']}"
    diff = _differences(rec, json.loads(json.dumps(dict(expected))))
    if diff:
        return "settings differ: " + ", ".join(diff)
    if lora_path is not None:
        weights = [p for p in Path(lora_path).iterdir() if p.suffix in (".safetensors", ".bin")]
        if any(p.stat().st_mtime_ns > video.stat().st_mtime_ns for p in weights):
            return "the adapter is newer than the video"
    try:
        get_video_info(video)
    except VideoReadError as e:
        return f"the video does not decode: {e}"
    return None


def save_video_with_record(frames: np.ndarray, video: str | os.PathLike, record: Mapping[str, Any],
                           fps: float) -> Path:
    """Write the video (atomic), then its settings record (atomic); the old record goes first.

    Returns:
        The video path.
    """
    from generate.pipeline import save_video

    video = Path(video)
    record_path(video).unlink(missing_ok=True)
    path = save_video(frames, video, fps=fps)
    atomic_write_json(record_path(video), dict(record))
    return path
