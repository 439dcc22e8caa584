"""Prompt files of the generation scripts: prompts/captions JSON -> :class:`PromptEntry` list.

Contract of :func:`load_prompt_entries`: the file as a whole is either readable or a
``utils.io_utils.JSONInputError``; each bad entry comes back with ``error`` set (naming the file
and field), so a batch records it and goes on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.io_utils import JSONInputError, read_json

__all__ = ["PromptEntry", "load_prompt_entries"]


@dataclass
class PromptEntry:
    """One prompt of a prompts/captions JSON file.

    Attributes:
        key: the entry's id (dict key, list item ``"id"``, or the 5-digit list index).
        prompt: text prompt (None when missing).
        image_path: resolved image file for image-to-video (None for text-to-video or when missing).
        error: why the entry cannot be generated (None when it is fine); names the file and field.
    """

    key: str
    prompt: str | None
    image_path: str | None = None
    error: str | None = None


def _resolve_image(image: Any, json_path: Path, where: str) -> tuple[str | None, str | None]:
    """(resolved path, error). Relative paths: against the JSON file's folder, then the working dir."""
    if image is None or (isinstance(image, str) and not image.strip()):
        return None, f"{where}: missing 'image_prompt' (image-to-video needs a first frame)"
    if not isinstance(image, str):
        return None, f"{where}: 'image_prompt' must be a string path, got {type(image).__name__}"
    p = Path(image).expanduser()
    candidates = [p] if p.is_absolute() else [json_path.parent / p, Path.cwd() / p]
    for c in candidates:
        if c.is_file():
            return str(c.resolve()), None
    tried = " or ".join(str(c) for c in candidates)
    return None, f"{where}: image file not found: {tried}"


def load_prompt_entries(
    path: str | os.PathLike, num_prompts: int | None = None, need_image: bool = False
) -> list[PromptEntry]:
    """Read prompts from a JSON file in any of the supported formats.

    Formats:
        * ``{"<id>": {"text_prompt": "...", "image_prompt": "path.png"}, ...}`` (inference format)
        * ``[{"id": "<id>", "text_prompt": "...", "image_prompt": "..."}, ...]`` (``id`` optional:
          the 5-digit index is used) or a list of plain strings
        * ``{"<key>": "<caption>", ...}`` (captions JSON, e.g. DL3DV ``dl3dv_captions_1K.json``)

    Image paths may be absolute or relative to the JSON file's folder (then the working directory);
    they are only looked at when ``need_image`` (image-to-video).

    Args:
        path: the JSON file.
        num_prompts: keep only the first N entries (None = all).
        need_image: require an existing image file per entry.
    Returns:
        One :class:`PromptEntry` per entry, in file order. Bad entries (no text, no/missing image,
        wrong type) are returned with ``error`` set, naming the file and field, so callers can
        record them and go on.
    Raises:
        JSONInputError: missing/unreadable/malformed file, or a top level that is neither an object
            nor a list.
    """
    path = Path(path)
    data = read_json(path)
    if isinstance(data, dict):
        items = [(str(k), v) for k, v in data.items()]
    elif isinstance(data, list):
        items = []
        for i, v in enumerate(data):
            key = v.get("id") if isinstance(v, dict) else None
            items.append((str(key) if key not in (None, "") else f"{i:05d}", v))
    else:
        raise JSONInputError(f"{path}: expected a JSON object or list of prompts, got {type(data).__name__}")
    if num_prompts is not None:
        items = items[: max(0, int(num_prompts))]
    out = []
    for key, value in items:
        where = f"{path} entry {key!r}"
        if isinstance(value, str):
            text, image = value, None
        elif isinstance(value, dict):
            text, image = value.get("text_prompt"), value.get("image_prompt")
        else:
            out.append(PromptEntry(key, None, None, f"{where}: expected a caption string or an object, "
                                                   f"got {type(value).__name__}"))
            continue
        if not isinstance(text, str) or not text.strip():
            out.append(PromptEntry(key, None, None, f"{where}: missing or empty 'text_prompt'"))
            continue
        entry = PromptEntry(key, text.strip())
        if need_image:
            entry.image_path, entry.error = _resolve_image(image, path, where)
        out.append(entry)
    return out
