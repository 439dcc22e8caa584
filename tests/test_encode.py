"""Latent encoding (train_dpo/encode.py, encode_cogvideox.py, encode_cli.py and the 03_encode.py scripts) on tiny models and a real video."""

import json
import runpy
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from train_dpo.encode import EncodeConfig, encode_dataset, tensors_file_ok
from train_dpo.encode_cogvideox import load_encode_pipeline, prepare_image_latents

REPO = Path(__file__).resolve().parents[1]


def _script(model_dir: str, name: str):
    return runpy.run_path(str(REPO / "train_dpo" / model_dir / name))


def _load(path, key):
    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor(key).clone()  # not backed by the file's mmap (the test overwrites files)


@pytest.fixture()
def video_set(tmp_path, fixtures_dir):
    """A candidate folder: one group with the real carphone clip twice, one corrupt file, one scorer error."""
    root = tmp_path / "cands"
    (root / "g1").mkdir(parents=True)
    shutil.copy(fixtures_dir / "videos" / "carphone_pristine.mp4", root / "g1" / "seed_0.mp4")
    shutil.copy(fixtures_dir / "videos" / "carphone_pristine.mp4", root / "g1" / "seed_1.mp4")
    (root / "g1" / "seed_2.mp4").write_bytes(b"not a video at all")
    shutil.copy(fixtures_dir / "images" / "chelsea.png", root / "first.png")
    data = {
        "groups": [
            {
                "group_id": "g1",
                "prompt": "a man talks on a phone in a car",
                "image_path": "first.png",
                "videos": [
                    {"video_path": "g1/seed_0.mp4", "seed": 0, "consistency_score": 0.2, "motion_norm": 0.1},
                    {"video_path": "g1/seed_1.mp4", "seed": 1, "consistency_score": 0.5, "motion_norm": 0.1},
                    {"video_path": "g1/seed_2.mp4", "seed": 2},
                    {"video_path": "g1/seed_3.mp4", "seed": 3, "error": "cannot read video"},
                ],
            },
        ],
        "video_root": ".",
    }
    (root / "groups_scored.json").write_text(json.dumps(data))
    return root


def test_encode_t2v_shapes_decode_and_resume(tiny_models, video_set):
    model = tiny_models["cogvideox-t2v"]
    out_json = video_set / "groups_encoded.json"
    cfg = EncodeConfig(
        base_model=str(model),
        input_json=str(video_set / "groups_scored.json"),
        output_json=str(out_json),
        num_frames=9,
        height=64,
        width=96,
        seed=0,
    )
    pipe = load_encode_pipeline(model, "cpu", torch.float32)
    stats = encode_dataset(cfg, pipe=pipe)
    assert stats["videos_encoded"] == 2 and stats["videos_failed"] == 1 and stats["videos_skipped_error"] == 1
    assert stats["conditions_encoded"] == 1
    data = json.loads(out_json.read_text())
    g = data["groups"][0]
    assert g["condition_path"] == "latents/g1/condition.safetensors"
    v0, v1, bad, err = g["videos"]
    assert v0["latent_path"].startswith("latents/g1/") and v0["consistency_score"] == 0.2  # scores kept
    assert "latent_path" not in bad and "seed_2.mp4" in bad["error"] and bad["error"].startswith("encode:")
    assert err["error"] == "cannot read video" and "latent_path" not in err
    lat = _load(video_set / v0["latent_path"], "latents")
    assert lat.shape == (3, 4, 8, 12) and lat.dtype == torch.float32  # [F, C, H/8, W/8], 9 frames -> 3
    pe = _load(video_set / g["condition_path"], "prompt_embeds")
    assert pe.shape == (226, 32)
    ref_pe, _ = pipe.encode_prompt(g["prompt"], do_classifier_free_guidance=False, max_sequence_length=226)
    assert torch.equal(pe, ref_pe[0])
    # same clip, different per-video seeds -> different posterior samples; scaled by scaling_factor
    lat1 = _load(video_set / v1["latent_path"], "latents")
    assert not torch.equal(lat, lat1)
    pipe.vae.disable_tiling()  # diffusers' tiled decode is not size-exact for a 64x96 VAE
    with torch.no_grad():
        dec = pipe.vae.decode((lat / pipe.vae.config.scaling_factor).permute(1, 0, 2, 3).unsqueeze(0)).sample
    assert dec.shape == (1, 3, 9, 64, 96) and torch.isfinite(dec).all()
    pipe.vae.enable_tiling()

    # resume: nothing re-encoded; a broken latent file is re-encoded identically (seeded)
    stats = encode_dataset(cfg, pipe=pipe)
    assert stats["videos_encoded"] == 0 and stats["videos_skipped_existing"] == 2
    assert stats["conditions_skipped_existing"] == 1 and stats["videos_skipped_error"] == 2
    lat_file = video_set / v0["latent_path"]
    assert tensors_file_ok(lat_file, ("latents",), {"num_frames": 9, "height": 64, "width": 96})
    assert not tensors_file_ok(lat_file, ("latents",), {"num_frames": 17})  # other settings: re-encode
    (video_set / v0["latent_path"]).write_bytes(b"truncated")
    stats = encode_dataset(cfg, pipe=pipe)
    assert stats["videos_encoded"] == 1 and stats["videos_skipped_existing"] == 1
    assert torch.equal(_load(video_set / v0["latent_path"], "latents"), lat)

    # a changed prompt re-encodes the condition (the file records the prompt it was encoded from)
    scored = json.loads((video_set / "groups_scored.json").read_text())
    scored["groups"][0]["prompt"] = "a woman reads a map in a car"
    (video_set / "groups_scored.json").write_text(json.dumps(scored))
    stats = encode_dataset(cfg, pipe=pipe)
    assert stats["conditions_encoded"] == 1 and stats["videos_skipped_existing"] == 2
    ref_pe, _ = pipe.encode_prompt("a woman reads a map in a car", do_classifier_free_guidance=False,
                                   max_sequence_length=226)
    assert torch.equal(_load(video_set / g["condition_path"], "prompt_embeds"), ref_pe[0])


