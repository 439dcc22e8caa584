"""``scores.csv`` of an evaluation run: one row per video, written atomically, resumable.

Columns (:data:`COLUMNS`): ``prompt_id, prompt, seed, arm, lora_weight, video_path``, every metric
of :data:`METRICS`, the bookkeeping counts ``epipolar_pairs_skipped, flow_valid_fraction``, and
``error`` (empty when the video was scored; else why it was not: bad prompt entry, adapter
missing, generation failed, unreadable video...). A row is identified by
``(prompt_id, seed, arm, lora_weight)`` (:func:`row_key`); the file is rewritten atomically
(temporary file + rename) after every video, so a killed run leaves a complete file and a restart
adds each missing row exactly once.

Metric directions (:data:`METRICS`) say which way is better; they drive the win rates.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Iterable, Mapping

from utils.io_utils import atomic_write_bytes

__all__ = [
    "METRICS",
    "DESCRIPTIVE",
    "ID_COLUMNS",
    "EXTRA_COLUMNS",
    "COLUMNS",
    "ScoresFormatError",
    "row_key",
    "read_scores",
    "write_scores",
    "merge_score_files",
    "shard_csv_path",
]

# metric -> lower_is_better (units in the docstrings of metrics/*)
METRICS: dict[str, bool] = {
    "consistency_score": True,  # mse + lpips_weight * lpips of the reprojection
    "mse": True,  # reprojection MSE, [0, 1] images
    "psnr": False,  # dB
    "ssim": False,  # [-1, 1]
    "lpips": True,  # reprojection LPIPS
    "mvcs": False,  # exp(-depth MSE), (0, 1]
    "epipolar": True,  # mean Sampson distance, pixels
    "temporal_lpips": True,  # LPIPS between consecutive frames
    "flow_warp_error": True,  # mean |I_i - warp(I_{i+1})|, [0, 1]
    "motion_norm": False,  # camera motion (not a quality metric; reported, more = more motion)
    "coverage": False,  # fraction of pixels reprojected onto
}
# columns of the released scores.csv that are metrics under another name
RELEASED_ALIASES = {"motion_score": "motion_norm"}
# descriptive columns: reported and compared, but not quality metrics (no multiple-testing family, never "significant")
DESCRIPTIVE = {"motion_norm", "coverage"}
ID_COLUMNS = ("prompt_id", "prompt", "seed", "arm", "lora_weight", "video_path")
EXTRA_COLUMNS = ("epipolar_pairs_skipped", "flow_valid_fraction")
COLUMNS = ID_COLUMNS + tuple(METRICS) + EXTRA_COLUMNS + ("error",)
_INT_COLUMNS = {"seed", "epipolar_pairs_skipped"}
_FLOAT_COLUMNS = set(METRICS) | {"lora_weight", "flow_valid_fraction"}


class ScoresFormatError(ValueError):
    """A scores CSV is missing, unreadable, or lacks required columns; the message names the file."""


def row_key(row: Mapping) -> tuple[str, int, str, float]:
    """``(prompt_id, seed, arm, lora_weight)`` of a row (the unit of resume and of pairing)."""
    return (str(row["prompt_id"]), int(row["seed"]), str(row["arm"]), float(row["lora_weight"]))


def shard_csv_path(scores_csv: str | os.PathLike, shard_index: int, num_shards: int) -> Path:
    """``scores.csv`` -> ``scores.shard<i>of<K>.csv`` next to it."""
    p = Path(scores_csv)
    return p.with_name(f"{p.stem}.shard{int(shard_index)}of{int(num_shards)}{p.suffix or '.csv'}")


def _parse(value: str, column: str):
    if column in _FLOAT_COLUMNS:
        return math.nan if value in ("", None) else float(value)
    if column in _INT_COLUMNS:
        return None if value in ("", None) else int(float(value))
    return value or ""


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def read_scores(path: str | os.PathLike, required: Iterable[str] = ("prompt_id", "seed", "arm", "lora_weight")) -> list[dict]:
    """Read a scores CSV written by :func:`write_scores`.

    Numbers are parsed (empty metric -> NaN, empty count -> None); unknown columns are kept as text.

    Raises:
        ScoresFormatError: unreadable file, or a required column is missing.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScoresFormatError(f"cannot read scores file {path}: {e}") from e
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise ScoresFormatError(f"{path}: missing column(s) {missing}; has {reader.fieldnames}")
    rows = []
    for n, raw in enumerate(reader, start=2):
        try:
            rows.append({k: _parse(v, k) for k, v in raw.items() if k is not None})
        except ValueError as e:
            raise ScoresFormatError(f"{path} line {n}: {e}") from e
    return rows


def write_scores(path: str | os.PathLike, rows: Iterable[Mapping]) -> None:
    """Write rows (dicts keyed by :data:`COLUMNS`) as CSV atomically, sorted by arm, weight, prompt, seed.

    A later row with the same :func:`row_key` replaces an earlier one. Missing columns are empty.
    """
    by_key: dict = {}
    for r in rows:
        by_key[row_key(r)] = r
    ordered = sorted(by_key.values(), key=lambda r: (r["arm"] != "original", r["arm"], float(r["lora_weight"]),
                                                     str(r["prompt_id"]), int(r["seed"])))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in ordered:
        w.writerow([_fmt(r.get(c)) for c in COLUMNS])
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def merge_score_files(files: Iterable[str | os.PathLike], out: str | os.PathLike) -> int:
    """Join shard CSVs into ``out`` (atomic); a row scored without error wins over an error row. Returns the row count."""
    merged: dict = {}
    for f in files:
        for r in read_scores(f):
            k = row_key(r)
            if k not in merged or (merged[k].get("error") and not r.get("error")):
                merged[k] = r
    write_scores(out, merged.values())
    return len(merged)
