"""Seconds per Diffusion-DPO optimiser step and peak memory: this trainer's design vs the naive one.

Designs (same LoRA, same noise/timesteps, same loss, gradient checkpointing on in both):

* ``shared``  -- this repository's ``train_dpo.lightning_module.DiffusionDPOModule``: one
  transformer; the reference is the same weights with the LoRA adapter disabled
  (``peft_model.disable_adapter()``, no_grad); winner and loser go through one batched forward
  (batch 2B) for the policy and one for the reference: 2 forwards + 1 backward per step, base
  weights once in memory.
* ``naive``   -- a second full copy of the transformer as the frozen reference
  (``copy.deepcopy``), and four separate forwards (policy-winner, policy-loser, reference-winner,
  reference-loser): 4 forwards + 2 backward passes' worth of graph, base weights twice.

Settings:

* ``tiny``  (CPU): the tiny CogVideoX-5B-like test model (``utils.tiny_models``, built in a temp
  dir), latents 3 x 4 x 8 x 12, fp32;
* ``small`` (CPU, ``--presets tiny small``): an 8-layer, 512-wide CogVideoX transformer with random
  weights (~50 M parameters), latents 5 x 16 x 16 x 24, fp32 -- weight-dominated memory like the
  5B, small enough for a CPU;
* ``5b``    (CUDA, when available): the full CogVideoX-5B transformer architecture (42 layers,
  48 x 64 heads, 4096-d text) with random weights in bf16, latents 13 x 16 x 60 x 90 (49 frames at
  480 x 720), LoRA r 64 in fp32, bf16 autocast.

Each (preset, design) runs in its own subprocess so that peak memory is its own: CUDA
``max_memory_allocated``; CPU peak RSS (``ru_maxrss``) and its increase over the RSS after imports.
Time: median seconds per optimiser step (forward(s) + backward + clip + AdamW) over ``--steps``
after ``--warmup``; designs are run interleaved ``--repeats`` times and the best median is kept
(CPU workers use ``--threads`` threads, 1 by default, to be less sensitive to other load).
Prints a table and writes JSON (default ``benchmarks/results/bench_dpo_step.json``).

    python benchmarks/bench_dpo_step.py [--presets tiny small 5b] [--steps 5] [--warmup 2] [--out PATH]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from results_io import add_output_args, save_results  # noqa: E402  (benchmarks/results_io.py)
from utils.device import compute_dtype  # noqa: E402

DESIGNS = ("shared", "naive")

# THUDM/CogVideoX-5b transformer/config.json
COGVIDEOX_5B = dict(
    num_attention_heads=48, attention_head_dim=64, in_channels=16, out_channels=16, flip_sin_to_cos=True,
    freq_shift=0, time_embed_dim=512, text_embed_dim=4096, num_layers=42, dropout=0.0, attention_bias=True,
    sample_width=90, sample_height=60, sample_frames=49, patch_size=2, temporal_compression_ratio=4,
    max_text_seq_length=226, activation_fn="gelu-approximate", timestep_activation_fn="silu",
    norm_elementwise_affine=True, norm_eps=1e-5, spatial_interpolation_scale=1.875,
    temporal_interpolation_scale=1.0, use_rotary_positional_embeddings=True,
    use_learned_positional_embeddings=False,
)  # fmt: skip
# Weight-dominated like the 5B (whose bf16 weights, 11 GB, outweigh one layer's activations), small
# enough for a CPU: 8 layers, 8 x 64 heads, 512-d text, 5 x 16 x 16 x 24 latents (706 tokens).
SMALL = dict(COGVIDEOX_5B, num_attention_heads=8, num_layers=8, text_embed_dim=512, time_embed_dim=256,
             sample_width=24, sample_height=16, sample_frames=17)  # fmt: skip


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _build(preset: str, device: torch.device, tmp: Path):
    """(transformer, scheduler, latent shape [F, C, H, W], text dim, dtype, lora rank)."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    from utils.tiny_models import _scheduler, build_tiny_cogvideox

    torch.manual_seed(0)
    if preset == "tiny":
        path = build_tiny_cogvideox("cogvideox-t2v", tmp / "tiny")
        tr = CogVideoXTransformer3DModel.from_pretrained(str(path), subfolder="transformer")
        sch = CogVideoXDDIMScheduler.from_pretrained(str(path), subfolder="scheduler")
        return tr, sch, (3, 4, 8, 12), 32, torch.float32, 8
    if preset == "small":
        return CogVideoXTransformer3DModel(**SMALL), _scheduler(), (5, 16, 16, 24), 512, torch.float32, 16
    if preset == "5b":
        dtype = compute_dtype(device)  # bf16 from sm_80 on, fp16 before (utils/device.py)
        with torch.device(device):
            tr = CogVideoXTransformer3DModel(**COGVIDEOX_5B).to(dtype)
        return tr, _scheduler(), (13, 16, 60, 90), 4096, dtype, 64
    raise ValueError(preset)


