"""Preference pairs from scored + encoded candidate groups, and the torch Dataset that feeds them.

Input: the JSON written by ``train_dpo/encode.py`` (candidate generation -> geometry scorer ->
latent encoder)::

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

``select_preference_pairs`` returns the pairs and the drop counts per rule (also logged).
"""

from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from utils.io_utils import read_json

logger = logging.getLogger(__name__)

__all__ = [
    "PairSelectionConfig",
    "PreferencePair",
    "select_preference_pairs",
    "split_pairs_by_group",
    "DPOPairDataset",
    "load_preference_datasets",
    "resolve_path",
    "default_base_path",
    "load_latents_file",
    "collate_pairs",
    "check_image_latents_uniform",
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


def default_base_path(json_path: str | os.PathLike, data: dict | None = None) -> Path:
    """Folder the paths of a groups JSON are relative to when no base path is given: the JSON's
    folder, joined with its top-level ``"video_root"`` when present (``generate/candidates.py``)."""
    folder = Path(json_path).resolve().parent
    root = data.get("video_root") if isinstance(data, dict) else None
    return folder / root if isinstance(root, str) and root else folder


def resolve_path(path: str | os.PathLike, base_path: str | os.PathLike | None) -> Path:
    """``path`` itself if absolute or ``base_path`` is None, else ``base_path / path``."""
    p = Path(path)
    if p.is_absolute() or base_path is None:
        return p
    return Path(base_path) / p


def load_latents_file(path: str | os.PathLike, key: str) -> torch.Tensor:
    """Load tensor ``key`` from a safetensors file (CPU).

    Raises:
        FileNotFoundError: the file does not exist.
        KeyError: the file has no tensor ``key`` (the message names the file).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"latent file not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        if key not in f.keys():
            raise KeyError(f"{path} has no tensor {key!r} (has {sorted(f.keys())})")
        return f.get_tensor(key)


class DPOPairDataset(Dataset):
    """Torch dataset of preference pairs, loaded from the encoder's safetensors files.

    Each item is a dict:

    * ``latents_w``, ``latents_l``: VAE latents in the model family's layout: CogVideoX ``[F, C, H, W]``
      (multiplied by the VAE scaling factor, unpadded: the trainer pads CogVideoX1.5's frame count),
      Wan2.2 ``[C, F, H, W]`` (normalised with ``latents_mean``/``latents_std``);
    * ``prompt_embeds``: ``[L, D]`` text embeddings of the group's prompt (T5 ``[226, 4096]`` for
      CogVideoX, UMT5 ``[512, 4096]`` for Wan2.2);
    * ``image_latents``: image-conditioning latents when the condition file has them (CogVideoX-I2V
      ``[F', C, H, W]``; Wan2.2-TI2V ``[C, 1, H, W]``, optional per group: a batch holds one kind,
      see :func:`collate_pairs`);
    * ``group_id``: str.

    Args:
        pairs: from :func:`select_preference_pairs`.
        base_path: folder the JSON paths are relative to.
        dtype: cast floating tensors to this dtype (None keeps the stored dtype).
        require_image_latents: raise when a condition file lacks ``image_latents`` (I2V training).

    Raises (on item access):
        FileNotFoundError / KeyError: a latent or condition file is missing or incomplete.
        ValueError: a pair has no ``condition_path``.
    """

    def __init__(
        self,
        pairs: list[PreferencePair],
        base_path: str | os.PathLike | None,
        dtype: torch.dtype | None = None,
        require_image_latents: bool = False,
    ):
        self.pairs = list(pairs)
        self.base_path = base_path
        self.dtype = dtype
        self.require_image_latents = require_image_latents

    def __len__(self) -> int:
        return len(self.pairs)

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.dtype) if self.dtype is not None and t.is_floating_point() else t

    def __getitem__(self, idx: int) -> dict[str, Any]:
        from safetensors import safe_open

        pair = self.pairs[idx]
        if not pair.condition_path:
            raise ValueError(f"group {pair.group_id} has no condition_path (run 03_encode.py first)")
        item: dict[str, Any] = {
            "latents_w": self._cast(
                load_latents_file(resolve_path(pair.winner["latent_path"], self.base_path), "latents")
            ),
            "latents_l": self._cast(
                load_latents_file(resolve_path(pair.loser["latent_path"], self.base_path), "latents")
            ),
            "group_id": pair.group_id,
        }
        cond = resolve_path(pair.condition_path, self.base_path)
        if not cond.is_file():
            raise FileNotFoundError(f"condition file not found: {cond}")
        with safe_open(str(cond), framework="pt") as f:
            keys = set(f.keys())
            if "prompt_embeds" not in keys:
                raise KeyError(f"{cond} has no tensor 'prompt_embeds'")
            item["prompt_embeds"] = self._cast(f.get_tensor("prompt_embeds"))
            if "image_latents" in keys:
                item["image_latents"] = self._cast(f.get_tensor("image_latents"))
            elif self.require_image_latents:
                raise KeyError(f"{cond} has no tensor 'image_latents' (encode with an I2V model)")
        if item["latents_w"].shape != item["latents_l"].shape:
            raise ValueError(
                f"group {pair.group_id}: winner and loser latents differ in shape "
                f"{tuple(item['latents_w'].shape)} vs {tuple(item['latents_l'].shape)}"
            )
        return item


def collate_pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate`` of :class:`DPOPairDataset` items that refuses a batch mixing pairs with
    and without ``image_latents`` (a text-image-to-video model such as Wan2.2-TI2V takes both kinds,
    but one batch is one kind: ``default_collate`` would silently drop the image latents of the
    whole batch when its first item has none, or fail with a bare ``KeyError`` otherwise).

    Raises:
        ValueError: names a group with and one without image latents.
    """
    from torch.utils.data import default_collate

    has = [("image_latents" in item) for item in items]
    if any(has) and not all(has):
        with_img = items[has.index(True)]["group_id"]
        without = items[has.index(False)]["group_id"]
        raise ValueError(
            f"one batch mixes pairs with image latents (group {with_img}) and without (group {without}); "
            "use batch_size 1 or encode every group alike (all with or all without image_path)"
        )
    return default_collate(items)


def check_image_latents_uniform(*datasets: DPOPairDataset) -> None:
    """Before training with ``batch_size > 1``: every condition file of ``datasets`` has
    ``image_latents`` or none has (reads the safetensors headers only); see :func:`collate_pairs`.

    Raises:
        ValueError: names a group with and one without image latents.
        FileNotFoundError: a condition file is missing.
    """
    from safetensors import safe_open

    seen: dict[bool, str] = {}
    for ds in datasets:
        for pair in ds.pairs:
            if not pair.condition_path:
                continue  # reported when the item is loaded
            cond = resolve_path(pair.condition_path, ds.base_path)
            if not cond.is_file():
                raise FileNotFoundError(f"condition file not found: {cond}")
            with safe_open(str(cond), framework="pt") as f:
                seen.setdefault("image_latents" in f.keys(), pair.group_id)
            if len(seen) == 2:
                raise ValueError(
                    f"the pairs mix groups with image latents (group {seen[True]}) and without (group "
                    f"{seen[False]}); a batch of more than one pair needs one kind: use --batch_size 1 "
                    "or encode every group alike (all with or all without image_path)"
                )


def load_preference_datasets(
    json_path: str | os.PathLike,
    base_path: str | os.PathLike | None = None,
    config: PairSelectionConfig | None = None,
    val_fraction: float = 0.02,
    split_seed: int = 0,
    dtype: torch.dtype | None = None,
    require_image_latents: bool = False,
) -> tuple[DPOPairDataset, DPOPairDataset, dict[str, Any]]:
    """Select pairs from ``json_path`` and split them into train/val datasets by group.

    ``base_path`` defaults to :func:`default_base_path` (the JSON's folder [+ ``video_root``]).
    Returns ``(train_ds, val_ds, stats)`` where ``stats`` is :func:`select_preference_pairs`' dict
    plus ``train_pairs``, ``val_pairs`` and the selection config.

    Raises:
        JSONInputError: missing/malformed JSON. ValueError: no pairs survive the filters.
    """
    cfg = config or PairSelectionConfig()
    data = read_json(json_path)
    pairs, stats = select_preference_pairs(data, cfg)
    if not pairs:
        hint, scored = "", stats["videos_total"] - stats["videos_error"]
        if scored and stats["videos_no_metric"] == scored:
            hint = (f"; no video has a finite {cfg.metric_name!r} (misspelled METRIC_NAME, or a metric the "
                    "scorer did not compute: train_dpo/video_scorer.py --extra_metrics)")  # fmt: skip
        raise ValueError(f"no preference pairs in {json_path} after filtering: {stats}{hint}")
    if base_path is None:
        base_path = default_base_path(json_path, data)
    train, val = split_pairs_by_group(pairs, val_fraction, split_seed)
    stats = dict(stats, train_pairs=len(train), val_pairs=len(val), selection=asdict(cfg))
    return (
        DPOPairDataset(train, base_path, dtype, require_image_latents),
        DPOPairDataset(val, base_path, dtype, require_image_latents),
        stats,
    )
