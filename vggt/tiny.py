"""A seeded tiny VGGT for tests and smoke runs, saved in the Hub on-disk format.

The sizes are those of ``tests/fixtures/vggt/vggt_tiny_config.json`` (embed_dim 32, 4 block
pairs, 2-block DINOv2 encoder, DPT features 16); every parameter is perturbed with seeded noise so
no path (layer scales, norms, special tokens) is a trivial identity.
"""

import json
from pathlib import Path
from typing import Union

import torch

from .models import VGGT

TINY_CONFIG = {
    "img_size": 56, "patch_size": 14, "embed_dim": 32, "depth": 4, "num_heads": 2, "mlp_ratio": 4.0,
    "num_register_tokens": 4, "patch_embed": "dinov2", "encoder_depth": 2, "encoder_num_heads": 2,
    "qk_norm": True, "rope_freq": 100, "camera_trunk_depth": 2, "camera_num_heads": 2,
    "dpt_features": 16, "dpt_out_channels": [8, 16, 32, 32], "dpt_intermediate_layer_idx": [0, 1, 2, 3],
}


def build_tiny_vggt(seed: int = 0, img_size: int = 518) -> VGGT:
    """Tiny VGGT (eval mode, float32, CPU) with deterministic, non-trivial random weights.

    ``img_size`` sets the DINOv2 position table's native size (px, multiple of 14); the model
    accepts any input size that is a multiple of 14. Same ``seed`` -> bit-identical weights.
    """
    config = dict(TINY_CONFIG, img_size=int(img_size))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VGGT(**config)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            if p.ndim <= 1:  # biases, norm weights, layer-scale gammas
                p.add_(0.1 * noise)
            else:
                std = float(p.std()) if p.numel() > 1 else 0.0
                p.add_(0.5 * (std if std > 1e-3 else 0.02) * noise)
        # Bias each of the 4 camera-head updates towards qw = 0.25 and FoV = 0.25 rad so the
        # decoded cameras are plausible (FoVs ~1 rad; ReLU'd FoVs of 0 would give infinite focals).
        model.camera_head.pose_branch.fc2.bias[6:9].add_(0.25)
    return model.eval()


def write_tiny_vggt(out_dir: Union[str, Path], seed: int = 0, img_size: int = 518) -> Path:
    """Write a tiny VGGT as ``out_dir/config.json`` + ``out_dir/model.safetensors``.

    The folder loads with :func:`vggt.load_vggt` (``load_vggt(out_dir)``). Deterministic for a
    given ``(seed, img_size)``. Returns ``Path(out_dir)`` (created if needed).
    """
    from safetensors.torch import save

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = build_tiny_vggt(seed, img_size)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    # bytes + a plain write: safetensors' save_file would create the file private (0600)
    (out / "model.safetensors").write_bytes(save(state, metadata={"format": "pt"}))
    (out / "config.json").write_text(json.dumps(model.config, indent=2, sort_keys=True) + "\n")
    return out
