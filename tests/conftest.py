"""Shared pytest fixtures: tiny seeded checkpoints built once per test session.

* ``tiny_models`` -> ``{"cogvideox-t2v": Path, "cogvideox-i2v": Path, "cogvideox1.5-t2v": Path}``:
  diffusers pipeline folders from ``utils.tiny_models`` (same classes/config keys as the real
  THUDM checkpoints, tiny sizes: 9 frames 64x96; 17 frames for 1.5).
* ``tiny_vggt`` -> Path of a tiny VGGT in the ``facebook/VGGT-1B`` format (built only when a test asks).
* ``tiny_wan`` -> Path of a tiny Wan2.2-TI2V-5B pipeline folder (``utils.tiny_wan``: 48-channel
  Wan2.2 VAE, ``expand_timesteps``; 17 frames 32x32), built lazily once per session.
* ``fixtures_dir`` -> ``tests/fixtures``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_COGVIDEOX = ("cogvideox-t2v", "cogvideox-i2v", "cogvideox1.5-t2v")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny CogVideoX pipelines (t2v, i2v, 1.5 t2v), built once per session into a temp folder."""
    from utils.tiny_models import ensure_tiny_models

    root = tmp_path_factory.mktemp("tiny_models")
    return ensure_tiny_models(root, names=TINY_COGVIDEOX)


@pytest.fixture(scope="session")
def tiny_vggt(tmp_path_factory) -> Path:
    """Tiny VGGT checkpoint folder (config.json + model.safetensors), built lazily once per session."""
    from utils.tiny_models import ensure_tiny_models

    root = tmp_path_factory.mktemp("tiny_vggt")
    return ensure_tiny_models(root, names=("vggt",))["vggt"]


@pytest.fixture(scope="session")
def tiny_wan(tmp_path_factory) -> Path:
    """Tiny Wan2.2-TI2V-5B pipeline folder (``Wan-AI/Wan2.2-TI2V-5B-Diffusers`` format), built lazily once per session."""
    from utils.tiny_models import ensure_tiny_models

    root = tmp_path_factory.mktemp("tiny_wan")
    return ensure_tiny_models(root, names=("wan2.2-ti2v",))["wan2.2-ti2v"]


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``tests/fixtures``."""
    return Path(__file__).resolve().parent / "fixtures"