def _worker(preset: str, design: str, steps: int, warmup: int, threads: int) -> dict:
    from train_dpo.config import DPOTrainConfig
    from train_dpo.families.cogvideox import CogVideoXFamily, pad_latent_frames
    from train_dpo.lightning_module import DiffusionDPOModule
    from train_dpo.loss import diffusion_dpo_loss

    device = torch.device("cuda" if preset == "5b" else "cpu")
    if device.type == "cpu" and threads > 0:
        torch.set_num_threads(threads)
    rss0 = _rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        transformer, scheduler, shape, text_dim, wdtype, rank = _build(preset, device, Path(tmp))
    transformer.to(device)
    cfg = DPOTrainConfig(lora_rank=rank, lora_alpha=2 * rank, gradient_checkpointing=True, learning_rate=1e-5)
    reference = None
    if design == "naive":  # a second, frozen full copy of the base weights as the reference model
        reference = copy.deepcopy(transformer).requires_grad_(False).eval()
    family = CogVideoXFamily(transformer.config, scheduler)
    module = DiffusionDPOModule(transformer, family, cfg).to(device)
    params = module.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate)
    autocast = (
        torch.autocast("cuda", dtype=compute_dtype(device))
        if device.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )
    g = torch.Generator().manual_seed(0)
    batch = {
        "latents_w": torch.randn(1, *shape, generator=g).to(device),
        "latents_l": torch.randn(1, *shape, generator=g).to(device),
        "prompt_embeds": torch.randn(1, 226, text_dim, generator=g).to(device),
    }
    n_base = sum(p.numel() for p in transformer.parameters() if not p.requires_grad)

    def step_shared():
        with autocast:
            out = module.dpo_step(batch, g)
        out.loss.backward()
        return out

    def step_naive():
        p_t = module.transformer_config.patch_size_t
        x_w = pad_latent_frames(batch["latents_w"].float(), p_t)
        x_l = pad_latent_frames(batch["latents_l"].float(), p_t)
        noise = torch.randn(x_w.shape, generator=g).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (1,), generator=g).to(device)
        preds, refs, targets = [], [], []
        with autocast:
            for x0 in (x_w, x_l):
                noisy = scheduler.add_noise(x0, noise, t)
                targets.append(scheduler.get_velocity(x0, noise, t))
                inputs = family.build_transformer_inputs(noisy, t, batch["prompt_embeds"].float())
                preds.append(module.transformer(**inputs, return_dict=False)[0])
                with torch.no_grad():
                    refs.append(reference(**inputs, return_dict=False)[0])
            out = diffusion_dpo_loss(
                preds[0], preds[1], refs[0], refs[1], targets[0], targets[1], beta=cfg.beta
            )
        out.loss.backward()
        return out

    run = step_shared if design == "shared" else step_naive
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        out = run()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    res = {
        "preset": preset,
        "design": design,
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "dtype": str(wdtype).replace("torch.", ""),
        "latents": list(shape),
        "steps": steps,
        "sec_per_step": statistics.median(times),
        "sec_per_step_mean": sum(times) / len(times),
        "sec_per_step_min": min(times),
        "base_params_millions": n_base / 1e6,
        "base_weight_copies": 2 if design == "naive" else 1,
        "lora_params_millions": sum(p.numel() for p in params) / 1e6,
        "loss": float(out.loss),
    }
    if device.type == "cuda":
        res["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        res["peak_rss_mb"] = peak
        res["peak_rss_over_imports_mb"] = peak - rss0
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=None, help="tiny small 5b (default: tiny, + 5b on CUDA)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="runs per design, interleaved; best median kept")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per worker (0: torch default)")
    add_output_args(p, "bench_dpo_step")
    p.add_argument("--_worker", nargs=2, metavar=("PRESET", "DESIGN"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._worker:
        res = _worker(args._worker[0], args._worker[1], args.steps, args.warmup, args.threads)
        print("RESULT " + json.dumps(res))
        return 0
    presets = args.presets or (["tiny", "5b"] if torch.cuda.is_available() else ["tiny"])
    if "5b" in presets and not torch.cuda.is_available():
        print("5b preset needs CUDA; skipped", file=sys.stderr)
        presets = [x for x in presets if x != "5b"]
    rows = []
    for preset in presets:
        best: dict[str, dict] = {}
        for _ in range(max(1, args.repeats)):
            for design in DESIGNS:  # interleaved, so that load from other processes hits both alike
                cmd = [sys.executable, __file__, "--_worker", preset, design, "--steps", str(args.steps),
                       "--warmup", str(args.warmup), "--threads", str(args.threads)]  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True)
                line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode != 0 or not line:
                    print(f"{preset}/{design} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                    best.setdefault(design, {"preset": preset, "design": design, "error": proc.stderr[-500:]})
                    continue
                r = json.loads(line[-1][len("RESULT ") :])
                r["all_medians"] = best.get(design, {}).get("all_medians", []) + [r["sec_per_step"]]
                if (
                    "error" in best.get(design, {})
                    or design not in best
                    or r["sec_per_step"] < best[design]["sec_per_step"]
                ):
                    best[design] = r
                else:
                    best[design]["all_medians"] = r["all_medians"]
        rows += [best[d] for d in DESIGNS if d in best]

    def mem(r):
        if "peak_mem_gb" in r:
            return f"{r['peak_mem_gb']:.2f} GB"
        return f"{r['peak_rss_mb']:.0f} MB (+{r['peak_rss_over_imports_mb']:.0f})"

    header = (
        f"{'preset':<7} {'design':<7} {'device':<28} {'s/step':>9} {'speed-up':>8} "
        f"{'base copies':>11} {'peak memory':>22}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['preset']:<7} {r['design']:<7} FAILED")
            continue
        naive = next(
            (x for x in rows if x["preset"] == r["preset"] and x["design"] == "naive" and "error" not in x),
            None,
        )
        speed = f"{naive['sec_per_step'] / r['sec_per_step']:.2f}x" if naive else "-"
        print(
            f"{r['preset']:<7} {r['design']:<7} {r['device'][:28]:<28} {r['sec_per_step']:>9.4f} {speed:>8} "
            f"{r['base_weight_copies']:>11} {mem(r):>22}"
        )
    out = {
        "rows": rows,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "threads": args.threads,
        "metric": "median seconds per optimiser step (best of repeats); speed-up = naive / this",
    }
    save_results(args, "bench_dpo_step", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
