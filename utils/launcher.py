"""Which shard a process is, from the environment of the launcher that started it.

Generation, scoring and encoding split their work with ``--num_shards K --shard_index i``. When a
launcher starts one process per task, each process finds its shard in its environment, so one
command line runs every shard:

* ``torchrun --nproc_per_node 8 script.py``: ``RANK`` / ``WORLD_SIZE`` (and ``LOCAL_RANK``, the
  GPU of the process on its node);
* ``srun --ntasks 8 python script.py`` (SLURM): ``SLURM_PROCID`` / ``SLURM_STEP_NUM_TASKS``
  (and ``SLURM_LOCALID``). ``srun`` sets ``SLURM_STEP_NUM_TASKS`` for the tasks of its job step;
  the batch script itself (run by ``sbatch`` without ``srun``) has ``SLURM_NTASKS`` of the whole
  allocation but is a single process, so it is deliberately *not* sharded.

Explicit ``--num_shards/--shard_index`` always win. torchrun's variables win over SLURM's (a
torchrun started by srun sets both; its ranks are the finer split).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

__all__ = ["LaunchInfo", "launch_info", "SHARD_HELP"]

SHARD_HELP = "default: $RANK/$WORLD_SIZE (torchrun) or $SLURM_PROCID/$SLURM_STEP_NUM_TASKS (srun), else 0/1"


@dataclass(frozen=True)
class LaunchInfo:
    """This process's shard and device under a launcher.

    Attributes:
        shard_index: 0-based index of this process (``0 <= shard_index < num_shards``).
        num_shards: number of processes started by the launcher (1 without a launcher).
        local_rank: index of the process on its node (its GPU), None without a launcher.
        source: ``"torchrun"``, ``"srun"`` or None.
    """

    shard_index: int = 0
    num_shards: int = 1
    local_rank: int | None = None
    source: str | None = None


def _int(env: Mapping[str, str], key: str) -> int | None:
    try:
        return int(env[key])
    except (KeyError, ValueError):
        return None


def launch_info(env: Mapping[str, str] | None = None) -> LaunchInfo:
    """Read the launcher variables (see the module docstring) from ``env`` (default ``os.environ``).

    Raises:
        ValueError: the variables are inconsistent (rank outside ``[0, world size)``), naming them.
    """
    env = os.environ if env is None else env
    for source, rank_key, size_key, local_key in (
        ("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"),
        ("srun", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID"),
    ):
        rank, size = _int(env, rank_key), _int(env, size_key)
        if rank is None or size is None:
            continue
        if not 0 <= rank < size:
            raise ValueError(f"{rank_key}={rank} is not in [0, {size_key}={size})")
        return LaunchInfo(rank, size, _int(env, local_key), source)
    return LaunchInfo()
