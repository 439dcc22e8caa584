"""Loading a state dict into a model built on the meta device, with errors that name what is wrong.

Used by :func:`vggt.load_vggt` and :func:`depth_anything_3.load_da3`: their loaders build the model
from its config (cheaply, on ``meta``), bring the checkpoint's names to the model's, then call
:func:`load_checked_state_dict`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch

__all__ = ["read_model_config", "load_checked_state_dict"]


def read_model_config(config, model_name: str) -> dict:
    """A model config given as None (``{}``), a dict (copied) or a JSON file path.

    Raises:
        FileNotFoundError: ``config`` names no file (the message names ``model_name``).
    """
    if config is None:
        return {}
    if isinstance(config, dict):
        return dict(config)
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"{model_name} config file not found: {path}")
    return json.loads(path.read_text())


def load_checked_state_dict(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    model_name: str,
    where: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> torch.nn.Module:
    """Check ``state`` against ``model.state_dict()`` names and shapes, load it, freeze, eval mode.

    Args:
        model: the model, possibly on the meta device (tensors are assigned, not copied).
        state: ``{name: tensor}`` with the model's names.
        model_name: for messages (``"VGGT"``, ``"DA3"``).
        where: the checkpoint's path or hub id, for messages.
        device, dtype: where and in which dtype the loaded model lives (None: as loaded).

    Returns:
        ``model`` in eval mode with ``requires_grad`` off on every parameter.

    Raises:
        KeyError: names missing from or unexpected in ``state`` (counts and the first five of each).
        ValueError: tensors whose shapes differ from the model's (the first five).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:5]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:5]})")
        raise KeyError(f"{model_name} weights from {where} do not match the model config: " + "; ".join(parts))
    bad = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
           if tuple(state[k].shape) != tuple(v.shape)]  # fmt: skip
    if bad:
        raise ValueError(f"{model_name} weights from {where} have {len(bad)} shape mismatches, e.g. {bad[:5]}")
    model.load_state_dict(dict(state), strict=True, assign=True)
    model = model.to(device=device, dtype=dtype)
    model.requires_grad_(False)
    return model.eval()
