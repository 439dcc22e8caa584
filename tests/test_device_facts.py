"""utils/device.py (one dtype policy), utils/model_facts.py (one image-to-video rule) and
utils/vae_tiling.py (one tiling rule), and that generation and encoding follow them."""

from types import SimpleNamespace

import pytest
import torch

from train_dpo.encode import resolve_device_dtype
from train_dpo.encode_cogvideox import is_i2v_pipeline, load_encode_pipeline
from utils.device import compute_dtype, half_dtype, lightning_precision, resolve_device
from utils.model_facts import config_value, pipeline_takes_image, requires_image_latents
from utils.vae_tiling import encode_latent_dist, vae_tiling_is_exact


@pytest.mark.parametrize("capability, dtype, precision", [
    ((7, 0), torch.float16, "16-mixed"),  # V100
    ((7, 5), torch.float16, "16-mixed"),  # T4
    ((8, 0), torch.bfloat16, "bf16-mixed"),  # A100
    ((9, 0), torch.bfloat16, "bf16-mixed"),  # H100
])  # fmt: skip
def test_dtype_policy_follows_compute_capability(monkeypatch, capability, dtype, precision):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulated bf16 must not count
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert half_dtype("cuda:0") == dtype
    assert compute_dtype(torch.device("cuda", 1)) == dtype
    assert lightning_precision(True) == precision
    assert resolve_device_dtype("cuda", None) == (torch.device("cuda"), dtype)  # the encoder's default
    assert resolve_device_dtype("cuda", "fp32")[1] == torch.float32  # an explicit choice wins


def test_dtype_policy_cpu():
    assert compute_dtype("cpu") == torch.float32
    assert lightning_precision(False) == "32-true"
    assert resolve_device_dtype("cpu", None) == (torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="CUDA"):
        half_dtype("cpu")
    with pytest.raises(ValueError, match="bf16"):
        resolve_device_dtype("cpu", "bfloat16")


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == torch.device("cuda")


def test_config_value_dict_and_object():
    assert config_value({"in_channels": 32}, "in_channels") == 32
    assert config_value(SimpleNamespace(in_channels=16), "in_channels") == 16
    assert config_value({}, "patch_size_t", 7) == 7
    with pytest.raises(KeyError):
        requires_image_latents({"in_channels": 32})
    # Wan2.2-TI2V: image optional, given as the clean first latent frame, in == out channels
    assert not requires_image_latents({"in_channels": 48, "out_channels": 48})


def test_image_to_video_rule_on_tiny_models(tiny_models):
    from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline, CogVideoXTransformer3DModel

    for name, i2v in (("cogvideox-t2v", False), ("cogvideox-i2v", True), ("cogvideox1.5-t2v", False)):
        cfg = CogVideoXTransformer3DModel.load_config(str(tiny_models[name]), subfolder="transformer")
        assert requires_image_latents(cfg) is i2v, name
    t2v = CogVideoXPipeline.from_pretrained(str(tiny_models["cogvideox-t2v"]))
    i2v = CogVideoXImageToVideoPipeline.from_pretrained(str(tiny_models["cogvideox-i2v"]))
    assert requires_image_latents(i2v.transformer.config) and not requires_image_latents(t2v.transformer.config)
    assert pipeline_takes_image(i2v) and not pipeline_takes_image(t2v)
    assert is_i2v_pipeline(i2v) and not is_i2v_pipeline(t2v)
    # the encoder's transformer-less pipeline answers from the transformer config it keeps
    enc = load_encode_pipeline(tiny_models["cogvideox-i2v"], "cpu", torch.float32)
    assert enc.transformer is None and is_i2v_pipeline(enc)


def test_vae_tiling_rule(tiny_models):
    from diffusers import AutoencoderKLCogVideoX

    # the released CogVideoX VAE: tiles of 240 x 360 px, 30 x 45 latents, overlap 1/6, 1/5 -> exact
    real = SimpleNamespace(
        config=SimpleNamespace(block_out_channels=(128, 256, 256, 512)),
        tile_sample_min_height=240, tile_sample_min_width=360, tile_latent_min_height=30,
        tile_latent_min_width=45, tile_overlap_factor_height=1 / 6, tile_overlap_factor_width=1 / 5,
    )  # fmt: skip
    assert vae_tiling_is_exact(real)
    vae = AutoencoderKLCogVideoX.from_pretrained(str(tiny_models["cogvideox-t2v"]), subfolder="vae")
    assert not vae_tiling_is_exact(vae)
    x = torch.randn(1, 3, 1, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = encode_latent_dist(vae, x).mean
        vae.enable_tiling()  # switched on anyway: encoded untiled (tiled gives 9 x 12 latents here)
        forced = encode_latent_dist(vae, x).mean
    assert vae.use_tiling and tuple(plain.shape[-2:]) == (8, 12) and torch.equal(plain, forced)
