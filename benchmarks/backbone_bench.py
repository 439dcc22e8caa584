"""What the geometry-backbone benchmarks (bench_vggt.py, bench_da3.py) share: timing, memory, table.

Each backbone is timed twice: a tiny config with seeded random weights on CPU in float32 (peak
memory = the process's peak resident set size from ``resource.getrusage``, and its growth during
the runs), and the full architecture with random weights on CUDA when available (backbone under
autocast in :func:`utils.device.half_dtype`, heads in float32; peak memory from
``torch.cuda.max_memory_allocated``). Results go through ``results_io`` (``--write`` / ``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from typing import Callable

import torch

from results_io import add_output_args, save_results  # benchmarks/ is on sys.path (the scripts' folder)
from utils.device import half_dtype

__all__ = ["run_backbone_bench"]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _timed_runs(run: Callable[[], object], repeats: int, warmup: int,
                sync: Callable[[], None]) -> list[float]:
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            sync()
            t0 = time.perf_counter()
            run()
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return times


def _row(name: str, device: str, dtype: str, frames: int, size: int, model, times: list[float]) -> dict:
    best = min(times)
    return {"name": name, "device": device, "dtype": dtype, "frames": frames, "size": size,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "seconds_best": best,
            "seconds_mean": sum(times) / len(times), "fps": frames / best}


def add_backbone_args(ap: argparse.ArgumentParser, name: str, size: int, model_label: str) -> None:
    """``--frames --size --repeats --warmup --chunk --no-cuda --no-cpu`` and ``--write/--out``."""
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--size", type=int, default=size, help="square input side (multiple of 14)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=8, help="dense head frames_chunk_size")
    ap.add_argument("--no-cuda", action="store_true", help=f"skip the {model_label} CUDA run")
    ap.add_argument("--no-cpu", action="store_true", help="skip the tiny CPU run")
    add_output_args(ap, name)


def bench_cpu(name: str, model, forward: Callable[[object, torch.Tensor, object], object],
              images: torch.Tensor, args: argparse.Namespace) -> dict:
    """Time ``forward(model, images, autocast_dtype=None)`` on CPU; the row with process peak RSS."""
    before = _peak_rss_mb()
    times = _timed_runs(lambda: forward(model, images, None), args.repeats, args.warmup, lambda: None)
    row = _row(name, "cpu", "float32", args.frames, args.size, model, times)
    row.update(threads=torch.get_num_threads(), peak_mem_mb=_peak_rss_mb(),
               mem_growth_mb=_peak_rss_mb() - before, mem_kind="process peak RSS")
    return row


def bench_cuda(name: str, build: Callable[[], torch.nn.Module], forward, images: Callable[[], torch.Tensor],
               what: str, args: argparse.Namespace) -> dict:
    """Build the full model on CUDA (seed 0), time ``forward(model, images(), autocast dtype)``."""
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = build().eval()
    dtype = half_dtype("cuda")
    images = images()
    weights_mb = torch.cuda.memory_allocated() / 2**20
    torch.cuda.reset_peak_memory_stats()
    times = _timed_runs(lambda: forward(model, images, dtype), args.repeats, args.warmup,
                        torch.cuda.synchronize)
    row = _row(name, torch.cuda.get_device_name(), f"fp32 weights, {dtype} autocast {what}",
               args.frames, args.size, model, times)
    row.update(peak_mem_mb=torch.cuda.max_memory_allocated() / 2**20, weights_mb=weights_mb,
               mem_kind="torch.cuda.max_memory_allocated")
    return row


def report(rows: list[dict], args: argparse.Namespace, name: str, cuda_label: str) -> None:
    """Print the table and save ``{"meta", "results"}`` (``results_io``: only with --write / --out)."""
    header = (f"{'model':<10} {'device':<24} {'frames':>6} {'size':>5} {'sec':>8} {'fps':>8} "
              f"{'peak MB':>9}  memory")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:<10} {r['device'][:24]:<24} {r['frames']:>6} {r['size']:>5} "
              f"{r['seconds_best']:>8.3f} {r['fps']:>8.2f} {r['peak_mem_mb']:>9.0f}  {r['mem_kind']}")
    if not torch.cuda.is_available():
        print(f"(CUDA not available: {cuda_label} row skipped)")
    meta = {"torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cuda_available": torch.cuda.is_available(),
            "cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]}
    save_results(args, name, {"meta": meta, "results": rows})


def run_backbone_bench(doc: str, name: str, size: int, tiny: tuple[str, Callable[[], torch.nn.Module]],
                       full: tuple[str, str, Callable[[], torch.nn.Module], str], batch_dim: bool,
                       noise: Callable[..., torch.Tensor]) -> int:
    """The whole benchmark script: parse the flags, time the tiny model on CPU and the full one on CUDA.

    Args:
        doc: the script's docstring (first line = description). name: results name (``bench_vggt``).
        size: default square input side. tiny: ``(row name, builder)``. full: ``(row name, label,
            builder, what runs under autocast)``. batch_dim: the model takes ``[1, S, 3, H, W]`` (else
            ``[S, 3, H, W]``). noise: ``torch.rand`` / ``torch.randn`` for the input frames.
    Returns the exit code (2: ``--size`` not a multiple of 14).
    """
    import sys

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_backbone_args(ap, name, size=size, model_label=full[1])
    args = ap.parse_args()
    if args.size % 14:
        print(f"--size must be a multiple of 14, got {args.size}", file=sys.stderr)
        return 2
    shape = ((1,) if batch_dim else ()) + (args.frames, 3, args.size, args.size)

    def forward(model, images, dtype):
        return model(images, frames_chunk_size=args.chunk, autocast_dtype=dtype)

    rows = []
    if not args.no_cpu:
        images = noise(*shape, generator=torch.Generator().manual_seed(0))
        rows.append(bench_cpu(tiny[0], tiny[1](), forward, images, args))
    if torch.cuda.is_available() and not args.no_cuda:
        images = lambda: noise(*shape, device="cuda")  # noqa: E731 - made after the model is built
        rows.append(bench_cuda(full[0], full[2], forward, images, full[3], args))
    report(rows, args, name, full[1])
    return 0
