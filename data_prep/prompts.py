"""Prompt-file helpers shared by the ``data_prep`` scripts.

The prompts JSON read by inference and candidate generation is::

    {"<prompt id>": {"text_prompt": "...", "image_prompt": "path/to/first_frame.png"}, ...}

(``image_prompt`` only for image-to-video); the scripts build it and write it with
:func:`write_prompts_main`. VideoGPA's preference signal rewards 3-D consistency,
which a static camera cannot show, so every prompt can be given an explicit camera-motion phrase.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Callable

from utils.io_utils import JSONInputError, atomic_write_json

logger = logging.getLogger(__name__)

# Camera-motion phrases appended to prompts, so that generated candidates move the camera and the
# geometry scorer has parallax to judge (static videos are filtered out by ``motion_norm`` later).
CAMERA_MOTION_PHRASES = (
    "The camera slowly orbits around the scene.",
    "The camera moves forward steadily through the scene.",
    "The camera pans smoothly from left to right.",
    "The camera pans smoothly from right to left.",
    "The camera slowly pulls back, revealing more of the scene.",
    "The camera tracks sideways past the main subject.",
    "The camera rises gently, looking down at the scene.",
    "The camera circles the main subject at a constant distance.",
)


def prompt_id(key: str, max_len: int = 40) -> str:
    """A short, stable, file-name-safe id for a caption key or image path.

    DL3DV keys look like ``1K/<64-hex scene hash>/images_8``; the id keeps a readable part and an
    8-character SHA-1 of the full key, so two keys never collide on the readable part alone.
    ``"1K/001dccbc.../images_8"`` -> ``"001dccbc1f78_3f1a9c0e"``.
    """
    parts = [p for p in re.split(r"[/\\]", key) if p]
    readable = max(parts, key=len) if parts else key
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", readable)[:12].strip("_") or "prompt"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]
    return f"{readable[:max_len]}_{digest}"


def motion_phrase(index: int) -> str:
    """The camera-motion phrase for the ``index``-th prompt (cycles through the list)."""
    return CAMERA_MOTION_PHRASES[index % len(CAMERA_MOTION_PHRASES)]


def with_motion(text: str, index: int) -> str:
    """``text`` with the ``index``-th camera-motion phrase appended (whitespace normalised)."""
    text = " ".join(text.split())
    if text and text[-1] not in ".!?":
        text += "."
    return f"{text} {motion_phrase(index)}".strip()


def write_prompts_main(build: Callable[[], dict], output_json: str, empty_error: str | None = None) -> int:
    """Body of a ``data_prep`` script: ``build()`` the prompts and write them to ``output_json`` atomically.

    Args:
        build: returns the prompts dict; may raise ``JSONInputError`` / ``FileNotFoundError`` (bad input).
        output_json: where the prompts JSON goes (nothing is written on error).
        empty_error: when given, no prompts is bad input with this message.

    Returns:
        The exit code: 0 written, 2 bad input (the error is logged).
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        prompts = build()
    except (JSONInputError, FileNotFoundError) as e:
        logger.error("%s", e)
        return 2
    if not prompts and empty_error is not None:
        logger.error("%s", empty_error)
        return 2
    atomic_write_json(output_json, prompts)
    logger.info("wrote %d prompts to %s", len(prompts), output_json)
    return 0
