"""The tiny seeded CogVideoX checkpoints: deterministic, loadable like the real ones, right configs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from generate.model_defaults import pipeline_defaults, read_model_defaults
from utils.tiny_models import build_tiny_cogvideox

WEIGHT_FILES = (
    "transformer/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/model.safetensors",
)


def _weights(folder):
    return {f: load_file(str(folder / f)) for f in WEIGHT_FILES}


@pytest.mark.parametrize("kind", ["cogvideox-t2v", "cogvideox-i2v", "cogvideox1.5-t2v"])
def test_same_seed_same_bytes_other_seed_other_weights(kind, tiny_models, tmp_path):
    again = build_tiny_cogvideox(kind, tmp_path / "again", seed=0)
    for f in WEIGHT_FILES:
        assert (again / f).read_bytes() == (tiny_models[kind] / f).read_bytes(), f
    assert (again / "transformer/config.json").read_text() == (tiny_models[kind] / "transformer/config.json").read_text()
    if kind == "cogvideox-t2v":  # one kind is enough to show the seed matters
        other = _weights(build_tiny_cogvideox(kind, tmp_path / "other", seed=1))
        base = _weights(again)
        for f in WEIGHT_FILES:
            assert base[f].keys() == other[f].keys()
            assert any(not torch.equal(base[f][k], other[f][k]) for k in base[f]), f
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp build folder left behind"


def test_load_with_from_pretrained_and_configs(tiny_models):
    from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline, CogVideoXTransformer3DModel

    t2v = CogVideoXPipeline.from_pretrained(str(tiny_models["cogvideox-t2v"]))
    i2v = CogVideoXImageToVideoPipeline.from_pretrained(str(tiny_models["cogvideox-i2v"]))
    v15 = CogVideoXPipeline.from_pretrained(str(tiny_models["cogvideox1.5-t2v"]))
    for pipe in (t2v, i2v, v15):
        assert isinstance(pipe.transformer, CogVideoXTransformer3DModel)
        assert pipe.transformer.config.use_rotary_positional_embeddings is True
        assert pipe.transformer.config.max_text_seq_length == 226
        assert pipe.scheduler.config.prediction_type == "v_prediction"
        assert pipe.tokenizer("a camera orbits").input_ids[-1] == pipe.tokenizer.eos_token_id
    latent = t2v.vae.config.latent_channels
    assert t2v.transformer.config.in_channels == latent
    assert t2v.transformer.config.patch_size_t is None
    assert i2v.transformer.config.in_channels == 2 * i2v.vae.config.latent_channels
    assert i2v.transformer.config.use_learned_positional_embeddings is True
    assert v15.transformer.config.patch_size_t == 2
    assert v15.transformer.config.patch_bias is False
    assert v15.vae.config.invert_scale_latents is True

    assert (pipeline_defaults(t2v).num_frames, pipeline_defaults(t2v).height, pipeline_defaults(t2v).width) == (9, 64, 96)
    assert pipeline_defaults(i2v).fixed_size and not pipeline_defaults(t2v).fixed_size
    assert read_model_defaults(tiny_models["cogvideox1.5-t2v"]).num_frames == 17
    index = json.loads((tiny_models["cogvideox-i2v"] / "model_index.json").read_text())
    assert index["_class_name"] == "CogVideoXImageToVideoPipeline"
    assert set(index) >= {"tokenizer", "text_encoder", "vae", "transformer", "scheduler"}
