"""Preference pairs from scored candidate groups: one (winner, loser) pair per prompt.

Input: the groups JSON of the geometry scorer, as ``train_dpo/encode.py`` extends it (candidate
generation -> geometry scorer -> latent encoder)::

    {"groups": [{"group_id": "...", "prompt": "...", "image_path": "...",     # image_path: I2V only
                 "condition_path": "latents/<group>/condition.safetensors",
                 "videos": [{"video_path": "...", "seed": 0,
                             "consistency_score": 0.41, "motion_norm": 0.02, "motion_norm_released": 0.03,
                             "mse": ..., "lpips": ...,
                             "coverage": ..., "latent_path": "latents/<group>/....safetensors"},
                            {"video_path": "...", "seed": 1, "error": "cannot read video ..."}]}]}

All paths are relative to a base path (absolute paths are used as they are).

Pair selection (VideoGPA, arXiv 2601.23286, Sec. 3.3: one winner/loser pair per prompt, the best
and the worst candidate by geometry consistency), applied per group in this order:

1. videos are dropped when they carry ``"error"`` or lack the metric (``no_metric``: absent, null
   or NaN, e.g. an ``epipolar`` error with every frame pair skipped), lack a
   ``latent_path`` (``no_latent``), or have ``video[motion_metric] < motion_threshold``
   (``low_motion``: near-static videos are trivially "consistent"; a video without the motion key
   is dropped too when a motion threshold is set, with a warning). ``motion_metric`` defaults to
   ``"motion_norm_released"`` (raw extrinsic translations, the released filter); ``"motion_norm"``
   measures camera-centre displacement (see :mod:`metrics.consistency`);
2. the group is dropped when fewer than 2 videos remain (``too_few_videos``);
3. winner = best, loser = worst by ``metric_name`` under ``metric_mode`` (``"min"``: lower is
   better, the default for the reprojection-error-like ``consistency_score`` and for the scorer's
   optional ``epipolar``; ``"max"``: higher is better; any numeric video key can be named). Ties
   keep the earlier video as winner and the later one as loser;
4. the group is dropped when ``|m_w - m_l| < min_gap`` (``min_gap``);
5. the group is dropped when the winner is not good enough: ``m_w > metric_threshold`` in min
   mode, ``m_w < metric_threshold`` in max mode (``metric_threshold``; None, the default, skips
   this rule: the released trainer defines ``metric_threshold = 0.8`` but never passes it to its
   dataset, ``train_dpo/*/03_train.py:main_train`` -> ``DPODataset(...)``, so the released run
   had no threshold).

Defaults reproduce the released selection (upstream ``train_dpo/dataset.py:DPODataset``
``_create_preference_pairs`` with ``min_gap=0.05``, ``motion_threshold=0.001`` from the trainers).

``select_preference_pairs`` returns the pairs and the drop counts per rule (also logged);
``split_pairs_by_group`` splits them into train/validation by group. ``train_dpo.dataset`` loads their
latents for training.
"""

from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass
from typing import Any

from utils.io_utils import read_json

logger = logging.getLogger(__name__)

__all__ = [
    "METRIC_MODES",
    "MOTION_METRICS",
    "PairSelectionConfig",
    "PreferencePair",
    "select_preference_pairs",
    "split_pairs_by_group",
]

METRIC_MODES = ("min", "max")
MOTION_METRICS = ("motion_norm_released", "motion_norm")  # video keys written by the scorer


@dataclass
class PairSelectionConfig:
    """Rules that turn a group of scored candidates into one (winner, loser) pair.

    Attributes:
        metric_name: video key holding the score (``"consistency_score"``).
        metric_mode: ``"min"`` (lower is better) or ``"max"``.
        min_gap: required ``|m_w - m_l|`` (>= 0).
        metric_threshold: winner must satisfy ``m_w <= threshold`` (min) / ``>=`` (max); None: off
            (the released run).
        motion_threshold: videos with ``video[motion_metric] < threshold`` are dropped; None: off.
        motion_metric: video key of the camera motion: ``"motion_norm_released"`` (released) or
            ``"motion_norm"`` (camera centres).
        require_latents: drop videos without ``latent_path`` (True for training; False lets the
            encoder or a report select pairs from a scored-only JSON).
    """

    metric_name: str = "consistency_score"
    metric_mode: str = "min"
    min_gap: float = 0.05
    metric_threshold: float | None = None
    motion_threshold: float | None = 0.001
    motion_metric: str = "motion_norm_released"
    require_latents: bool = True

    def __post_init__(self):
        if self.metric_mode not in METRIC_MODES:
            raise ValueError(f"metric_mode must be one of {METRIC_MODES}, got {self.metric_mode!r}")
        if self.min_gap < 0:
            raise ValueError(f"min_gap must be >= 0, got {self.min_gap}")
        if self.motion_metric not in MOTION_METRICS:
            raise ValueError(f"motion_metric must be one of {MOTION_METRICS}, got {self.motion_metric!r}")


@dataclass
class PreferencePair:
    """One training pair. Paths are as written in the JSON (relative to the base path)."""

    group_id: str
    prompt: str
    winner: dict[str, Any]
    loser: dict[str, Any]
    metric_w: float
    metric_l: float
    condition_path: str | None = None
    image_path: str | None = None
    @property
    def gap(self) -> float:
        return abs(self.metric_w - self.metric_l)


