"""Names and places of evaluation videos: prompt ids, arms, the released file naming.

Videos of an evaluation run live in one folder per prompt, named as the released VideoGPA
replication (``replicate.py``) names them, so released folders score with ``--score_only`` too::

    <videos_dir>/<prompt_id>/seed_<seed>_original.mp4           base model (arm "original")
    <videos_dir>/<prompt_id>/seed_<seed>_<arm>_w<weight>.mp4    adapter arm at LoRA scale <weight>

``<weight>`` is Python's float text (``1.0``, ``0.5``). ``<prompt_id>`` is the DL3DV scene hash for
a DL3DV key ``1K/<hash>/images_8`` (as released), else a file-system-safe slug of the prompt key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from utils.io_utils import slugify

__all__ = [
    "ORIGINAL",
    "ARM_NAME_RE",
    "VideoKey",
    "prompt_id_for",
    "video_name",
    "parse_video_name",
    "discover_videos",
]

ORIGINAL = "original"
ARM_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_VIDEO_RE = re.compile(r"^seed_(?P<seed>-?\d+)_(?P<arm>[A-Za-z0-9_]+?)(?:_w(?P<w>\d+(?:\.\d+)?(?:e-?\d+)?))?\.mp4$")
_DL3DV_KEY_RE = re.compile(r"^[^/]+/(?P<hash>[0-9a-fA-F]{16,})/[^/]+$")


@dataclass(frozen=True)
class VideoKey:
    """Identity of one evaluation video: the paired design matches arms on (prompt_id, seed).

    Attributes:
        prompt_id: folder name of the prompt.
        seed: noise seed.
        arm: ``"original"`` or an adapter arm name.
        lora_weight: LoRA scale (0.0 for ``original``).
    """

    prompt_id: str
    seed: int
    arm: str
    lora_weight: float

    @property
    def name(self) -> str:
        """The video's file name (:func:`video_name`)."""
        return video_name(self.seed, self.arm, self.lora_weight)


def prompt_id_for(key: str) -> str:
    """Folder name of a prompt: the scene hash of a DL3DV key ``1K/<hash>/images_8``, else ``slugify(key)``."""
    m = _DL3DV_KEY_RE.match(str(key).strip())
    return m["hash"] if m else slugify(str(key), max_len=80)


def video_name(seed: int, arm: str, lora_weight: float) -> str:
    """``seed_<seed>_original.mp4`` or ``seed_<seed>_<arm>_w<weight>.mp4`` (released naming)."""
    if arm == ORIGINAL:
        return f"seed_{int(seed)}_{ORIGINAL}.mp4"
    return f"seed_{int(seed)}_{arm}_w{float(lora_weight)}.mp4"


def parse_video_name(name: str) -> tuple[int, str, float] | None:
    """``(seed, arm, lora_weight)`` of a released-style video file name, or None when it is not one.

    ``seed_456_dpo_w1.0.mp4`` -> ``(456, "dpo", 1.0)``; ``seed_456_original.mp4`` -> ``(456, "original", 0.0)``;
    ``seed_0_dpo_epipolar_w0.5.mp4`` -> ``(0, "dpo_epipolar", 0.5)``. An adapter arm without ``_w``
    gets weight 1.0.
    """
    m = _VIDEO_RE.match(os.path.basename(name))
    if not m:
        return None
    arm = m["arm"]
    if arm == ORIGINAL:
        return int(m["seed"]), ORIGINAL, 0.0
    return int(m["seed"]), arm, float(m["w"]) if m["w"] is not None else 1.0


def discover_videos(videos_dir: str | os.PathLike) -> tuple[list[tuple[VideoKey, Path]], list[Path]]:
    """Videos of a ``<videos_dir>/<prompt_id>/<name>.mp4`` tree.

    Returns:
        ``(found, unrecognised)``: ``found`` sorted by (prompt_id, arm, weight, seed), each a
        :class:`VideoKey` and the file; ``unrecognised`` the ``.mp4`` files whose names do not follow
        the naming (listed so that the caller can warn).

    Raises:
        FileNotFoundError: ``videos_dir`` is not a folder.
    """
    root = Path(videos_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"videos folder not found: {root}")
    found, bad = [], []
    for prompt_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(prompt_dir.glob("*.mp4")):
            parsed = parse_video_name(f.name)
            if parsed is None:
                bad.append(f)
                continue
            seed, arm, w = parsed
            found.append((VideoKey(prompt_dir.name, seed, arm, w), f))
    found.sort(key=lambda kv: (kv[0].prompt_id, kv[0].arm != ORIGINAL, kv[0].arm, kv[0].lora_weight, kv[0].seed))
    return found, bad
