"""Which exceptions of a video's generation or scoring are the machine's fault, not the video's.

A per-video failure (unreadable file, nothing reprojected, a bad prompt) is recorded as an error
row and the run goes on. An out-of-memory or CUDA error says nothing about the video: recorded, it
would stay in ``scores.csv`` as a permanent error (a resume keeps rows), and every later video
would likely fail the same way. Those are re-raised: the run stops with exit code 1, the CSV holds
every finished row, and a restart resumes cleanly.
"""

from __future__ import annotations

import re

__all__ = ["is_device_error"]

# messages of device failures raised as plain RuntimeError (older torch, cuDNN/cuBLAS, the CPU allocator)
_DEVICE_MESSAGE = re.compile(r"CUDA|cuDNN|CUBLAS|cublas|NCCL|out of memory|can't allocate memory", re.IGNORECASE)


def is_device_error(exc: BaseException) -> bool:
    """True for out-of-memory and accelerator (CUDA) errors, which must not become error rows.

    ``torch.OutOfMemoryError`` (``torch.cuda.OutOfMemoryError``), ``torch.AcceleratorError`` (CUDA
    errors in torch >= 2.8), ``MemoryError``, and a ``RuntimeError`` whose message names CUDA,
    cuDNN, cuBLAS, NCCL or running out of memory.
    """
    import torch

    device_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch, "AcceleratorError", None),
                                     MemoryError) if t is not None)
    if isinstance(exc, device_types):
        return True
    return isinstance(exc, RuntimeError) and bool(_DEVICE_MESSAGE.search(str(exc)))
