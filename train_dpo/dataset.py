"""The torch Dataset of Diffusion-DPO training: preference pairs (``train_dpo.pairs``) -> latent tensors.

:func:`load_preference_datasets` reads the encoded groups JSON (``train_dpo/encode.py``: ``latent_path``
per video, ``condition_path`` per group, paths relative to a base path), selects one pair per group
(:func:`train_dpo.pairs.select_preference_pairs`), splits them by group and returns two
:class:`DPOPairDataset`, whose items are the winner / loser latents and the group's condition
(prompt embeddings [+ image latents]) read from the encoder's safetensors files.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from train_dpo.pairs import PairSelectionConfig, PreferencePair, select_preference_pairs, split_pairs_by_group
from utils.io_utils import read_json

__all__ = [
    "DPOPairDataset",
    "load_preference_datasets",
    "resolve_path",
    "default_base_path",
    "load_latents_file",
    "collate_pairs",
    "check_image_latents_uniform",
]


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
