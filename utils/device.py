"""The one device/dtype policy of the project.

Every model that runs on a GPU here (CogVideoX and Wan generation and encoding, VGGT and DA3 scoring,
the Diffusion-DPO trainer, the benchmarks) takes its dtype from this module:

* CUDA with native bfloat16 (compute capability >= 8.0, Ampere and later): ``torch.bfloat16``,
  the dtype CogVideoX, Wan2.2, VGGT and DA3 were trained and released in;
* older CUDA devices (V100, T4): ``torch.float16``;
* CPU: ``torch.float32`` (the tiny test models; the real models need a GPU).

``torch.cuda.is_bf16_supported()`` is not used: it asks the *current* device, and it also says True
for emulated bf16 (slow, no flash attention) on pre-Ampere cards.
"""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "half_dtype", "compute_dtype", "lightning_precision"]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; None: ``cuda`` when CUDA is available, else ``cpu``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def half_dtype(device: str | torch.device) -> torch.dtype:
    """The 16-bit dtype a CUDA ``device`` runs natively: bf16 from sm_80 on, else fp16.

    Raises:
        ValueError: ``device`` is not a CUDA device.
    """
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"half_dtype is for CUDA devices, got {device}")
    major = torch.cuda.get_device_capability(device)[0]
    return torch.bfloat16 if major >= 8 else torch.float16


def compute_dtype(device: str | torch.device) -> torch.dtype:
    """Weights/activation dtype on ``device``: :func:`half_dtype` on CUDA, float32 elsewhere."""
    device = torch.device(device)
    return half_dtype(device) if device.type == "cuda" else torch.float32


def lightning_precision(use_cuda: bool) -> str:
    """Lightning ``precision`` under the same policy: ``"bf16-mixed"`` / ``"16-mixed"`` on CUDA
    (by :func:`half_dtype` of the current CUDA device), ``"32-true"`` on CPU."""
    if not use_cuda:
        return "32-true"
    return "bf16-mixed" if half_dtype("cuda") == torch.bfloat16 else "16-mixed"
