"""A random LoRA adapter for a tiny WanTransformer3DModel in the released (original Wan) key format."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parent.parent
RELEASED_WAN = REPO / "checkpoints" / "VideoGPA-Wan2.2TI2V-lora"
RANK = 4
_ATTN = {"self_attn": "attn1", "cross_attn": "attn2"}  # original Wan -> diffusers, written out here
_LINEAR = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0"}


def original_wan_adapter(folder: Path, transformer, extra: dict | None = None, std: float = 0.3) -> dict:
    """Write the released adapter_config.json (alpha / r = 2 as released, rank RANK) and random weights
    keyed ``base_model.model.blocks.<i>.<self_attn|cross_attn>.<q|k|v|o>.lora_<A|B>.weight`` (+ ``extra``).

    Returns:
        the same tensors keyed by the diffusers module they belong to (``...attn1.to_q.lora_A.weight``).
    """
    folder.mkdir(parents=True)
    cfg = json.loads((RELEASED_WAN / "adapter_config.json").read_text())
    cfg["r"], cfg["lora_alpha"] = RANK, 2.0 * RANK
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    g = torch.Generator().manual_seed(1)
    original, diffusers_named = {}, {}
    for i in range(transformer.config.num_layers):
        for attn, dattn in _ATTN.items():
            for o, d in _LINEAR.items():
                m = transformer.get_submodule(f"blocks.{i}.{dattn}.{d}")
                a = torch.randn(RANK, m.in_features, generator=g) * std
                b = torch.randn(m.out_features, RANK, generator=g) * std
                for key, t in (("lora_A", a), ("lora_B", b)):
                    original[f"base_model.model.blocks.{i}.{attn}.{o}.{key}.weight"] = t
                    diffusers_named[f"base_model.model.blocks.{i}.{dattn}.{d}.{key}.weight"] = t
    save_file({**original, **(extra or {})}, str(folder / "adapter_model.safetensors"))
    return diffusers_named
