"""One scorer worker per device for the batch run (:mod:`scoring.batch`).

Workers are processes started with ``spawn`` (CUDA cannot be forked); each builds its own scorer on
its device and takes whole groups from a queue, so the parent can rewrite the output after every
finished group. Under torchrun/srun a process uses only its own GPU (``LOCAL_RANK``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from utils.launcher import launch_info

from .batch import build_processor, score_video_entry

logger = logging.getLogger("video_scorer")

__all__ = ["default_devices", "run_multi_device"]


def default_devices() -> list[str]:
    """Every visible CUDA device (one worker each); under torchrun/srun only this process's GPU."""
    import torch

    if torch.cuda.is_available():
        local = launch_info().local_rank
        if local is not None:
            return [f"cuda:{local % torch.cuda.device_count()}"]
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def _worker(device: str, args_dict: dict, task_q, result_q) -> None:
    """Multi-device worker: build a processor on ``device``, score tasks until ``None``."""
    logging.basicConfig(
        level=args_dict.get("log_level", "INFO"), format=f"%(asctime)s [{device}] %(levelname)s: %(message)s"
    )
    args = argparse.Namespace(**args_dict)
    try:
        processor = build_processor(args, device)
    except BaseException as e:  # noqa: BLE001 - report to the parent, then stop
        result_q.put(("fatal", device, f"{type(e).__name__}: {e}"))
        return
    result_q.put(("ready", device, None))
    while True:
        task = task_q.get()
        if task is None:
            break
        gi, items = task
        for vi, video, base, vdir in items:
            res = score_video_entry(processor, video, Path(base), vdir, args.extra_metrics, args.visuals_fps)
            result_q.put(("video", gi, (vi, res)))
        result_q.put(("group_done", gi, device))


def run_multi_device(args, devices: list[str], todo: dict, record, write) -> int:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    task_q, result_q = ctx.Queue(), ctx.Queue()
    for gi in sorted(todo):
        task_q.put((gi, todo[gi]))
    for _ in devices:
        task_q.put(None)
    procs = [
        ctx.Process(target=_worker, args=(d, vars(args), task_q, result_q), daemon=True) for d in devices
    ]
    for p in procs:
        p.start()
    pending = set(todo)
    alive = len(procs)
    try:
        while pending:
            try:
                kind, a, b = result_q.get(timeout=5.0)
            except Exception:  # queue.Empty: check the workers are still alive
                if not any(p.is_alive() for p in procs):
                    print("error: all workers exited before finishing", file=sys.stderr)
                    return 1
                continue
            if kind == "fatal":
                alive -= 1
                logger.error("worker %s failed to start: %s", a, b)
                if alive == 0:
                    print(f"error: no worker could start (last: {b})", file=sys.stderr)
                    return 1
            elif kind == "video":
                vi, res = b
                record(a, vi, res)
            elif kind == "group_done":
                pending.discard(a)
                write()
        return 0
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
