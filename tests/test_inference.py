"""generate/t2v_inference.py and generate/i2v_inference.py on the tiny checkpoints (2 steps, CPU)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from generate import i2v_inference, t2v_inference
from generate.model_defaults import (
    ModelDefaults,
    default_lora_scale,
    read_model_defaults,
    model_defaults,
    resolve_video_size,
)
from generate.pipeline import GenerationConfigError
from generate.prompts import load_prompt_entries
from utils.video_utils import read_video_frames

REPO = Path(__file__).resolve().parent.parent
PROMPT = "a camera orbits a stone gateway"
FAST = ["--num_inference_steps", "2"]

# Values of the real checkpoints' config.json files (THUDM on the Hugging Face hub).
VAE_CFG = {"block_out_channels": [128, 256, 256, 512], "temporal_compression_ratio": 4}
COGVIDEOX_5B = {"sample_frames": 49, "sample_height": 60, "sample_width": 90, "patch_size": 2,
                "patch_size_t": None, "use_learned_positional_embeddings": False}
COGVIDEOX_5B_I2V = {**COGVIDEOX_5B, "use_learned_positional_embeddings": True}
COGVIDEOX15_5B = {"sample_frames": 81, "sample_height": 300, "sample_width": 300, "patch_size": 2,
                  "patch_size_t": 2, "use_learned_positional_embeddings": False, "in_channels": 16,
                  "out_channels": 16}


def test_defaults_of_the_real_checkpoints():
    assert model_defaults(COGVIDEOX_5B, VAE_CFG) == ModelDefaults(49, 480, 720, 4, 16, False)
    assert model_defaults(COGVIDEOX_5B_I2V, VAE_CFG) == ModelDefaults(49, 480, 720, 4, 16, True)
    # CogVideoX1.5's config carries a 300x300 placeholder; it was trained at 768x1360, 81 frames
    # ... and its released inference applies the adapter at absolute scaling 0.2 (T2V only)
    assert model_defaults(COGVIDEOX15_5B, VAE_CFG) == ModelDefaults(81, 768, 1360, 4, 16, False, 0.2)
    assert model_defaults({**COGVIDEOX15_5B, "in_channels": 32}, VAE_CFG).lora_scaling is None
    # a genuine square sample size of a 1.5-style model is taken as is
    assert model_defaults({**COGVIDEOX15_5B, "sample_height": 64, "sample_width": 64}, VAE_CFG).height == 512


def test_resolve_video_size_validates():
    d = model_defaults(COGVIDEOX_5B, VAE_CFG)
    assert resolve_video_size(d) == (49, 480, 720)
    assert resolve_video_size(d, 25, 320, 512) == (25, 320, 512)
    with pytest.raises(GenerationConfigError, match="8k \\+ 1"):
        resolve_video_size(d, num_frames=45)
    with pytest.raises(GenerationConfigError, match="multiples of 16"):
        resolve_video_size(d, height=470)
    with pytest.raises(GenerationConfigError, match="learned position table"):
        resolve_video_size(model_defaults(COGVIDEOX_5B_I2V, VAE_CFG), height=320)


def _decoded(path: Path) -> np.ndarray:
    assert path.is_file(), path
    return read_video_frames(path)


def test_t2v_default_and_requested_sizes(tiny_models, tmp_path):
    out = tmp_path / "out"
    assert t2v_inference.main([PROMPT, "--base_model", str(tiny_models["cogvideox-t2v"]),
                               "--output_dir", str(out), *FAST]) == 0
    assert _decoded(out / "a_camera_orbits_a_stone_gateway_seed42.mp4").shape == (9, 64, 96, 3)
    assert t2v_inference.main([PROMPT, "--base_model", str(tiny_models["cogvideox-t2v"]),
                               "--output_dir", str(out), "--seed", "7", "--num_frames", "17",
                               "--height", "48", "--width", "80", *FAST]) == 0
    assert _decoded(out / "a_camera_orbits_a_stone_gateway_seed7.mp4").shape == (17, 48, 80, 3)
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temp video left behind"


def test_cogvideox15_default_frames(tiny_models, tmp_path):
    assert t2v_inference.main([PROMPT, "--base_model", str(tiny_models["cogvideox1.5-t2v"]),
                               "--output_dir", str(tmp_path), "--fps", "16", *FAST]) == 0
    assert _decoded(tmp_path / "a_camera_orbits_a_stone_gateway_seed42.mp4").shape == (17, 64, 96, 3)


def test_i2v_single_and_batch(tiny_models, fixtures_dir, tmp_path):
    image = fixtures_dir / "images" / "chelsea.png"
    out = tmp_path / "out"
    assert i2v_inference.main(["the camera pushes in", str(image), "--base_model",
                               str(tiny_models["cogvideox-i2v"]), "--output_dir", str(out), *FAST]) == 0
    frames = _decoded(out / "chelsea_seed42.mp4")
    assert frames.shape == (9, 64, 96, 3)

    # batch: image paths relative to the JSON file; a bad entry is reported, the rest is generated
    (tmp_path / "imgs").mkdir()
    shutil.copyfile(image, tmp_path / "imgs" / "cat.png")
    prompts = {"a": {"text_prompt": "a cat", "image_prompt": "imgs/cat.png"},
               "b": {"text_prompt": "a dog", "image_prompt": "imgs/missing.png"},
               "c": {"text_prompt": "skipped by --num_prompts", "image_prompt": "imgs/cat.png"}}
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    rc = i2v_inference.main(["--prompt_json", str(tmp_path / "prompts.json"), "--num_prompts", "2",
                             "--base_model", str(tiny_models["cogvideox-i2v"]), "--output_dir",
                             str(tmp_path / "batch"), "--seed", "1", *FAST])
    assert rc == 1
    assert sorted(p.name for p in (tmp_path / "batch").iterdir()) == ["cat_seed1.json", "cat_seed1.mp4"]


def test_t2v_batch_list_format(tiny_models, tmp_path):
    (tmp_path / "p.json").write_text(json.dumps([{"id": "x", "text_prompt": "zoom in on a bridge"}, "a red bicycle"]))
    assert t2v_inference.main(["--prompt_json", str(tmp_path / "p.json"), "--base_model",
                               str(tiny_models["cogvideox-t2v"]), "--output_dir", str(tmp_path / "o"),
                               *FAST]) == 0
    names = sorted(p.name for p in (tmp_path / "o").iterdir())  # each video with its settings record
    assert names == ["a_red_bicycle_seed42.json", "a_red_bicycle_seed42.mp4", "zoom_in_on_a_bridge_seed42.json",
                     "zoom_in_on_a_bridge_seed42.mp4"]


def test_lora_scale_zero_cli_is_bit_identical(tiny_models, tmp_path):
    from test_lora import _random_adapter, _transformer

    adapter = _random_adapter(tmp_path / "adapter", _transformer(tiny_models))
    args = [PROMPT, "--base_model", str(tiny_models["cogvideox-t2v"]), *FAST]
    assert t2v_inference.main([*args, "--output_dir", str(tmp_path / "base")]) == 0
    assert t2v_inference.main([*args, "--output_dir", str(tmp_path / "zero"), "--lora_path", str(adapter),
                               "--lora_scale", "0"]) == 0
    assert t2v_inference.main([*args, "--output_dir", str(tmp_path / "merged"), "--lora_path",
                               str(adapter), "--merge_lora"]) == 0
    name = "a_camera_orbits_a_stone_gateway_seed42.mp4"
    base = _decoded(tmp_path / "base" / name)
    assert np.array_equal(_decoded(tmp_path / "zero" / name), base)
    assert np.abs(_decoded(tmp_path / "merged" / name).astype(int) - base.astype(int)).mean() > 1.0


def test_cogvideox15_adapter_default_scale_is_the_released_one(tiny_models, tmp_path):
    """Upstream generate/CogVideoX1.5-5B.py sets PEFT's scaling to 0.2 (absolute); our default
    --lora_scale for 1.5 is 0.2 r / alpha = 0.1 for the released adapter config (alpha / r = 2)."""
    from test_lora import _random_adapter, _transformer

    t15 = tiny_models["cogvideox1.5-t2v"]
    released_cfg = REPO / "checkpoints" / "VideoGPA-T2V1.5-lora"
    adapter = _random_adapter(tmp_path / "adapter", _transformer(tiny_models, "cogvideox1.5-t2v"),
                              config_from=released_cfg)  # fmt: skip
    assert read_model_defaults(t15).lora_scaling == 0.2
    assert default_lora_scale(read_model_defaults(t15), adapter) == pytest.approx(0.1, rel=1e-12)
    assert default_lora_scale(read_model_defaults(tiny_models["cogvideox-t2v"]), adapter) == 1.0
    args = [PROMPT, "--base_model", str(t15), "--lora_path", str(adapter), *FAST]
    for name, extra in (("default", []), ("s01", ["--lora_scale", "0.1"]), ("s1", ["--lora_scale", "1"])):
        assert t2v_inference.main([*args, "--output_dir", str(tmp_path / name), *extra]) == 0
    video = "a_camera_orbits_a_stone_gateway_seed42.mp4"
    default, s01, s1 = (_decoded(tmp_path / n / video).astype(int) for n in ("default", "s01", "s1"))
    assert np.array_equal(default, s01) and np.abs(default - s1).mean() > 0.5


def test_config_errors_exit_2_without_output(tiny_models, tmp_path, capsys):
    t2v = str(tiny_models["cogvideox-t2v"])
    assert t2v_inference.main([PROMPT, "--base_model", t2v, "--output_dir", str(tmp_path),
                               "--lora_path", str(tmp_path / "no_such_adapter")]) == 2
    assert "no_such_adapter" in capsys.readouterr().err
    assert i2v_inference.main(["x", str(tmp_path / "missing.png"), "--base_model",
                               str(tiny_models["cogvideox-i2v"]), "--output_dir", str(tmp_path)]) == 2
    assert "missing.png" in capsys.readouterr().err
    img = str(Path(__file__).parent / "fixtures" / "images" / "chelsea.png")
    assert i2v_inference.main(["x", img, "--base_model", t2v, "--output_dir", str(tmp_path), *FAST]) == 2
    assert "text-to-video model" in capsys.readouterr().err
    assert t2v_inference.main([PROMPT, "--base_model", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path)]) == 2
    assert "base model folder not found" in capsys.readouterr().err
    assert t2v_inference.main(["--base_model", t2v]) == 2
    assert "no prompt" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_script_entry_point_bad_lora_exits_nonzero(tmp_path):
    """Run as `python generate/t2v_inference.py` from another directory: sys.path set up by the script."""
    bad = tmp_path / "adapter"
    bad.mkdir()
    (bad / "adapter_config.json").write_text("{broken")
    proc = subprocess.run([sys.executable, str(REPO / "generate" / "t2v_inference.py"), PROMPT,
                           "--lora_path", str(bad)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "malformed JSON" in proc.stderr and str(bad) in proc.stderr


def test_load_prompt_entries_formats(tmp_path, fixtures_dir):
    captions = fixtures_dir / "dl3dv_captions_8.json"
    entries = load_prompt_entries(captions, num_prompts=3)
    assert len(entries) == 3 and all(e.error is None and e.prompt for e in entries)
    assert entries[0].key == next(iter(json.loads(captions.read_text())))

    (tmp_path / "a.png").write_bytes((fixtures_dir / "images" / "chelsea.png").read_bytes())
    (tmp_path / "p.json").write_text(json.dumps({
        "ok": {"text_prompt": " a cat ", "image_prompt": "a.png"},
        "noimg": {"text_prompt": "a dog"},
        "notext": {"image_prompt": "a.png"},
        "num": 5,
    }))
    t2v = load_prompt_entries(tmp_path / "p.json")
    assert [e.error is None for e in t2v] == [True, True, False, False]
    i2v = load_prompt_entries(tmp_path / "p.json", need_image=True)
    assert i2v[0].prompt == "a cat" and i2v[0].image_path == str((tmp_path / "a.png").resolve())
    assert "missing 'image_prompt'" in i2v[1].error and "'noimg'" in i2v[1].error
    assert "text_prompt" in i2v[2].error and str(tmp_path / "p.json") in i2v[2].error
    assert "expected a caption string" in i2v[3].error


def test_help_text_shows_each_default_once_and_the_right_adapter():
    from generate.inference_cli import build_inference_parser

    for kind, script, adapter in (("t2v", t2v_inference, "VideoGPA-T2V-lora"), ("i2v", i2v_inference, "VideoGPA-I2V-lora")):
        text = " ".join(build_inference_parser(kind, script_constants_of(script)).format_help().split())
        assert f"e.g. checkpoints/{adapter}" in text and ("VideoGPA-T2V-lora" in text) == (kind == "t2v")
        opts = text[text.index("options:"):]
        gpu = opts[opts.index("--gpu_id GPU_ID"):opts.index("--skip_existing ")]
        assert gpu.count("default") == 1, gpu
        for flag, default in (("--seed SEED", "42"), ("--fps FPS", "8"), ("--output_dir OUTPUT_DIR", "./outputs")):
            after = opts[opts.index(flag):]
            assert f"(default: {default})" in after.split(" --")[0], (flag, after[:120])


def script_constants_of(module) -> dict:
    from utils.scripts import script_constants

    return script_constants(vars(module))


def test_misspelled_constant_in_an_inference_script_exits_2(tmp_path, capsys):
    from utils.scripts import load_script

    src = (REPO / "generate" / "t2v_inference.py").read_text()
    anchor = 'BASE_MODEL = "THUDM/CogVideoX-5b"\n'
    assert anchor in src
    copy = tmp_path / "generate" / "t2v_inference.py"
    copy.parent.mkdir()
    copy.write_text(src.replace(anchor, anchor + "GUIDANCE_SCLAE = 3.0\n"))
    with pytest.raises(SystemExit) as e:
        load_script(copy).main([PROMPT])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "GUIDANCE_SCLAE (did you mean GUIDANCE_SCALE?)" in err
    # a correct constant is the option's default; the command line wins
    from generate.inference_cli import build_inference_parser

    parser = build_inference_parser("t2v", {"BEST_OF": 4, "SEED": 7})
    assert (parser.parse_args([]).best_of, parser.parse_args([]).seed) == (4, 7)
    assert parser.parse_args(["--seed", "3"]).seed == 3


def test_skip_existing_keeps_only_videos_made_with_the_same_settings(tiny_models, tmp_path, caplog):
    import os

    from test_lora import _random_adapter, _transformer

    from generate.outputs import stale_reason

    caplog.set_level("INFO")
    args = ["a red cube", "--base_model", str(tiny_models["cogvideox-t2v"]), "--num_inference_steps", "1",
            "--output_dir", str(tmp_path), "--seed", "1"]
    assert t2v_inference.main(args) == 0
    video, record = tmp_path / "a_red_cube_seed1.mp4", tmp_path / "a_red_cube_seed1.json"
    rec = json.loads(record.read_text())
    assert (rec["prompt"], rec["seed"], rec["num_inference_steps"], rec["lora_path"]) == ("a red cube", 1, 1, None)
    assert (rec["num_frames"], rec["height"], rec["width"], rec["guidance_scale"]) == (9, 64, 96, 6.0)
    base = _decoded(video)
    first = video.stat().st_mtime_ns
    assert t2v_inference.main(args + ["--skip_existing"]) == 0
    assert video.stat().st_mtime_ns == first and "kept" in caplog.text

    # an adapter run into the same folder: same file name, other settings -> generated again
    adapter = _random_adapter(tmp_path / "adapter", _transformer(tiny_models))
    caplog.clear()
    assert t2v_inference.main(args + ["--skip_existing", "--lora_path", str(adapter)]) == 0
    assert "settings differ: lora_path, lora_scale" in caplog.text
    assert np.abs(_decoded(video).astype(int) - base.astype(int)).mean() > 1.0
    assert json.loads(record.read_text())["lora_path"] == str(adapter.resolve())
    scale, guidance = ["--lora_scale", "0.5"], ["--guidance_scale", "3"]
    for extra, diff in ((scale, "lora_scale"), (scale + guidance, "guidance_scale")):
        caplog.clear()
        assert t2v_inference.main(args + ["--skip_existing", "--lora_path", str(adapter), *extra]) == 0
        assert f"settings differ: {diff}" in caplog.text

    video.write_bytes(b"truncated")  # a broken file is generated again
    assert t2v_inference.main(args + ["--skip_existing"]) == 0
    assert read_video_frames(video).shape[0] == 9
    record.unlink()  # so is a video without its record (e.g. made before records existed)
    assert "no readable settings record" in stale_reason(video, record, {}, None)
    assert t2v_inference.main(args + ["--skip_existing"]) == 0 and record.is_file()
    os.utime(video, ns=(0, 0))  # and one older than the adapter it should show
    assert stale_reason(video, record, {}, str(adapter)) == "the adapter is newer than the video"
    assert stale_reason(video, record, {}, None) is None


def test_inconsistent_launcher_variables_are_a_config_error(tiny_models, fixtures_dir, tmp_path, monkeypatch,
                                                            capsys):
    import torch

    from generate.candidates_cli import main as candidates_main
    from generate.pipeline import select_device

    monkeypatch.setenv("RANK", "4")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # select_device reads LOCAL_RANK only with CUDA
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(GenerationConfigError, match="RANK=4 is not in"):
        select_device()
    assert select_device(0) == torch.device("cuda", 0)  # an explicit --gpu_id does not need the launcher
    t2v = str(tiny_models["cogvideox-t2v"])
    # the verifier of a search is placed with select_device(--gpu_id): a clean exit 2, no traceback
    assert t2v_inference.main([PROMPT, "--base_model", t2v, "--output_dir", str(tmp_path), "--best_of", "2",
                               "--verifier", "frame_diff"]) == 2
    assert "inconsistent launcher environment" in capsys.readouterr().err
    # candidate generation takes its shard defaults from the launcher
    assert candidates_main(["--base_model", t2v, "--prompts_json", str(fixtures_dir / "dl3dv_captions_8.json"),
                            "--output_dir", str(tmp_path / "cand")]) == 2
    assert "RANK=4 is not in [0, WORLD_SIZE=4)" in capsys.readouterr().err
    assert not (tmp_path / "cand").exists() and not list(tmp_path.glob("*.mp4"))


def test_output_names_of_long_prompts_do_not_collide():
    """Long captions that share their first 60 slug characters get distinct names; short ones keep theirs."""
    import hashlib

    from generate.outputs import output_name

    assert output_name("t2v", "A cat, on a mat!", None) == "a_cat_on_a_mat"
    a = "a camera slowly moves through a long stone corridor with arches and warm light, then turns left"
    b = "a camera slowly moves through a long stone corridor with arches and warm light, then turns right"
    na, nb = output_name("t2v", a, None), output_name("t2v", b, None)
    assert na != nb and na.startswith("a_camera_slowly_moves_through_a_long_stone_corridor_with_arc")
    assert na.endswith("-" + hashlib.sha1(a.encode("utf-8")).hexdigest()[:8])
    captions = json.loads((Path(__file__).resolve().parents[1] / "data" / "dl3dv_captions_1K.json").read_text())
    names = {output_name("t2v", c, None) for c in captions.values()}
    assert len(names) == len(set(captions.values()))  # 1,000 captions, 1,000 names (871 before)
