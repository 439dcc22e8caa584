"""The settings record of a scores CSV: a resume must use the settings that made its rows.

A resumed run keeps the rows already in ``scores.csv``; rows made with other sampler or scorer
settings would be mixed silently into one table. So next to every scores CSV (``scores.csv``,
``scores.shard<i>of<K>.csv``) lies ``<stem>.settings.json`` (written atomically, before the
first row) with every setting that changes a row:

* generation (not with ``--score_only``): base model and kind, steps, guidance, frames/size, fps,
  the LoRA weights and every adapter arm's path;
* scoring: ``points_source``, ``mask_uncovered``, ``image_size``, ``score_num_frames``,
  ``conf_thres``, ``lpips_weight``, the geometry model and weights, the LPIPS weights;
* with ``--score_only``: the videos folder.

Seeds, prompt count, device, GPU and offloading are not recorded: they add rows or change where
they are computed, not what a row holds. A run whose settings differ from the record stops
(:class:`SettingsMismatchError`, exit 2) unless ``--overwrite`` is given. Local paths are recorded
resolved, hub ids as given.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from utils.io_utils import atomic_write_json, read_json

logger = logging.getLogger(__name__)

__all__ = [
    "GENERATION_KEYS",
    "SCORING_KEYS",
    "SettingsMismatchError",
    "settings_path",
    "row_settings",
    "differing_keys",
    "read_settings",
    "write_settings",
    "describe_difference",
    "settings_gate",
]

GENERATION_KEYS = ("base_model", "kind", "num_inference_steps", "guidance_scale", "num_frames", "height", "width", "fps")
SCORING_KEYS = ("points_source", "mask_uncovered", "image_size", "score_num_frames", "conf_thres", "lpips_weight",
                "geometry_model", "geometry_weights", "lpips_vgg_weights", "lpips_lin_weights")
_PATH_KEYS = {"base_model", "geometry_weights", "lpips_vgg_weights", "lpips_lin_weights", "videos_dir"}


class SettingsMismatchError(ValueError):
    """A resume with settings that differ from the scores CSV's record; the message names the keys."""


def settings_path(scores_csv: str | os.PathLike) -> Path:
    """``<folder>/<stem>.settings.json`` of a scores CSV (``scores.csv`` -> ``scores.settings.json``)."""
    p = Path(scores_csv)
    return p.with_name(f"{p.stem}.settings.json")


def _path(v: Any) -> Any:
    if v is None:
        return None
    p = Path(v).expanduser()
    return str(p.resolve()) if p.exists() else str(v)


def row_settings(s: Any, arms: Iterable = ()) -> dict:
    """The record of a run: ``s`` the resolved settings namespace (``evaluation.run.resolve_settings``),
    ``arms`` its :class:`evaluation.arms.Arm` list. JSON-ready (lists, strings, numbers, None)."""
    rec: dict[str, Any] = {"mode": "score_only" if s.score_only else "generate"}
    if s.score_only:
        rec["videos_dir"] = _path(s.videos_dir)
    else:
        for k in GENERATION_KEYS:
            rec[k] = getattr(s, k)
        rec["lora_weights"] = [float(w) for w in s.lora_weights]
        rec["arms"] = {a.name: _path(a.adapter) for a in arms if not a.is_original}
    for k in SCORING_KEYS:
        rec[k] = getattr(s, k)
    for k in _PATH_KEYS & rec.keys():
        rec[k] = _path(rec[k])
    return json.loads(json.dumps(rec))  # the form it has once read back (tuples -> lists)


def differing_keys(old: Mapping, new: Mapping) -> list[str]:
    """Keys whose values differ (or that only one record has), sorted. ``8`` equals ``8.0``."""
    return sorted(k for k in set(old) | set(new) if k not in old or k not in new or old[k] != new[k])


def describe_difference(old: Mapping, new: Mapping, keys: Iterable[str]) -> str:
    """``key: old -> new`` for each key, ``; ``-joined (for error messages)."""
    missing = "(not recorded)"
    return "; ".join(f"{k}: {old.get(k, missing)!r} -> {new.get(k, missing)!r}" for k in keys)


def read_settings(scores_csv: str | os.PathLike) -> dict | None:
    """The record next to ``scores_csv``, or None when there is none.

    Raises:
        utils.io_utils.JSONInputError: the record exists but is not valid JSON.
    """
    p = settings_path(scores_csv)
    return read_json(p) if p.is_file() else None


def write_settings(scores_csv: str | os.PathLike, record: Mapping) -> Path:
    """Write ``record`` next to ``scores_csv`` (atomic); returns its path."""
    p = settings_path(scores_csv)
    atomic_write_json(p, dict(record))
    return p


def settings_gate(s: Any, arms: list, items: list, out_csv: Path, has_rows: bool) -> tuple[dict, bool]:
    """Check a run's settings against ``out_csv``'s record before any row is written.

    Args:
        s: the resolved settings namespace; ``arms``: its arms; ``items``: this shard's prompt items
            (their videos are the ones deleted by ``--overwrite``); ``has_rows``: ``out_csv`` has rows.

    Returns ``(record, keep_rows)``: ``keep_rows`` False when ``--overwrite`` discarded the rows (then
    the videos of this run made with other generation settings are deleted too, so that they are
    generated again). A fresh or matching run (re)writes the record.

    Raises:
        evaluation.run_settings.SettingsMismatchError: the settings differ and no ``--overwrite``.
    """
    from evaluation.arms import arm_video_keys

    record = row_settings(s, arms)
    old = read_settings(out_csv)
    if old is None and not has_rows:
        write_settings(out_csv, record)
        return record, True
    keys = differing_keys(old, record) if old is not None else []
    if old is not None and not keys:
        return record, True
    what = (f"settings that differ in {', '.join(keys)} ({describe_difference(old, record, keys)})" if old is not None
            else "unknown settings (no settings record)")
    if not s.overwrite:
        raise SettingsMismatchError(
            f"{out_csv} holds rows made with {what}; resuming would mix them with this run's. Use another "
            "--output_dir, the same settings, or --overwrite to discard its rows (and this run's videos made "
            "with other generation settings) and start over")
    logger.warning("--overwrite: discarding the rows of %s (made with %s)", out_csv, what)
    if not s.score_only:
        regen_all = old is None or old.get("mode") != "generate" or any(k in keys for k in GENERATION_KEYS)
        old_arms = (old or {}).get("arms") or {}
        stale = [a for a in arms if regen_all or (not a.is_original and old_arms.get(a.name) != record["arms"].get(a.name))]
        paths = [s.videos_dir / key.prompt_id / key.name for a in stale for key, _ in arm_video_keys(a, items, s.seeds)]
        removed = 0
        for f in paths:
            if f.is_file():
                f.unlink()
                removed += 1
        logger.warning("--overwrite: deleted %d video(s) of arm(s) %s made with the old settings",
                       removed, ", ".join(a.name for a in stale) or "-")
    write_settings(out_csv, record)
    return record, False
