"""generate/ scripts with a Wan2.2-TI2V-5B base model (tiny checkpoint, 2 steps, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _wan_adapter import original_wan_adapter
from PIL import Image

from generate import i2v_inference, t2v_inference
from generate.model_defaults import read_model_defaults, resolve_video_size
from generate.pipeline import GenerationConfigError, generate_video, load_pipeline
from generate.wan import WAN_NEGATIVE_PROMPT
from utils.video_utils import read_video_frames

PROMPT = "a camera orbits a stone gateway"
SMALL = ["--num_frames", "17", "--height", "32", "--width", "32", "--num_inference_steps", "2"]


def test_wan_defaults_and_sizes(tiny_wan):
    d = read_model_defaults(tiny_wan)
    assert (d.family, d.num_frames, d.height, d.width) == ("wan", 121, 704, 1280)  # model card
    assert resolve_video_size(d) == (121, 704, 1280)
    assert resolve_video_size(d, 13, 64, 96) == (13, 64, 96)  # 4k + 1 frames, multiples of 32
    with pytest.raises(GenerationConfigError, match="4k \\+ 1"):
        resolve_video_size(d, num_frames=15)
    with pytest.raises(GenerationConfigError, match="multiples of 32"):
        resolve_video_size(d, height=48)


def test_t2v_script_with_released_format_adapter(tiny_wan, tmp_path):
    from diffusers import WanTransformer3DModel

    adapter = tmp_path / "lora"
    transformer = WanTransformer3DModel.from_pretrained(str(tiny_wan / "transformer"))
    original_wan_adapter(adapter, transformer, std=1.0)
    name = "a_camera_orbits_a_stone_gateway_seed42"
    common = [PROMPT, "--base_model", str(tiny_wan), *SMALL]
    assert t2v_inference.main([*common, "--output_dir", str(tmp_path / "base")]) == 0
    lora = ["--lora_path", str(adapter)]
    assert t2v_inference.main([*common, "--output_dir", str(tmp_path / "lora"), *lora]) == 0
    assert t2v_inference.main([*common, "--output_dir", str(tmp_path / "g3"), "--lora_path", str(adapter),
                               "--guidance_scale", "3"]) == 0  # fmt: skip
    base = read_video_frames(tmp_path / "base" / f"{name}.mp4")
    assert base.shape == (17, 32, 32, 3)
    assert np.abs(read_video_frames(tmp_path / "lora" / f"{name}.mp4").astype(int) - base).max() > 2
    rec = json.loads((tmp_path / "lora" / f"{name}.json").read_text())
    # Wan's defaults replace the CogVideoX script's constants (6.0, 8 fps); the released LoRA scale 0.2
    assert (rec["guidance_scale"], rec["fps"], rec["lora_scale"]) == (5.0, 24.0, 0.2)
    assert json.loads((tmp_path / "g3" / f"{name}.json").read_text())["guidance_scale"] == 3.0  # flag wins


def test_i2v_script_and_wan_negative_prompt(tiny_wan, tmp_path):
    Image.new("RGB", (48, 32), (200, 40, 40)).save(tmp_path / "first.png")
    out = tmp_path / "out"
    assert i2v_inference.main([PROMPT, str(tmp_path / "first.png"), "--base_model", str(tiny_wan),
                               "--output_dir", str(out), *SMALL]) == 0  # fmt: skip
    assert read_video_frames(out / "first_seed42.mp4").shape == (17, 32, 32, 3)

    pipe = load_pipeline(tiny_wan, "t2v", progress_bar=False)
    assert pipe.vae.dtype.is_floating_point and str(pipe.vae.dtype) == "torch.float32"
    gen = dict(seed=0, num_frames=17, height=32, width=32, num_inference_steps=2, guidance_scale=5.0)
    default = generate_video(pipe, PROMPT, **gen)
    assert np.array_equal(default, generate_video(pipe, PROMPT, negative_prompt=WAN_NEGATIVE_PROMPT, **gen))
    assert not np.array_equal(default, generate_video(pipe, PROMPT, negative_prompt="", **gen))
    with pytest.raises(GenerationConfigError, match="takes no image"):
        generate_video(pipe, PROMPT, image=Image.new("RGB", (32, 32)), **gen)
