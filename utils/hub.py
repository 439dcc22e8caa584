"""Is a Hugging Face Hub model available here? One check, with a plain answer, before loading it.

diffusers and huggingface_hub answer a hub id that is neither cached nor downloadable with
messages such as "THUDM/CogVideoX-5b does not appear to have a file named config.json", after
tens of seconds of retries. :func:`check_hub_model` answers first:

* a local path: nothing to check;
* a hub id found in the local cache (``huggingface_hub.try_to_load_from_cache``, no network): fine;
* not cached and ``HF_HUB_OFFLINE`` set: fail at once, saying so;
* not cached, online: one metadata request (10 s timeout) tells "no such repository" from "the
  hub cannot be reached"; both fail at once with what to do.

Used by every loader of a hub model: CogVideoX (``generate/pipeline.py``, ``train_dpo/encode_cogvideox.py``,
``train_dpo/families/``) and VGGT (``vggt/hub.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ModelNotAvailableError", "check_hub_model", "hub_offline", "looks_like_local_path"]

PROBE_TIMEOUT_S = 10.0


class ModelNotAvailableError(FileNotFoundError):
    """A hub model is not in the local cache and cannot be downloaded; the message says what to do."""


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (read now, not when huggingface_hub was imported)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
    return bool(env or constants.HF_HUB_OFFLINE)


def looks_like_local_path(source: str | os.PathLike) -> bool:
    """True when ``source`` cannot be a hub repo id (``"owner/name"``) and so names a local file or folder:
    a weights-file suffix (``.safetensors``, ``.pt``, ``.pth``, ``.bin``), an absolute path, a leading
    ``.`` or ``~``, not exactly one ``/``, or an OS path separator other than ``/``. Used by the
    geometry-model loaders (``vggt/hub.py``, ``depth_anything_3/hub.py``) to say "not found" for a
    missing local path instead of asking the hub."""
    s = str(source)
    return (s.endswith((".safetensors", ".pt", ".pth", ".bin")) or os.path.isabs(s)
            or s.startswith((".", "~")) or s.count("/") != 1 or os.sep in s.replace("/", ""))


def check_hub_model(source: str | os.PathLike, markers: tuple[str, ...], what: str, local_flag: str) -> None:
    """Make sure ``source`` (a local path or a hub repo id) can be loaded; raise a plain error if not.

    Args:
        source: local folder/file (returned unchecked) or hub repo id (``"THUDM/CogVideoX-5b"``).
        markers: files of the repo; the model counts as cached when any of them is
            (``("model_index.json",)`` for a diffusers pipeline).
        what: the model's role in the message (``"CogVideoX model"``).
        local_flag: the command-line option that takes a local folder instead (``"--base_model"``).

    Raises:
        ModelNotAvailableError: not cached and offline / hub unreachable / no such repository or
            no access. The message names the cache folder, ``HF_HOME``/``HF_HUB_CACHE``,
            ``HF_HUB_OFFLINE`` and ``local_flag``.
    """
    if Path(os.path.expanduser(str(source))).exists():
        return
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    repo = str(source)
    if any(isinstance(try_to_load_from_cache(repo, m), str) for m in markers):
        return
    where = (f"{what} {repo!r} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}; "
             "set HF_HOME or HF_HUB_CACHE to use another)")
    fix = (f"Download it where the hub is reachable (`huggingface-cli download {repo}`) and copy the "
           f"cache there, or pass the downloaded folder: {local_flag} /path/to/{repo.split('/')[-1]}")
    if hub_offline():
        raise ModelNotAvailableError(f"{where}, and HF_HUB_OFFLINE is set, so the hub is not contacted. {fix}")
    try:
        get_hf_file_metadata(hf_hub_url(repo, markers[0]), timeout=PROBE_TIMEOUT_S)
    except Exception as e:  # noqa: BLE001 - classified below; network errors vary with the HTTP backend
        name = type(e).__name__
        if name in ("RepositoryNotFoundError", "GatedRepoError", "HFValidationError"):
            raise ModelNotAvailableError(
                f"{what} {repo!r} is neither a local path nor a hub repository you can read ({name}); "
                f"check the name, run `huggingface-cli login` for gated models, or pass {local_flag} "
                "with a local folder") from e
        if name in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
            return  # the repo exists; let the loader say what is missing
        raise ModelNotAvailableError(
            f"{where}, and the hub ({constants.ENDPOINT}) cannot be reached ({name}: {e}). {fix}. "
            "On machines without internet set HF_HUB_OFFLINE=1 to fail at once.") from e
