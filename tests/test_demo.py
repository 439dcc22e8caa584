"""End to end: ``python demo.py`` with small settings on the tiny models (issue: the main job)."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from utils.video_utils import get_video_info

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("demo_run")
    tiny_root = tmp_path_factory.mktemp("demo_tiny")
    cmd = [sys.executable, str(REPO / "demo.py"), "--run_dir", str(run_dir), "--tiny_root", str(tiny_root),
           "--captions", str(REPO / "tests" / "fixtures" / "dl3dv_captions_8.json"),
           "--images", str(REPO / "data" / "images"),
           "--num_prompts", "2", "--num_seeds", "2", "--steps", "3", "--inference_steps", "2",
           "--modes", "t2v", "i2v"]  # ti2v (Wan): tests/test_demo_wan.py
    cwd = tmp_path_factory.mktemp("cwd")
    run = lambda: subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=cwd,  # noqa: E731
                                 preexec_fn=lambda: os.umask(0o022))
    proc = run()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    first = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.suffix in (".mp4", ".safetensors", ".ckpt")}
    (run_dir / "first_run.log").write_text(proc.stdout + proc.stderr)
    again = run()  # a re-run does no work twice
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    (run_dir / "second_run.log").write_text(again.stdout + again.stderr)
    changed = [p for p, t in first.items() if p.stat().st_mtime_ns != t]
    assert changed == [], changed
    return run_dir


def test_rerun_skips_finished_work_and_output_is_quiet(demo_run):
    rep = json.loads((demo_run / "report.json").read_text())
    assert set(rep["skipped_stages"]) == {"t2v: DPO training", "i2v: DPO training"}
    assert "--resume auto" in " ".join(rep["commands"]["t2v: DPO training"])
    second = (demo_run / "second_run.log").read_text()
    assert "kept " in second and "skipped (finished training of 3 steps" in second
    for log in ("first_run.log", "second_run.log"):
        text = (demo_run / log).read_text()
        for noise in ("Warning", "Token indices", "was truncated", "tiled VAE", "Tip:", "deprecated",
                      "Loading pipeline components"):
            assert noise not in text, (log, noise)


def test_outputs_follow_the_umask(demo_run):
    """Run with umask 022: files 0644 and folders 0755 (not the 0600/0700 of temporary files)."""
    tiny = {k: Path(v) for k, v in json.loads((demo_run / "report.json").read_text())["tiny_models"].items()}
    for p in (demo_run / "report.json", demo_run / "t2v" / "candidates" / "groups_scored.json",
              demo_run / "t2v" / "dpo" / "final_lora" / "adapter_model.safetensors",
              tiny["cogvideox-t2v"] / "transformer" / "diffusion_pytorch_model.safetensors",
              tiny["vggt"] / "model.safetensors"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    for p in (demo_run / "t2v" / "dpo" / "final_lora", demo_run / "i2v" / "dpo" / "checkpoint-3"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o755, p


@pytest.mark.parametrize("mode", ["t2v", "i2v"])
def test_every_stage_wrote_its_outputs(demo_run, mode):
    cand = demo_run / mode / "candidates"
    groups = json.loads((cand / "groups.json").read_text())["groups"]
    scored = json.loads((cand / "groups_scored.json").read_text())["groups"]
    encoded = json.loads((cand / "groups_encoded.json").read_text())["groups"]
    assert len(groups) == len(scored) == len(encoded) == 2
    for g in encoded:
        assert g["condition_path"] and (cand / g["condition_path"]).is_file()
        assert len(g["videos"]) == 2
        for v in g["videos"]:
            assert "error" not in v, v
            for key in ("consistency_score", "motion_norm", "mse", "lpips", "coverage"):
                assert isinstance(v[key], float), (key, v)
            assert v["consistency_score"] == pytest.approx(v["mse"] + v["lpips"])
            assert (cand / v["video_path"]).is_file() and (cand / v["latent_path"]).is_file()
    if mode == "i2v":
        assert all(g.get("image_path") for g in groups)


@pytest.mark.parametrize("mode", ["t2v", "i2v"])
def test_adapter_loads_and_its_video_decodes(demo_run, mode):
    from diffusers import CogVideoXTransformer3DModel

    from utils.lora import validate_adapter_dir
    from utils.lora_apply import load_lora_adapter

    adapter = validate_adapter_dir(demo_run / mode / "dpo" / "final_lora")
    base = json.loads((demo_run / "report.json").read_text())["tiny_models"][
        {"t2v": "cogvideox-t2v", "i2v": "cogvideox-i2v"}[mode]]
    transformer = CogVideoXTransformer3DModel.from_pretrained(base, subfolder="transformer")
    load_lora_adapter(transformer, adapter)
    videos = sorted((demo_run / mode / "inference" / "videogpa_lora").glob("*.mp4"))
    assert len(videos) == 1
    info = get_video_info(videos[0])
    assert (info.num_frames, info.height, info.width) == (9, 64, 96)


def test_report(demo_run):
    rep = json.loads((demo_run / "report.json").read_text())
    assert rep["num_videos"] == rep["num_scored"] == 8
    assert rep["num_pairs"] >= 1
    roles = [r["role"] for r in rep["scores"]]
    assert roles.count("winner") == roles.count("loser") == rep["num_pairs"]
    for mode in ("t2v", "i2v"):
        assert set(rep["training_curves"][mode]) == {"train/loss", "train/accuracy", "train/reward_margin"}
        # the trained adapter changes the video relative to the base model with the same seed
        assert rep["adapter_vs_base_mean_abs_pixel_diff"][mode] > 0
    stages = rep["stage_seconds"]
    assert {"t2v: generate candidates", "t2v: geometry scores", "t2v: encode latents", "t2v: DPO training",
            "i2v: inference with adapter"} <= set(stages)
    for name in ("report.md", "scores_hist.png", "training_curves.png"):
        assert (demo_run / name).stat().st_size > 0
    assert "**winner**" in (demo_run / "report.md").read_text()


def test_bad_inputs_exit_with_a_clear_message(tmp_path, capsys):
    import demo

    bad = tmp_path / "captions.json"
    bad.write_text("{oops")
    args = ["--run_dir", str(tmp_path / "run"), "--tiny_root", str(tmp_path / "tiny"), "--modes", "t2v"]
    assert demo.main(args + ["--captions", str(bad)]) == 2
    assert demo.main(args + ["--captions", str(tmp_path / "missing.json")]) == 2
    assert demo.main(["--preset", "tiny", "--images", str(tmp_path / "no_images"), "--modes", "i2v"]
                     + args[:4]) == 2
