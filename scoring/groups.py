"""The groups JSON of the batch scorer: reading it, the identity of a video, score results in it.

Input (``train_dpo/video_scorer.py``; video paths relative to a base folder, absolute ones as is)::

    {"groups": [{"group_id": "...", "prompt": "...", "image_path": "...",   # image_path: I2V
                 "videos": [{"video_path": "x/seed0.mp4", "seed": 0}, ...]}, ...], ...}

or a plain list of such groups. A scored video gets :data:`SCORE_KEYS` (and the keys of the extra
metrics it was scored with, :data:`EXTRA_METRIC_KEYS`) or ``"error"``; a dict document gets the run
settings under :data:`SETTINGS_KEY`.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Iterable

__all__ = [
    "SCORE_KEYS",
    "EXTRA_METRIC_KEYS",
    "SETTINGS_KEY",
    "InputFormatError",
    "load_groups",
    "video_keys",
    "has_score",
    "apply_result",
    "stored_result",
    "merge_shards",
]

SCORE_KEYS = ("consistency_score", "motion_norm", "motion_norm_released", "mse", "lpips", "coverage", "num_frames_used")
EXTRA_METRIC_KEYS = {"epipolar": ("epipolar", "epipolar_pairs_skipped")}  # metric -> video keys it writes
_EXTRA_KEYS = tuple(k for keys in EXTRA_METRIC_KEYS.values() for k in keys)
SETTINGS_KEY = "consistency_scorer"


class InputFormatError(ValueError):
    """The groups JSON is malformed or has the wrong structure (message names the file)."""


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
    return data, _check_groups(path, data)


def _check_groups(path: str | os.PathLike, data: Any) -> list:
    """The group list of a parsed groups JSON ``data`` read from ``path``; InputFormatError otherwise."""
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
    return groups


def video_keys(groups: list) -> list[list[tuple]]:
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


def has_score(v: dict) -> bool:
    """Whether a video entry holds a score (and no error)."""
    return isinstance(v, dict) and v.get("consistency_score") is not None and not v.get("error")


def apply_result(video: dict, result: dict) -> None:
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


def stored_result(video: dict) -> dict:
    """The score keys of an already scored video entry (extra-metric keys only where recorded)."""
    return {k: video.get(k) for k in SCORE_KEYS} | {k: video[k] for k in _EXTRA_KEYS if k in video}


def merge_shards(
    input_json: str | os.PathLike, shard_paths: Iterable[str | os.PathLike], output_json: str | os.PathLike
) -> dict[str, int]:
    """Join shard outputs into one output: the input JSON with every video's result from the shards.

    Videos are matched by :func:`video_keys` (group id and video path), so shards of any assignment
    merge, the round-robin shards of earlier versions included. Returns counts ``{"videos",
    "scored", "failed", "missing"}``.

    Raises:
        utils.jobs.ShardError: a shard file is missing, or shards were scored with different
            settings. JSONInputError / InputFormatError: unreadable or malformed inputs.
    """
    from utils.jobs import merge_shard_files

    data, groups = load_groups(input_json)
    keys = video_keys(groups)
    shard_paths = [Path(p) for p in shard_paths]
    counts = {"videos": 0, "scored": 0, "failed": 0, "missing": 0}

    def combine(docs: list) -> Any:
        results: dict[tuple, dict] = {}
        settings = None
        for sp, sdata in zip(shard_paths, docs):
            sgroups = _check_groups(sp, sdata)
            if isinstance(sdata, dict) and SETTINGS_KEY in sdata:
                settings = settings or sdata[SETTINGS_KEY]
            for g_keys, g in zip(video_keys(sgroups), sgroups):
                for k, v in zip(g_keys, g["videos"]):
                    if has_score(v) or v.get("error"):
                        results[k] = v
        return _fill(data, keys, results, settings, counts)

    merge_shard_files(shard_paths, output_json, combine, _settings_of)
    return counts


def _settings_of(doc: Any) -> dict | None:
    return doc.get(SETTINGS_KEY) if isinstance(doc, dict) else None


def _fill(data: Any, keys: list, results: dict, settings: dict | None, counts: dict) -> Any:
    """A copy of the input ``data`` with each video's result from ``results`` (by key); counts them."""
    out = copy.deepcopy(data)
    out_groups = out["groups"] if isinstance(out, dict) else out
    for g_keys, g in zip(keys, out_groups):
        for k, v in zip(g_keys, g["videos"]):
            counts["videos"] += 1
            r = results.get(k)
            if r is None:
                counts["missing"] += 1
                continue
            if has_score(r):
                apply_result(v, stored_result(r))
                counts["scored"] += 1
            else:
                apply_result(v, {"error": r["error"]})
                counts["failed"] += 1
    if isinstance(out, dict) and settings is not None:
        out[SETTINGS_KEY] = settings
    return out
