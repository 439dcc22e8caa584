"""Throughput and peak memory of the from-scratch VGGT (vggt/).

S frames (default 10) at 518x518:
  * tiny config (tests/fixtures sizes, seeded random weights) on CPU, float32; peak memory is the
    process's peak resident set size (resource.getrusage) and its growth during the runs;
  * full VGGT-1B architecture (random weights) on CUDA when available, aggregator under bf16
    autocast with fp32 heads; peak memory from torch.cuda.max_memory_allocated.

    python benchmarks/bench_vggt.py [--frames 10] [--size 518] [--repeats 3] [--out PATH]
"""

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results_io import add_output_args, save_results  # noqa: E402  (benchmarks/results_io.py)
from utils.device import half_dtype  # noqa: E402
from vggt import VGGT  # noqa: E402
from vggt.tiny import build_tiny_vggt  # noqa: E402


def _rss_mb() -> float:
    try:
        import psutil
        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench_cpu_tiny(frames: int, size: int, repeats: int, warmup: int, chunk: int) -> dict:
    model = build_tiny_vggt(seed=0, img_size=518)
    images = torch.rand(frames, 3, size, size, generator=torch.Generator().manual_seed(0))
    rss_before = _rss_mb()
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            model(images, frames_chunk_size=chunk)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    best = min(times)
    return {"name": "tiny", "device": "cpu", "dtype": "float32", "frames": frames, "size": size,
            "threads": torch.get_num_threads(), "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "seconds_best": best, "seconds_mean": sum(times) / len(times), "fps": frames / best,
            "peak_mem_mb": _peak_rss_mb(), "mem_growth_mb": _peak_rss_mb() - rss_before,
            "mem_kind": "process peak RSS"}


def bench_cuda_1b(frames: int, size: int, repeats: int, warmup: int, chunk: int) -> dict:
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = VGGT().eval()
    dtype = half_dtype("cuda")
    images = torch.rand(frames, 3, size, size, device="cuda")
    weights_mb = torch.cuda.memory_allocated() / 2**20
    torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(images, frames_chunk_size=chunk, autocast_dtype=dtype)
            torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    best = min(times)
    return {"name": "vggt-1b", "device": torch.cuda.get_device_name(),
            "dtype": f"fp32 weights, {dtype} autocast",
            "frames": frames, "size": size, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "seconds_best": best, "seconds_mean": sum(times) / len(times), "fps": frames / best,
            "peak_mem_mb": torch.cuda.max_memory_allocated() / 2**20, "weights_mb": weights_mb,
            "mem_kind": "torch.cuda.max_memory_allocated"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--size", type=int, default=518)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=8, help="DPT frames_chunk_size")
    ap.add_argument("--no-cuda", action="store_true", help="skip the VGGT-1B CUDA run")
    add_output_args(ap, "bench_vggt")
    args = ap.parse_args()

    rows = [bench_cpu_tiny(args.frames, args.size, args.repeats, args.warmup, args.chunk)]
    if torch.cuda.is_available() and not args.no_cuda:
        rows.append(bench_cuda_1b(args.frames, args.size, args.repeats, args.warmup, args.chunk))

    header = (f"{'model':<8} {'device':<24} {'frames':>6} {'size':>5} {'sec':>8} {'fps':>8} "
              f"{'peak MB':>9}  memory")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:<8} {r['device'][:24]:<24} {r['frames']:>6} {r['size']:>5} "
              f"{r['seconds_best']:>8.3f} {r['fps']:>8.2f} {r['peak_mem_mb']:>9.0f}  {r['mem_kind']}")
    if not torch.cuda.is_available():
        print("(CUDA not available: VGGT-1B row skipped)")

    meta = {"torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cuda_available": torch.cuda.is_available()}
    save_results(args, "bench_vggt", {"meta": meta, "results": rows})


if __name__ == "__main__":
    main()
