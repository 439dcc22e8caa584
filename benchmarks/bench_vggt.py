"""Throughput and peak memory of the from-scratch VGGT (vggt/).

S frames (default 10) at 518x518 (shared protocol: benchmarks/backbone_bench.py):
  * tiny config (tests/fixtures sizes, seeded random weights) on CPU, float32; peak memory is the
    process's peak resident set size (resource.getrusage) and its growth during the runs;
  * full VGGT-1B architecture (random weights) on CUDA when available, aggregator under bf16
    autocast (fp16 before compute capability 8) with fp32 heads; peak memory from
    torch.cuda.max_memory_allocated.

    python benchmarks/bench_vggt.py [--frames 10] [--size 518] [--repeats 3] [--write | --out PATH]
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backbone_bench import run_backbone_bench  # noqa: E402  (benchmarks/)
from vggt import VGGT  # noqa: E402
from vggt.tiny import build_tiny_vggt  # noqa: E402

if __name__ == "__main__":
    tiny = ("tiny", lambda: build_tiny_vggt(seed=0, img_size=518))
    full = ("vggt-1b", "VGGT-1B", VGGT, "aggregator")
    sys.exit(run_backbone_bench(__doc__, "bench_vggt", 518, tiny, full, batch_dim=False, noise=torch.rand))
