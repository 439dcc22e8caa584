"""Small, shared I/O helpers: atomic files (bytes, JSON, any writer through :func:`atomic_target`),
JSON reading with clear errors, normal permissions under the umask, slugs.

Every stage of the VideoGPA pipeline writes a JSON manifest that a later stage (or a re-run of the
same stage) reads. These helpers guarantee that a manifest on disk is always complete: it is
written to a temporary file in the same folder and renamed over the target (``os.replace`` is
atomic on POSIX and Windows), so an interrupted run leaves either the old or the new file, never a
half-written one.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import unicodedata
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "atomic_target",
    "atomic_write_json",
    "atomic_write_bytes",
    "make_temp_dir",
    "apply_umask",
    "current_umask",
    "read_json",
    "slugify",
    "JSONInputError",
]


class JSONInputError(ValueError):
    """A JSON input file is missing, unreadable or malformed. The message names the file."""


def current_umask() -> int:
    """The process's file-mode creation mask (e.g. ``0o022``), read without changing it.

    Linux exposes it in ``/proc/self/status``; elsewhere it is read by setting and restoring it.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new, empty temporary folder in ``parent`` with the permissions of a normal ``mkdir``.

    ``tempfile.mkdtemp`` creates folders with mode 0700 whatever the umask; a folder that is later
    renamed into place (an adapter folder, a model folder) would stay private. This one gets
    ``0o777 & ~umask`` (0755 under the usual umask 022). Used for every write-then-rename folder.
    """
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent))
    os.chmod(tmp, 0o777 & ~current_umask())
    return tmp


def apply_umask(path: str | os.PathLike) -> None:
    """Give ``path`` (a file, or a folder and everything in it) normal permissions under the umask.

    For files written by libraries that create them private: ``safetensors``' ``save_file`` (and so
    ``save_pretrained``) writes mode 0600. Files get ``0o666 & ~umask``, folders ``0o777 & ~umask``.
    """
    mask = current_umask()
    path = Path(path)
    items = [path] + (list(path.rglob("*")) if path.is_dir() else [])
    for p in items:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


@contextmanager
def atomic_target(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer to create, renamed over ``path`` when the block ends.

    The one write-then-rename mechanism of the project's files (JSON, safetensors, mp4). The
    temporary file is not created here: the writer creates it (``open(tmp, "xb")``, ffmpeg), so it
    gets the permissions of a normally created file (``0o666 & ~umask``, 0644 under the usual umask
    022). Parent folders are created. When the block raises (``KeyboardInterrupt`` included) the
    temporary file is removed and ``path`` keeps its previous content (or stays absent).

    Yields:
        ``<folder of path>/.<name>.<pid>.<8 hex digits><suffix>`` (``suffix`` keeps a container
        extension where the writer needs one: ``".tmp.mp4"``).

    Raises:
        FileNotFoundError: the block ended without creating the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_target`: temp file in the same folder,
    fsync, rename), with the permissions of a normally created file. On any error the previous
    content of ``path`` (if any) is left untouched."""
    with atomic_target(path) as tmp, open(tmp, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _nan_to_null(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_null(v) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2, nan_as_null: bool = False) -> None:
    """Serialise ``obj`` as UTF-8 JSON and write it to ``path`` atomically.

    ``nan_as_null=False`` writes NaN/Infinity as Python's ``json`` does (read back by Python, but not
    valid JSON for other readers); True writes ``null`` for every non-finite float (strict JSON, for
    reports such as ``summary.json`` and benchmark results).

    Raises:
        TypeError: ``obj`` is not JSON-serialisable (nothing is written in that case).
    """
    if nan_as_null:
        obj = _nan_to_null(obj)
    data = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=not nan_as_null).encode("utf-8")
    atomic_write_bytes(path, data + b"\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file.

    Raises:
        JSONInputError: the file does not exist, cannot be read, or is not valid JSON; the message
            names the file and, for syntax errors, the line and column.
    """
    path = Path(path)
    if not path.is_file():
        raise JSONInputError(f"JSON file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise JSONInputError(f"cannot read JSON file {path}: {e}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise JSONInputError(f"malformed JSON in {path}: line {e.lineno} column {e.colno}: {e.msg}") from e


def slugify(text: str, max_len: int = 60) -> str:
    """Make a file-name-safe slug: ASCII lower case, ``[a-z0-9_-]``, words joined by ``_``.

    ``"A cat, on a mat!"`` -> ``"a_cat_on_a_mat"``. Empty results become ``"untitled"``.
    """
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^a-zA-Z0-9]+", "_", text.lower()).strip("_")
    text = text[:max_len].rstrip("_")
    return text or "untitled"