def _as_float(x) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def select_preference_pairs(
    data: dict | str | os.PathLike, config: PairSelectionConfig | None = None
) -> tuple[list[PreferencePair], dict[str, int]]:
    """Select one (winner, loser) pair per group (rules in the module docstring).

    Args:
        data: the parsed JSON (``{"groups": [...]}``) or a path to it.
        config: selection rules (defaults: the released VideoGPA values).

    Returns:
        ``(pairs, stats)``; ``stats`` counts ``groups_total``, ``pairs``, the groups dropped per
        rule (``dropped_too_few_videos``, ``dropped_min_gap``, ``dropped_metric_threshold``) and
        the videos dropped per rule (``videos_total``, ``videos_error``, ``videos_no_metric``,
        ``videos_no_latent``, ``videos_low_motion``).

    Raises:
        JSONInputError: ``data`` is a path that is missing or not valid JSON.
        ValueError: the JSON has no ``"groups"`` list.
    """
    cfg = config or PairSelectionConfig()
    if not isinstance(data, dict):
        data = read_json(data)
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list):
        raise ValueError('preference JSON must be an object with a "groups" list')
    stats = {
        "groups_total": len(groups),
        "pairs": 0,
        "dropped_too_few_videos": 0,
        "dropped_min_gap": 0,
        "dropped_metric_threshold": 0,
        "videos_total": 0,
        "videos_error": 0,
        "videos_no_metric": 0,
        "videos_no_latent": 0,
        "videos_low_motion": 0,
    }
    pairs: list[PreferencePair] = []
    no_motion_key = 0
    sign = 1.0 if cfg.metric_mode == "min" else -1.0
    for gi, group in enumerate(groups):
        videos = group.get("videos") or []
        stats["videos_total"] += len(videos)
        kept: list[tuple[float, int, dict]] = []
        for vi, video in enumerate(videos):
            if video.get("error"):
                stats["videos_error"] += 1
                continue
            m = _as_float(video.get(cfg.metric_name))
            if m is None:
                stats["videos_no_metric"] += 1
                continue
            if cfg.require_latents and not video.get("latent_path"):
                stats["videos_no_latent"] += 1
                continue
            if cfg.motion_threshold is not None:
                motion = _as_float(video.get(cfg.motion_metric))
                if motion is None or motion < cfg.motion_threshold:
                    stats["videos_low_motion"] += 1
                    no_motion_key += motion is None
                    continue
            kept.append((m, vi, video))
        gid = str(group.get("group_id", gi))
        if len(kept) < 2:
            stats["dropped_too_few_videos"] += 1
            logger.debug("group %s: fewer than 2 usable videos", gid)
            continue
        ordered = sorted(kept, key=lambda x: (sign * x[0], x[1]))
        (m_w, _, win), (m_l, _, lose) = ordered[0], ordered[-1]
        if abs(m_w - m_l) < cfg.min_gap or win is lose:
            stats["dropped_min_gap"] += 1
            continue
        if cfg.metric_threshold is not None and sign * m_w > sign * cfg.metric_threshold:
            stats["dropped_metric_threshold"] += 1
            continue
        pairs.append(
            PreferencePair(
                group_id=gid,
                prompt=str(group.get("prompt", "")),
                winner=win,
                loser=lose,
                metric_w=m_w,
                metric_l=m_l,
                condition_path=group.get("condition_path"),
                image_path=group.get("image_path"),
            )
        )
    stats["pairs"] = len(pairs)
    if no_motion_key:
        logger.warning(
            "%d video(s) have no %r and were dropped by the motion filter (scored by an older scorer? "
            "re-score, or choose another motion_metric)", no_motion_key, cfg.motion_metric,
        )  # fmt: skip
    logger.info(
        "preference pairs: %d of %d groups (dropped: %d too few usable videos, %d gap < %s, "
        "%d winner beyond threshold %s; videos dropped: %d error, %d no %s, %d no latents, "
        "%d %s < %s)",
        stats["pairs"], stats["groups_total"], stats["dropped_too_few_videos"], stats["dropped_min_gap"],
        cfg.min_gap, stats["dropped_metric_threshold"], cfg.metric_threshold, stats["videos_error"],
        stats["videos_no_metric"], cfg.metric_name, stats["videos_no_latent"], stats["videos_low_motion"],
        cfg.motion_metric, cfg.motion_threshold,
    )  # fmt: skip
    return pairs, stats


def split_pairs_by_group(
    pairs: list[PreferencePair], val_fraction: float = 0.02, seed: int = 0
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Split pairs into train/val by ``group_id`` (no group in both).

    ``round(n_groups * val_fraction)`` groups go to validation, at least 1 when there are >= 2
    groups and ``val_fraction > 0`` (and never all of them). The choice is a seeded shuffle of the
    sorted group ids, so it is reproducible and independent of the JSON order.

    Returns:
        ``(train_pairs, val_pairs)`` in their original order.

    Raises:
        ValueError: ``val_fraction`` outside [0, 1).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    groups = sorted({p.group_id for p in pairs})
    n_val = int(round(len(groups) * val_fraction))
    if val_fraction > 0 and len(groups) >= 2:
        n_val = min(max(n_val, 1), len(groups) - 1)
    else:
        n_val = 0
    rng = random.Random(seed)
    rng.shuffle(groups)
    val_groups = set(groups[:n_val])
    train = [p for p in pairs if p.group_id not in val_groups]
    val = [p for p in pairs if p.group_id in val_groups]
    return train, val
