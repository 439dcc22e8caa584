"""Merging the shard groups JSONs of candidate generation (``01_generate.py --merge``).

Shard ``i`` of ``K`` (``generate.candidates``) writes ``groups.shard<i>of<K>.json`` beside the groups
JSON, holding a contiguous block of the prompt entries; :func:`merge_shards` joins the shards in index
order (= the prompt file order) into the groups JSON, through :func:`utils.jobs.merge_shard_files`
(every shard present, all written with the same settings, atomic write).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

from utils.io_utils import JSONInputError
from utils.jobs import merge_shard_files

logger = logging.getLogger(__name__)

__all__ = ["merge_shards"]


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
