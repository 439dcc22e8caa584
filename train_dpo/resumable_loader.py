"""A training DataLoader that a resumed Diffusion-DPO run continues exactly where it stopped.

PyTorch's shuffled ``DataLoader`` draws each epoch's order from the global RNG, and Lightning
restarts an interrupted epoch from its first batch unless the loader is *stateful*. A run killed
mid-epoch and resumed from ``lightning/last.ckpt`` would then see other pairs in another order
than an uninterrupted run, and end with a different adapter. Here

* the order of epoch ``e`` is ``torch.randperm(n)`` drawn from a CPU generator seeded with
  ``(seed, e)`` (:class:`EpochShuffleSampler`; Lightning calls ``set_epoch`` at every epoch start,
  with the restored epoch on resume), and
* :class:`ResumableDataLoader` implements Lightning's ``state_dict`` / ``load_state_dict``
  interface: the checkpoint stores how many batches of the current epoch were handed out, and the
  resumed loader skips exactly those (by index, without loading them).

Single-process training only; under DDP Lightning installs its own ``DistributedSampler``
(seeded per epoch as well), and the trainer uses a plain ``DataLoader`` there.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Sampler

__all__ = ["EpochShuffleSampler", "ResumableDataLoader"]


class EpochShuffleSampler(Sampler[int]):
    """Indices ``0..n-1`` in an order that depends only on ``(seed, epoch)``; can skip a prefix.

    Args:
        n: dataset length.
        seed: base seed (the run's ``seed``).
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch, self.skip = int(n), int(seed), 0, 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = int(epoch)

    def order(self, epoch: int) -> torch.Tensor:
        """The permutation of epoch ``epoch`` (int64 ``[n]``)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 15_485_863 * int(epoch) + 1)
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        return iter(self.order(self.epoch)[skip:].tolist())

    def __len__(self) -> int:
        return self.n


class ResumableDataLoader(DataLoader):
    """Shuffled ``DataLoader`` (``EpochShuffleSampler``) whose position Lightning saves and restores.

    ``state_dict()`` -> ``{"batches": batches handed out in the current epoch, "batch_size": B}``;
    ``load_state_dict`` makes the next ``__iter__`` skip those ``batches * B`` indices.
    """

    def __init__(self, dataset, batch_size: int, seed: int, **kwargs: Any):
        self._order = EpochShuffleSampler(len(dataset), seed)
        super().__init__(dataset, batch_size=batch_size, sampler=self._order, **kwargs)
        self._handed_out = 0
        self._resume_at = 0

    def __iter__(self):
        start, self._resume_at = self._resume_at, 0
        self._order.skip = start * int(self.batch_size)
        self._handed_out = start
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"batches": int(self._handed_out), "batch_size": int(self.batch_size)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state.get("batch_size", self.batch_size)) != int(self.batch_size):
            raise ValueError(
                f"cannot resume: the checkpoint was trained with batch size {state['batch_size']}, "
                f"this run uses {self.batch_size}"
            )
        batches = int(state.get("batches", 0))
        # a checkpoint saved after the epoch's last batch: Lightning resumes with the next epoch
        self._resume_at = batches if batches < len(self) else 0
