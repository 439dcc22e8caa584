"""A seeded tiny DA3 for smoke runs and benchmarks, saved in the hub on-disk format.

The sizes are those of ``tests/fixtures/da3/da3_tiny_config.json`` (embed 32, 10 blocks, alternating
attention from block 2, head features 16). Weights are drawn as the golden fixtures' were (see
``tests/fixtures/da3`` / HOW.md): layer scales U(0.2, 0.4); LayerNorm weight 1 + N(0, 0.1^2), bias
N(0, 0.1^2); Linear / conv weights N(0, 1/fan_in), biases N(0, 0.25/fan_in); tokens and position
table N(0, 0.5^2); the camera decoder's FoV bias + 1.2 so every FoV is positive. (Same recipe,
not the same numbers: the golden weights are the fixture file.)
"""

import copy
from pathlib import Path
from typing import Union

import torch
from torch import nn

from vggt.layers import LayerScale

from .model.depth_anything3 import DepthAnything3

TINY_CONFIG = {
    "backbone": {
        "img_size": 56, "patch_size": 14, "embed_dim": 32, "depth": 10, "num_heads": 2,
        "mlp_ratio": 4, "ffn_layer": "mlp", "num_register_tokens": 0, "init_values": 1.0,
        "qkv_bias": True, "proj_bias": True, "ffn_bias": True, "interpolate_offset": 0.1,
        "interpolate_antialias": False, "rope_freq": 100, "out_layers": [3, 5, 7, 9],
        "alt_start": 2, "qknorm_start": 2, "rope_start": 2, "cat_token": True,
    },
    "head": {
        "dim_in": 64, "patch_size": 14, "output_dim": 2, "activation": "exp",
        "conf_activation": "expp1", "features": 16, "out_channels": [8, 16, 32, 32],
        "pos_embed": True, "down_ratio": 1, "aux_pyramid_levels": 4, "aux_out1_conv_num": 5,
        "head_names": ["depth", "ray"],
    },
    "cam_enc": {"dim_out": 32, "dim_in": 9, "trunk_depth": 2, "target_dim": 9, "num_heads": 2,
                "mlp_ratio": 4, "init_values": 0.01},
    "cam_dec": {"dim_in": 64},
}


@torch.no_grad()
def randomize_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Redraw every parameter of a DA3 model in place (recipe in the module docstring)."""
    gen = torch.Generator().manual_seed(seed)

    def normal(p, std, mean=0.0):
        p.copy_(mean + std * torch.randn(p.shape, generator=gen))

    for module in model.modules():  # shared modules are visited once
        if isinstance(module, LayerScale):
            module.gamma.copy_(0.2 + 0.2 * torch.rand(module.gamma.shape, generator=gen))
        elif isinstance(module, nn.LayerNorm):
            normal(module.weight, 0.1, 1.0)
            normal(module.bias, 0.1)
        elif isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            fan_in = module.weight[0].numel() if not isinstance(module, nn.ConvTranspose2d) \
                else module.weight.shape[0] * module.weight[0, 0].numel()
            normal(module.weight, fan_in ** -0.5)
            if module.bias is not None:
                normal(module.bias, 0.5 * fan_in ** -0.5)
    vit = model.model.backbone.pretrained
    for p in (vit.cls_token, vit.camera_token, vit.pos_embed):
        if p is not None:
            normal(p, 0.5)
    if model.model.cam_dec is not None:
        model.model.cam_dec.fc_fov[0].bias.add_(1.2)
    return model


def build_tiny_da3(seed: int = 0, img_size: int = 56) -> DepthAnything3:
    """Tiny DA3 (eval, float32, CPU) with seeded non-trivial weights; ``img_size`` sets the
    position table's native size (px, multiple of 14). Same ``seed`` -> identical weights."""
    config = copy.deepcopy(TINY_CONFIG)
    config["backbone"]["img_size"] = int(img_size)
    model = DepthAnything3(config)
    return randomize_weights(model, seed).eval()


def write_tiny_da3(out_dir: Union[str, Path], seed: int = 0, img_size: int = 56) -> Path:
    """Write a tiny DA3 as ``out_dir/config.json`` + ``out_dir/model.safetensors`` (all hub names,
    tied aliases as identical copies); loads with :func:`depth_anything_3.load_da3`."""
    from safetensors.torch import save

    from utils.io_utils import atomic_write_bytes, atomic_write_json

    out = Path(out_dir)
    model = build_tiny_da3(seed, img_size)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(out / "model.safetensors", save(state, metadata={"format": "pt"}))
    atomic_write_json(out / "config.json", model.config)
    return out
