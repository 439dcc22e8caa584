"""utils/wan_lora.py: the released Wan adapter format (original Wan names) on diffusers' Wan transformer."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from _wan_adapter import RANK, RELEASED_WAN, original_wan_adapter
from safetensors.torch import save_file

from utils.lora import LoraAdapterError
from utils.lora_apply import load_lora_adapter
from utils.wan_lora import load_wan_lora_adapter


def _transformer():
    from utils.tiny_wan import _transformer as tiny_transformer

    torch.manual_seed(0)
    tr = tiny_transformer()
    with torch.no_grad():  # no zero-initialised output layer: the LoRA must show in the output
        for p in tr.parameters():
            p.add_(torch.randn(p.shape) * 0.02)
    return tr.eval()


def _forward(tr):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 48, 2, 4, 4, generator=g)
    text = torch.randn(1, 7, tr.config.text_dim, generator=g)
    with torch.no_grad():
        return tr(hidden_states=x, timestep=torch.tensor([500]), encoder_hidden_states=text,
                  return_dict=False)[0]


def test_released_wan_config_is_the_upstream_training_config():
    from utils.lora import read_adapter_config

    cfg = read_adapter_config(RELEASED_WAN)  # upstream train/Wan2.2-TI2V-5B/03_train.py
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (64, 128.0, 0.0)
    assert set(cfg.target_modules) == {"q", "k", "v", "o"}


def test_original_wan_adapter_equals_same_weights_as_diffusers_adapter(tmp_path):
    base = _forward(_transformer())
    diffusers_named = original_wan_adapter(tmp_path / "orig", _transformer())

    converted = load_wan_lora_adapter(_transformer(), tmp_path / "orig", scale=0.2)
    # the same weights as a diffusers-format PEFT adapter, loaded by the generic loader
    ref_dir = tmp_path / "diffusers"
    ref_dir.mkdir()
    cfg = json.loads((tmp_path / "orig" / "adapter_config.json").read_text())
    cfg["target_modules"] = ["to_q", "to_k", "to_v", "to_out.0"]
    (ref_dir / "adapter_config.json").write_text(json.dumps(cfg))
    save_file(diffusers_named, str(ref_dir / "adapter_model.safetensors"))
    reference = load_lora_adapter(_transformer(), ref_dir, scale=0.2)
    out, ref = _forward(converted), _forward(reference)
    assert (out - base).abs().max() > 1e-3, "the adapter does not change the output"
    torch.testing.assert_close(out, ref, rtol=0, atol=0)

    # scale 0.2 multiplies alpha / r: delta = 0.2 * 2 * B @ A, as upstream's --lora_weight 0.2 does
    merged = load_wan_lora_adapter(_transformer(), tmp_path / "orig", scale=0.2, merge=True)
    w0 = _transformer().blocks[1].attn2.to_out[0].weight
    a = diffusers_named["base_model.model.blocks.1.attn2.to_out.0.lora_A.weight"]
    b = diffusers_named["base_model.model.blocks.1.attn2.to_out.0.lora_B.weight"]
    torch.testing.assert_close(merged.blocks[1].attn2.to_out[0].weight, w0 + 0.4 * b @ a)
    # and diffusers-named adapters pass through the same entry point
    again = load_wan_lora_adapter(_transformer(), ref_dir, scale=0.2)
    torch.testing.assert_close(_forward(again), ref, rtol=0, atol=0)


@pytest.mark.parametrize("bad_key", [
    "base_model.model.blocks.0.self_attn.norm_q.lora_A.weight",   # a norm: no LoRA target in diffusers
    "base_model.model.blocks.0.ffn.0.lora_A.weight",              # not a q/k/v/o target
    "base_model.model.head.head.lora_B.weight",
])
def test_unmapped_key_is_an_error_naming_it(tmp_path, bad_key):
    original_wan_adapter(tmp_path / "a", _transformer(), extra={bad_key: torch.zeros(RANK, 24)})
    with pytest.raises(LoraAdapterError, match=re.escape(bad_key)):
        load_wan_lora_adapter(_transformer(), tmp_path / "a")


def test_block_outside_the_model_and_bad_target_are_errors(tmp_path):
    original_wan_adapter(tmp_path / "a", _transformer(),
                      extra={"base_model.model.blocks.9.self_attn.q.lora_A.weight": torch.zeros(RANK, 24),
                             "base_model.model.blocks.9.self_attn.q.lora_B.weight": torch.zeros(24, RANK)})
    with pytest.raises(LoraAdapterError, match=r"blocks\.9\.attn1\.to_q"):
        load_wan_lora_adapter(_transformer(), tmp_path / "a")
    shutil.rmtree(tmp_path / "a")
    original_wan_adapter(tmp_path / "a", _transformer())
    cfg = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    cfg["target_modules"] = ["q", "k", "v", "o", "ffn.0"]
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(LoraAdapterError, match=r"ffn\.0"):
        load_wan_lora_adapter(_transformer(), tmp_path / "a")
