"""Throughput and peak memory of the from-scratch Depth Anything 3 (depth_anything_3/).

S frames (default 10, as VideoGPA's scorer) at 504 x 504 (its 518 px frames after DA3's resize):
  * tiny config (embed 32, seeded random weights, 518 px position table) on CPU, float32; peak
    memory is the process's peak resident set size (resource.getrusage) and its growth in the runs;
  * the DA3-Large architecture (411 M parameters, random weights) on CUDA when available, backbone
    under bf16 autocast (fp16 before compute capability 8) with fp32 heads, as the reference API;
    peak memory from torch.cuda.max_memory_allocated.

    python benchmarks/bench_da3.py [--frames 10] [--size 504] [--repeats 3] [--write] [--out PATH]

Prints a table; writes JSON to ``--out`` (default benchmarks/results/bench_da3.json) only if that
file does not exist yet or ``--write`` is given (committed results are not overwritten by accident).
"""

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from depth_anything_3 import build_da3  # noqa: E402
from depth_anything_3.tiny import build_tiny_da3  # noqa: E402
from utils.device import half_dtype  # noqa: E402
from utils.io_utils import atomic_write_json  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_da3.json"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _timed_runs(model, images, repeats: int, warmup: int, chunk: int, autocast_dtype, sync) -> list:
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            sync()
            t0 = time.perf_counter()
            model(images, frames_chunk_size=chunk, autocast_dtype=autocast_dtype)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return times


def _row(name, device, dtype, frames, size, model, times) -> dict:
    best = min(times)
    return {"name": name, "device": device, "dtype": dtype, "frames": frames, "size": size,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "seconds_best": best,
            "seconds_mean": sum(times) / len(times), "fps": frames / best}


def bench_cpu_tiny(frames: int, size: int, repeats: int, warmup: int, chunk: int) -> dict:
    model = build_tiny_da3(seed=0, img_size=518)
    images = torch.randn(1, frames, 3, size, size, generator=torch.Generator().manual_seed(0))
    before = _peak_rss_mb()
    times = _timed_runs(model, images, repeats, warmup, chunk, None, lambda: None)
    row = _row("da3-tiny", "cpu", "float32", frames, size, model, times)
    row.update(threads=torch.get_num_threads(), peak_mem_mb=_peak_rss_mb(),
               mem_growth_mb=_peak_rss_mb() - before, mem_kind="process peak RSS")
    return row


def bench_cuda_large(frames: int, size: int, repeats: int, warmup: int, chunk: int) -> dict:
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = build_da3({"model_name": "da3-large"}).eval()
    dtype = half_dtype("cuda")
    images = torch.randn(1, frames, 3, size, size, device="cuda")
    weights_mb = torch.cuda.memory_allocated() / 2**20
    torch.cuda.reset_peak_memory_stats()
    times = _timed_runs(model, images, repeats, warmup, chunk, dtype, torch.cuda.synchronize)
    row = _row("da3-large", torch.cuda.get_device_name(), f"fp32 weights, {dtype} autocast backbone",
               frames, size, model, times)
    row.update(peak_mem_mb=torch.cuda.max_memory_allocated() / 2**20, weights_mb=weights_mb,
               mem_kind="torch.cuda.max_memory_allocated")
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--size", type=int, default=504, help="square input side (multiple of 14)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=8, help="head frames_chunk_size")
    ap.add_argument("--no-cuda", action="store_true", help="skip the DA3-Large CUDA run")
    ap.add_argument("--no-cpu", action="store_true", help="skip the tiny CPU run")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--write", action="store_true", help="overwrite an existing --out file")
    args = ap.parse_args()
    if args.size % 14:
        print(f"--size must be a multiple of 14, got {args.size}", file=sys.stderr)
        return 2

    rows = []
    if not args.no_cpu:
        rows.append(bench_cpu_tiny(args.frames, args.size, args.repeats, args.warmup, args.chunk))
    if torch.cuda.is_available() and not args.no_cuda:
        rows.append(bench_cuda_large(args.frames, args.size, args.repeats, args.warmup, args.chunk))

    header = (f"{'model':<10} {'device':<24} {'frames':>6} {'size':>5} {'sec':>8} {'fps':>8} "
              f"{'peak MB':>9}  memory")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:<10} {r['device'][:24]:<24} {r['frames']:>6} {r['size']:>5} "
              f"{r['seconds_best']:>8.3f} {r['fps']:>8.2f} {r['peak_mem_mb']:>9.0f}  {r['mem_kind']}")
    if not torch.cuda.is_available():
        print("(CUDA not available: DA3-Large row skipped)")

    meta = {"torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cuda_available": torch.cuda.is_available(),
            "cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]}
    if args.out.exists() and not args.write:
        print(f"{args.out} exists: not overwritten (pass --write)")
        return 0
    atomic_write_json(args.out, {"meta": meta, "results": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
