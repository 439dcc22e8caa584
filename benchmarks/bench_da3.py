"""Throughput and peak memory of the from-scratch Depth Anything 3 (depth_anything_3/).

S frames (default 10, as VideoGPA's scorer) at 504 x 504 (its 518 px frames after DA3's resize;
shared protocol: benchmarks/backbone_bench.py):
  * tiny config (embed 32, seeded random weights, 518 px position table) on CPU, float32; peak
    memory is the process's peak resident set size (resource.getrusage) and its growth in the runs;
  * the DA3-Large architecture (411 M parameters, random weights) on CUDA when available, backbone
    under bf16 autocast (fp16 before compute capability 8) with fp32 heads, as the reference API;
    peak memory from torch.cuda.max_memory_allocated.

    python benchmarks/bench_da3.py [--frames 10] [--size 504] [--repeats 3] [--write | --out PATH]
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backbone_bench import run_backbone_bench  # noqa: E402  (benchmarks/)
from depth_anything_3 import build_da3  # noqa: E402
from depth_anything_3.tiny import build_tiny_da3  # noqa: E402

if __name__ == "__main__":
    tiny = ("da3-tiny", lambda: build_tiny_da3(seed=0, img_size=518))
    full = ("da3-large", "DA3-Large", lambda: build_da3({"model_name": "da3-large"}), "backbone")
    sys.exit(run_backbone_bench(__doc__, "bench_da3", 504, tiny, full, batch_dim=True, noise=torch.randn))