def test_tensors_file_ok_exact_keys_and_meta(tmp_path):
    """A condition file with image latents is stale for a group that no longer has an image."""
    from safetensors.torch import save_file

    f = tmp_path / "condition.safetensors"
    save_file({"prompt_embeds": torch.zeros(2, 3), "image_latents": torch.zeros(1)}, str(f),
              metadata={"num_frames": "9", "max_sequence_length": "226"})
    assert tensors_file_ok(f, ("prompt_embeds",), {"num_frames": 9})
    assert not tensors_file_ok(f, ("prompt_embeds",), {"num_frames": 9}, exact_keys=True)
    assert tensors_file_ok(f, ("prompt_embeds", "image_latents"), {"num_frames": 9}, exact_keys=True)
    assert not tensors_file_ok(f, ("prompt_embeds", "image_latents"), {"max_sequence_length": 512})


def test_encode_script_cogvideox15(tiny_models, video_set):
    """The 1.5 script (81 frames by default) on the tiny 1.5 model: 17 frames -> 5 latent frames."""
    main = _script("CogVideoX1.5-5B_lora", "03_encode.py")["main"]
    out = video_set / "enc15.json"
    rc = main(
        [
            "--base_model",
            str(tiny_models["cogvideox1.5-t2v"]),
            "--input_json",
            str(video_set / "groups_scored.json"),
            "--output_json",
            str(out),
            "--num_frames",
            "17",
            "--height",
            "64",
            "--width",
            "96",
            "--latent_dir",
            "lat15",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    g = json.loads(out.read_text())["groups"][0]
    assert _load(video_set / g["videos"][0]["latent_path"], "latents").shape == (5, 4, 8, 12)
    assert (
        main(
            ["--input_json", str(video_set / "missing.json"), "--base_model", "x", "--output_json", str(out)]
        )
        == 2
    )


def test_encode_i2v_condition_equals_pipeline_prepare_latents(tiny_models, video_set):
    from diffusers import CogVideoXImageToVideoPipeline

    from generate.pipeline import load_image  # how the inference scripts load a first frame

    model = tiny_models["cogvideox-i2v"]
    main = _script("CogVideoX-I2V-5B_lora", "03_encode.py")["main"]
    out = video_set / "enc_i2v.json"
    rc = main(
        [
            "--base_model",
            str(model),
            "--input_json",
            str(video_set / "groups_scored.json"),
            "--output_json",
            str(out),
            "--num_frames",
            "9",
            "--height",
            "64",
            "--width",
            "96",
            "--latent_dir",
            "lat_i2v",
            "--seed",
            "7",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    g = json.loads(out.read_text())["groups"][0]
    image_latents = _load(video_set / g["condition_path"], "image_latents")
    assert image_latents.shape == (3, 4, 8, 12) and torch.count_nonzero(image_latents[1:]) == 0

    pipe = CogVideoXImageToVideoPipeline.from_pretrained(str(model))
    image = pipe.video_processor.preprocess(load_image(video_set / "first.png", 64, 96), height=64, width=96)
    _, ref = pipe.prepare_latents(
        image, 1, 4, 9, 64, 96, torch.float32, torch.device("cpu"), torch.Generator().manual_seed(7)
    )
    assert torch.equal(image_latents, ref[0])

    # patch_size_t models: frame count rounded up and first-frame padding exactly as prepare_latents
    pipe.transformer.register_to_config(patch_size_t=2)
    _, ref15 = pipe.prepare_latents(
        image, 1, 4, 13, 64, 96, torch.float32, torch.device("cpu"), torch.Generator().manual_seed(7)
    )  # __call__ turns 9 frames into 13
    mine15 = prepare_image_latents(
        pipe, str(video_set / "first.png"), 9, 64, 96, torch.Generator().manual_seed(7), patch_size_t=2
    )
    assert mine15.shape == (4, 4, 8, 12) and torch.equal(mine15, ref15[0])


def test_i2v_condition_samples_with_a_cpu_generator_on_any_device(monkeypatch):
    """Candidates are generated with a CPU generator (generate.pipeline.generate_video); on CUDA the
    encoder must draw the image-latent sample from a CPU generator too, or the condition differs."""
    from types import SimpleNamespace

    import train_dpo.encode_cogvideox as enc

    seen = {}
    monkeypatch.setattr(enc, "encode_prompt_embeds", lambda pipe, prompt, n: torch.zeros(226, 8))

    def fake_prepare(pipe, image, num_frames, height, width, generator):
        seen["gen"] = generator
        return torch.zeros(3, 4, 8, 12)

    monkeypatch.setattr(enc, "prepare_image_latents", fake_prepare)
    pipe = SimpleNamespace(vae=SimpleNamespace(device=torch.device("cuda", 0)))
    out = enc.encode_group_condition(pipe, "a cat", image="first.png", seed=7)
    assert set(out) == {"prompt_embeds", "image_latents"}
    assert seen["gen"].device.type == "cpu" and seen["gen"].initial_seed() == 7


# ---- shards (utils.jobs): contiguous blocks, merge, launcher variables --------------------------------


def test_encode_shards_merge_equals_single_run(tiny_models, video_set, monkeypatch, caplog):
    """Two shards of a two-group input merge into the single run's JSON (same latents); a merge with a
    shard missing, or with a shard encoded at another size, is refused with exit code 2."""
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(k, raising=False)
    main = _script("CogVideoX-5B_lora", "03_encode.py")["main"]
    data = json.loads((video_set / "groups_scored.json").read_text())
    g = data["groups"][0]
    data["groups"] = [{**g, "group_id": "g1", "videos": g["videos"][:1]},
                      {**g, "group_id": "g2", "videos": g["videos"][1:2]}]
    (video_set / "two.json").write_text(json.dumps(data))
    common = ["--base_model", str(tiny_models["cogvideox-t2v"]), "--input_json", str(video_set / "two.json"),
              "--num_frames", "9", "--height", "64", "--width", "96", "--device", "cpu"]
    assert main([*common, "--output_json", str(video_set / "single.json"), "--latent_dir", "lat_a"]) == 0
    out = video_set / "sharded.json"
    for i in range(2):
        assert main([*common, "--output_json", str(out), "--latent_dir", "lat_b",
                     "--num_shards", "2", "--shard_index", str(i)]) == 0
    s1 = json.loads((video_set / "sharded.shard1of2.json").read_text())
    assert [x["group_id"] for x in s1["groups"]] == ["g2"] and not out.exists()
    assert main([*common, "--output_json", str(out), "--latent_dir", "lat_b", "--merge"]) == 0
    single, merged = json.loads((video_set / "single.json").read_text()), json.loads(out.read_text())
    assert "encode_shard" not in merged and len(merged["groups"]) == 2
    for a, b in zip(single["groups"], merged["groups"]):
        assert a["group_id"] == b["group_id"]
        for va, vb in zip(a["videos"], b["videos"]):
            a_lat, b_lat = (_load(video_set / v["latent_path"], "latents") for v in (va, vb))
            assert torch.equal(a_lat, b_lat)
    # another size than the shards were encoded at, then a missing shard: refused
    assert main([*common[:-6], "--num_frames", "17", "--height", "64", "--width", "96", "--device", "cpu",
                 "--output_json", str(out), "--latent_dir", "lat_b", "--merge"]) == 2
    assert "not encoded with these settings" in caplog.text
    (video_set / "sharded.shard0of2.json").unlink()
    assert main([*common, "--output_json", str(out), "--latent_dir", "lat_b", "--merge"]) == 2
    assert "sharded.shard0of2.json" in caplog.text and "not found" in caplog.text


def test_encode_inconsistent_launcher_variables_exit_2(monkeypatch, caplog, tmp_path):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("RANK", "4")
    monkeypatch.setenv("WORLD_SIZE", "4")
    main = _script("CogVideoX-5B_lora", "03_encode.py")["main"]
    assert main(["--input_json", str(tmp_path / "in.json"), "--output_json", str(tmp_path / "out.json")]) == 2
    assert "inconsistent launcher environment" in caplog.text and "RANK=4" in caplog.text
