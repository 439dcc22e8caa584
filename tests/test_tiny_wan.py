"""The tiny Wan2.2-TI2V-5B checkpoint: loads like the real folder, has its configs, generates T2V and I2V."""

from __future__ import annotations

import json

import torch
from PIL import Image


def _generate(pipe, **kw):
    return pipe(
        prompt="a camera slowly orbits around a stone gateway",
        num_frames=17,
        height=32,
        width=32,
        num_inference_steps=2,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
        **kw,
    ).frames


def test_loads_as_wan_ti2v_with_real_configs(tiny_wan):
    from diffusers import AutoencoderKLWan, DiffusionPipeline, UniPCMultistepScheduler, WanPipeline

    index = json.loads((tiny_wan / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline" and index["expand_timesteps"] is True
    assert index["boundary_ratio"] is None and index["transformer_2"] == [None, None]
    pipe = DiffusionPipeline.from_pretrained(str(tiny_wan))
    assert type(pipe) is WanPipeline and pipe.config.expand_timesteps is True
    vae, tr = pipe.vae, pipe.transformer
    assert isinstance(vae, AutoencoderKLWan)
    assert vae.config.z_dim == 48 and vae.config.is_residual and vae.config.patch_size == 2
    assert vae.config.in_channels == 12 and vae.config.scale_factor_spatial == 16
    assert vae.config.scale_factor_temporal == 4
    assert len(vae.config.latents_mean) == len(vae.config.latents_std) == 48
    assert vae.config.latents_std[39] == 1.6887  # a value of the real Wan2.2 VAE config
    assert tr.config.in_channels == tr.config.out_channels == 48
    assert tuple(tr.config.patch_size) == (1, 2, 2) and tr.config.image_dim is None
    assert type(pipe.text_encoder).__name__ == "UMT5EncoderModel"
    assert isinstance(pipe.scheduler, UniPCMultistepScheduler)
    assert pipe.scheduler.config.prediction_type == "flow_prediction"
    assert pipe.scheduler.config.use_flow_sigmas and pipe.scheduler.config.flow_shift == 5.0


def test_generates_text_and_first_frame_video(tiny_wan):
    from diffusers import DiffusionPipeline, WanImageToVideoPipeline

    t2v = DiffusionPipeline.from_pretrained(str(tiny_wan))
    video = _generate(t2v)
    assert video.shape == (1, 17, 3, 32, 32)
    assert torch.isfinite(video).all() and 0.0 <= video.min() and video.max() <= 1.0

    i2v = WanImageToVideoPipeline.from_pretrained(str(tiny_wan))
    assert i2v.config.expand_timesteps is True
    red, blue = Image.new("RGB", (32, 32), (220, 20, 20)), Image.new("RGB", (32, 32), (20, 20, 220))
    a, b = _generate(i2v, image=red), _generate(i2v, image=blue)
    assert a.shape == (1, 17, 3, 32, 32)
    assert not torch.allclose(a, b, atol=1e-4), "the first frame does not condition the video"
    assert not torch.allclose(a, video, atol=1e-4)


def test_same_seed_same_bytes(tiny_wan, tmp_path):
    from utils.tiny_models import build_tiny_wan

    again = build_tiny_wan(tmp_path / "again", seed=0)
    for f in ("transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
              "text_encoder/model.safetensors", "scheduler/scheduler_config.json"):
        assert (again / f).read_bytes() == (tiny_wan / f).read_bytes(), f
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp build folder left behind"
