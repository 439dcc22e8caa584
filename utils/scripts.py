"""Run the numbered per-model scripts (``train_dpo/<model>/01_generate.py`` ...) from Python.

The number is the pipeline step: ``01_generate.py`` (candidates), ``02_score.py`` (geometry
scorer), ``03_encode.py`` (latents), ``04_train.py`` (Diffusion-DPO).

The per-model folders are named after the models (``CogVideoX1.5-5B_lora``), which are not valid
Python package names, so their scripts are loaded from their file path. The demo driver and the
tests call a script's ``main(argv)`` exactly as the shell would run it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAIN_DPO_DIR = REPO_ROOT / "train_dpo"


def load_script(path: str | os.PathLike) -> ModuleType:
    """Import the Python file at ``path`` as a fresh module (its ``__name__`` is not ``__main__``).

    Raises:
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"script not found: {path}")
    name = "videogpa_script_" + "_".join(path.with_suffix("").parts[-2:]).replace("-", "_").replace(".", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


def model_script(model_dir: str, step: str) -> Path:
    """Path of ``train_dpo/<model_dir>/<step>.py``, e.g. ``model_script("CogVideoX-5B_lora", "04_train")``."""
    return TRAIN_DPO_DIR / model_dir / f"{step}.py"


def run_script(path: str | os.PathLike, argv: list[str]) -> int:
    """Load the script at ``path`` and return ``main(argv)``'s exit code (``None`` counts as 0)."""
    code = load_script(path).main(argv)
    return 0 if code is None else int(code)


def script_constants(namespace: dict) -> dict:
    """The configuration constants of a script: every UPPER_CASE name at its top, as written.

    ``script_constants(globals())`` of ``04_train.py`` -> ``{"BASE_MODEL": ..., "MAX_STEPS": 1500}``.
    The per-model scripts hand them to :func:`utils.config_cli.build_config_parser` (``evaluate.py``
    and the inference scripts to :func:`utils.config_cli.apply_constants`), which refuse a name that
    is no setting (exit 2, naming it). ``REPO_ROOT`` is a path helper, not configuration.
    """
    return {k: v for k, v in namespace.items() if k.isupper() and not k.startswith("_") and k != "REPO_ROOT"}

