"""Resumable sharded jobs: one shard assignment, one shard file name, one merge.

Candidate generation (``generate/candidates.py``), the geometry scorer (``train_dpo/video_scorer.py``)
and latent encoding (``train_dpo/encode.py``) split their work the same way:

* **assignment** (:func:`shard_range`): shard ``i`` of ``K`` takes a *contiguous* block of the
  items (prompt entries, groups), sizes differing by at most one, earlier shards larger. Chosen
  over round-robin (``i, i + K, ...``) because concatenating the shards in index order restores the
  input order, so a merged file reads like an unsharded run's without per-item keys, and each shard
  file is one readable slice of the input; the per-item cost of these jobs is uniform (fixed frames
  and size per run), so round-robin's load balancing buys nothing. The evaluation
  (``evaluation/run.py``) uses the same assignment.
* **file name** (:func:`shard_path`): ``<stem>.shard<i>of<K>.json`` next to the job's output
  (``groups.json`` -> ``groups.shard0of4.json``). The scorer's earlier name
  ``<stem>.shard<i>-of-<K>.json`` is still found and merged (read-compatibility; its round-robin
  contents merge correctly because the scorer merges by video identity).
* **merge** (:func:`merge_shard_files`): every shard ``0..K-1`` present, the shards written with the
  same settings, then one atomic write of the merged file; otherwise :class:`ShardError`, which the
  command lines report as a configuration error (exit code 2) naming the files.
* **launcher defaults** (:func:`launch_defaults`): ``--num_shards/--shard_index`` default to the
  torchrun / srun variables (:mod:`utils.launcher`); inconsistent variables (``RANK >= WORLD_SIZE``)
  become a message for exit code 2, never a traceback.

Resume stays each job's own (it knows what a finished item is): every job rewrites its (shard) file
atomically after each item or group and skips finished items on a re-run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from utils.io_utils import JSONInputError, atomic_write_json, read_json
from utils.launcher import LaunchInfo, launch_info

__all__ = [
    "ShardError",
    "shard_range",
    "check_shard",
    "shard_path",
    "find_shards",
    "merge_shard_files",
    "launch_defaults",
]

_SHARD_RE = re.compile(r"^(?P<stem>.+)\.shard(?P<i>\d+)(?P<sep>-of-|of)(?P<k>\d+)(?P<suffix>\.json)$")


class ShardError(JSONInputError):
    """Bad shard arguments, a missing or inconsistent shard file, or inconsistent launcher variables.

    A configuration error: the command lines exit with code 2 and print the message (which names
    the files or variables).
    """


def shard_range(n: int, shard_index: int, num_shards: int) -> range:
    """The contiguous block of ``range(n)`` that shard ``shard_index`` of ``num_shards`` takes.

    Sizes differ by at most one, earlier shards larger; the blocks of shards ``0..K-1`` concatenated
    are ``range(n)``. Raises :class:`ShardError` for ``not 0 <= shard_index < num_shards``.
    """
    check_shard(shard_index, num_shards)
    base, extra = divmod(int(n), int(num_shards))
    start = shard_index * base + min(shard_index, extra)
    return range(start, start + base + (1 if shard_index < extra else 0))


def check_shard(shard_index: int, num_shards: int) -> None:
    """Raise :class:`ShardError` unless ``0 <= shard_index < num_shards``."""
    if int(num_shards) < 1 or not 0 <= int(shard_index) < int(num_shards):
        raise ShardError(
            f"need 0 <= --shard_index < --num_shards, got shard_index {shard_index}, num_shards {num_shards}"
        )


def _stem(path: Path) -> str:
    return path.name[: -len(".json")] if path.name.endswith(".json") else path.name


def shard_path(path: str | os.PathLike, shard_index: int, num_shards: int) -> Path:
    """The file shard ``i`` of ``K`` writes for the output ``path``: ``<stem>.shard<i>of<K>.json``."""
    p = Path(path)
    return p.with_name(f"{_stem(p)}.shard{int(shard_index)}of{int(num_shards)}.json")


def find_shards(path: str | os.PathLike, num_shards: int | None = None) -> list[Path]:
    """The shard files of the output ``path``, in shard order (current and earlier file names).

    Args:
        path: the merged output (e.g. ``groups.json``); shards are looked for in its folder.
        num_shards: the shard count K; None: the one K found on disk.

    Raises:
        ShardError: no shard file, files for several K (pass ``num_shards``), a shard index with both
            the current and the earlier name, or a missing shard (the message lists the missing files
            and says "not found").
    """
    p = Path(path)
    stem = _stem(p)
    found: dict[int, dict[int, list[Path]]] = {}
    if p.parent.is_dir():
        for f in sorted(p.parent.iterdir()):
            m = _SHARD_RE.match(f.name)
            if m and m["stem"] == stem:
                found.setdefault(int(m["k"]), {}).setdefault(int(m["i"]), []).append(f)
    if num_shards is not None:
        k = int(num_shards)
        found = {k: found.get(k, {})}
    elif not found:
        raise ShardError(f"no shard files {stem}.shard<i>of<K>.json found in {p.parent}")
    if len(found) > 1:
        raise ShardError(f"shard files for different shard counts {sorted(found)} in {p.parent}; "
                         "pass --num_shards")
    ((k, files),) = found.items()
    missing = [str(shard_path(p, i, k)) for i in range(k) if i not in files]
    if missing:
        raise ShardError(f"missing shard file(s), not found: {', '.join(missing)}")
    twice = [" and ".join(map(str, files[i])) for i in range(k) if len(files[i]) > 1]
    if twice:
        raise ShardError(f"shard written under two names (remove one): {'; '.join(twice)}")
    return [files[i][0] for i in range(k)]


def merge_shard_files(
    shard_files: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    combine: Callable[[list[Any]], Any],
    settings_of: Callable[[Any], Any] = lambda doc: None,
) -> Any:
    """Read the shard JSONs, check they agree, combine them and write the result atomically.

    Args:
        shard_files: the shard files in shard order (e.g. from :func:`find_shards`).
        out_path: the merged JSON (written with :func:`utils.io_utils.atomic_write_json`).
        combine: ``combine(docs) -> merged document`` (the job's own merge of its items).
        settings_of: a shard document's run settings (compared across shards; None = not recorded).

    Returns:
        The merged document.

    Raises:
        ShardError: a shard file is missing, or two shards were written with different settings
            (the message names both files and the differing keys).
        JSONInputError: a shard file is malformed (names the file).
    """
    paths = [Path(f) for f in shard_files]
    missing = [str(f) for f in paths if not f.is_file()]
    if missing:
        raise ShardError(f"shard output(s) not found: {', '.join(missing)}")
    docs = [read_json(f) for f in paths]
    ref = None
    for f, doc in zip(paths, docs):
        settings = settings_of(doc)
        if settings is None:
            continue
        if ref is None:
            ref = (f, settings)
        elif settings != ref[1]:
            diff = sorted(k for k in set(ref[1]) | set(settings) if ref[1].get(k) != settings.get(k)) \
                if isinstance(settings, dict) and isinstance(ref[1], dict) else "settings"
            raise ShardError(f"shards {ref[0]} and {f} were written with different settings ({diff}); "
                             "re-run the odd shard with the others' settings")
    merged = combine(docs)
    atomic_write_json(out_path, merged)
    return merged


def launch_defaults() -> tuple[LaunchInfo, str | None]:
    """``(launch info, None)``, or ``(LaunchInfo(), message)`` when the launcher variables are inconsistent.

    For argument parsers: the shard defaults come from the launcher, and an inconsistent
    environment (e.g. ``RANK=4`` with ``WORLD_SIZE=4``) must become a configuration error reported by
    the command (exit code 2), not a traceback while the parser is built.
    """
    try:
        return launch_info(), None
    except ValueError as e:
        return LaunchInfo(), f"inconsistent launcher environment (torchrun/srun variables): {e}"
