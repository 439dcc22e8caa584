"""The shards of a latent encoding (``03_encode.py --num_shards K``, ``train_dpo/encode.py``): their settings and their merge.

A shard's output is ``utils.jobs.shard_path(output_json, i, K)``: the input JSON with only the
shard's contiguous block of groups (``utils.jobs.shard_range``), encoded, and the run settings under
:data:`SHARD_KEY`. :func:`merge_encoded_shards` joins them (``03_encode.py --merge``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils.io_utils import JSONInputError, read_json
from utils.jobs import ShardError, find_shards, merge_shard_files

if TYPE_CHECKING:
    from train_dpo.encode import EncodeConfig

__all__ = ["SHARD_KEY", "shard_settings", "merge_encoded_shards"]

SHARD_KEY = "encode_shard"  # in a shard's output: {"index", "num_shards", "settings"}


def shard_settings(cfg: EncodeConfig) -> dict[str, Any]:
    """What every shard of one encoding must share (else their latents do not belong together)."""
    return {"base_model": str(cfg.base_model), "input_json": str(Path(cfg.input_json).resolve()),
            "latent_dir": str(cfg.latent_dir), "num_frames": int(cfg.num_frames), "height": int(cfg.height),
            "width": int(cfg.width), "seed": int(cfg.seed),
            "max_sequence_length": int(cfg.max_sequence_length), "limit_groups": cfg.limit_groups}  # fmt: skip


def merge_encoded_shards(cfg: EncodeConfig) -> dict[str, Any]:
    """Join the shard outputs of ``cfg.output_json`` (every shard of ``cfg.num_shards``, or of the one
    shard count on disk when it is 1) into ``cfg.output_json``: the input JSON with the shards' groups.

    Returns:
        ``{"shards": K, "groups": number of groups merged, "output_json": path}``.
    Raises:
        utils.jobs.ShardError (exit 2): a missing shard, shards encoded with other settings than each
        other or than ``cfg``, or shards whose groups are not the input's (in order).
        JSONInputError: a malformed input or shard file.
    """
    data = read_json(cfg.input_json)
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise JSONInputError(f'{cfg.input_json}: expected an object with a "groups" list')
    want = data["groups"] if cfg.limit_groups is None else data["groups"][: cfg.limit_groups]
    shards = find_shards(cfg.output_json, cfg.num_shards if int(cfg.num_shards) > 1 else None)
    expected = shard_settings(cfg)

    def settings_of(doc: Any) -> Any:
        return doc.get(SHARD_KEY, {}).get("settings") if isinstance(doc, dict) else None

    def combine(docs: list) -> dict:
        groups: list = []
        for sp, doc in zip(shards, docs):
            if settings_of(doc) != expected:
                raise ShardError(f"{sp} was not encoded with these settings {expected} "
                                 f"(it has {settings_of(doc)})")
            groups += doc["groups"]
        ids = [str(g.get("group_id")) for g in groups]
        if ids != [str(g.get("group_id")) for g in want]:
            raise ShardError(f"the groups of the shards {[str(p) for p in shards]} are not the groups of "
                             f"{cfg.input_json} ({len(ids)} vs {len(want)}); "
                             "re-encode the shards from this input")
        return {**data, "groups": groups + data["groups"][len(want):]}

    merge_shard_files(shards, cfg.output_json, combine, settings_of)
    return {"shards": len(shards), "groups": len(want), "output_json": str(cfg.output_json)}
