"""End to end on the tiny Wan2.2-TI2V: ``demo.py --modes ti2v`` (issue 14, done-when 4).

The Wan per-model scripts generate candidates (text + first frame from data/images), score them
(tiny VGGT, depth head), encode them (48-channel latents), train a Diffusion-DPO LoRA for two
steps and generate with the adapter and with the base model at the same seed. Minimal sizes: one
prompt, two seeds, two denoising steps (17 frames of 32 x 32, the tiny Wan's size).
"""

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from utils.video_utils import read_video_frames

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wan_run(tiny_wan, tmp_path_factory):
    import demo

    run_dir = tmp_path_factory.mktemp("demo_wan")
    argv = ["--modes", "ti2v", "--run_dir", str(run_dir), "--tiny_root", str(tiny_wan.parent),
            "--images", str(REPO / "data" / "images"), "--num_prompts", "1", "--num_seeds", "2",
            "--steps", "2", "--inference_steps", "2"]
    assert demo.main(argv) == 0
    return run_dir


def test_candidates_scores_and_48_channel_latents(wan_run):
    cand = wan_run / "ti2v" / "candidates"
    (group,) = json.loads((cand / "groups_encoded.json").read_text())["groups"]
    assert group["image_path"] and len(group["videos"]) == 2
    for v in group["videos"]:
        assert read_video_frames(cand / v["video_path"]).shape == (17, 32, 32, 3)
        assert isinstance(v["consistency_score"], float) and v["consistency_score"] == pytest.approx(
            v["mse"] + v["lpips"])
        lat = load_file(str(cand / v["latent_path"]))["latents"]
        assert lat.shape == (48, 5, 2, 2)  # Wan2.2 VAE: 48 channels, 17 frames -> 5, 32 px -> 2
    cond = load_file(str(cand / group["condition_path"]))
    assert cond["image_latents"].shape == (48, 1, 2, 2)  # the first frame (TI2V)


def test_adapter_trained_and_changes_the_video(wan_run):
    adapter = wan_run / "ti2v" / "dpo" / "final_lora"
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    b = [t for k, t in weights.items() if "lora_B" in k]
    assert b and max(t.abs().max().item() for t in b) > 0  # peft starts B at 0: training moved it
    assert json.loads((adapter / "adapter_config.json").read_text())["auto_mapping"]["base_model_class"] == \
        "WanTransformer3DModel"
    infer = wan_run / "ti2v" / "inference"
    (lora,), (base,) = sorted((infer / "videogpa_lora").glob("*.mp4")), sorted((infer / "base").glob("*.mp4"))
    rec_l, rec_b = (json.loads(p.with_suffix(".json").read_text()) for p in (lora, base))
    assert rec_l["seed"] == rec_b["seed"] and rec_l["lora_scale"] == 0.2  # released Wan scale
    a, c = read_video_frames(lora).astype(np.float32), read_video_frames(base).astype(np.float32)
    assert a.shape == c.shape == (17, 32, 32, 3) and np.abs(a - c).mean() > 0
    report = json.loads((wan_run / "report.json").read_text())
    diff = report["adapter_vs_base_mean_abs_pixel_diff"]["ti2v"]
    assert diff == pytest.approx(np.abs(a - c).mean(), rel=1e-5)
    assert set(report["commands"]) >= {"ti2v: geometry scores", "ti2v: DPO training"}
    assert report["commands"]["ti2v: DPO training"][0] == "train_dpo/Wan2.2-TI2V-5B_lora/04_train.py"


def test_wan_preset_runs_the_wan_scripts():
    import demo

    mode, model_dir, hub_id = demo.PRESETS["wan2.2-ti2v-5b"]
    assert (mode, hub_id, model_dir) == ("ti2v", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "Wan2.2-TI2V-5B_lora")
    for step in ("01_generate", "02_score", "03_encode", "04_train"):
        assert demo.model_script(model_dir, step).is_file()
