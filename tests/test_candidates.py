"""generate/candidates.py and train_dpo/*/01_generate.py: resume, corrupt files, bad entries, shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import generate.candidates as cand
from generate.candidate_shards import merge_shards
from generate.candidates import CandidateConfig, generate_candidates, group_id_for
from generate.candidates_cli import build_arg_parser
from utils.jobs import find_shards, shard_path, shard_range
from utils.io_utils import JSONInputError
from utils.scripts import load_script, model_script, script_constants
from utils.video_utils import get_video_info

REPO = Path(__file__).resolve().parent.parent
FAST = ["--num_inference_steps", "2"]


def _script(folder: str):
    """Load train_dpo/<folder>/01_generate.py as a module (its folder name is not importable)."""
    return load_script(model_script(folder, "01_generate"))


def _captions(tmp_path, n=3, bad=True) -> Path:
    caps = {f"1K/scene{i:02d}/images_8": f"a camera moves through scene number {i}" for i in range(n)}
    if bad:
        caps["1K/broken/"] = ""
    p = tmp_path / "captions.json"
    p.write_text(json.dumps(caps))
    return p


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_group_ids_and_shard_ranges():
    a = group_id_for("1K/0a1b2c/images_8", "a gateway")
    assert a == group_id_for("1K/0a1b2c/images_8", "a gateway")
    assert a.startswith("1k_0a1b2c_images_8-") and all(c.isalnum() or c in "_-" for c in a)
    assert a != group_id_for("1K/0a1b2c/images_8", "another prompt")
    assert group_id_for("k", "p", "/x/a.png") == group_id_for("k", "p", "/elsewhere/a.png")
    for n in (0, 1, 5, 7):
        for k in (1, 2, 3):
            parts = [list(shard_range(n, i, k)) for i in range(k)]
            assert sum(parts, []) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert shard_path("/o/groups.json", 1, 4) == Path("/o/groups.shard1of4.json")


def test_resume_after_interruption_nothing_lost_or_duplicated(tiny_models, tmp_path, monkeypatch):
    cfg = dict(base_model=str(tiny_models["cogvideox-t2v"]), prompts_json=str(_captions(tmp_path)),
               output_dir=str(tmp_path / "out"), num_seeds=2, seed_start=10, num_inference_steps=2)
    real_generate, real_load = cand.generate_video, cand.load_pipeline
    calls, loads = [], []

    def counting_load(*a, **k):
        loads.append(1)
        return real_load(*a, **k)

    def crashing_generate(pipe, prompt, **kw):
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash")
        calls.append((prompt, kw["seed"]))
        return real_generate(pipe, prompt, **kw)

    monkeypatch.setattr(cand, "load_pipeline", counting_load)
    monkeypatch.setattr(cand, "generate_video", crashing_generate)
    with pytest.raises(KeyboardInterrupt):
        generate_candidates(CandidateConfig(**cfg))
    out = tmp_path / "out"
    doc = json.loads((out / "groups.json").read_text())
    listed = [v["video_path"] for g in doc["groups"] for v in g["videos"]]
    assert len(listed) == 3 and sorted(listed) == [f for f in _files(out) if f.endswith(".mp4")]
    assert len(doc["groups"]) == 3 and doc["errors"][0]["key"] == "1K/broken/"

    calls.clear()
    monkeypatch.setattr(cand, "generate_video", lambda pipe, prompt, **kw: (calls.append((prompt, kw["seed"])),
                                                                           real_generate(pipe, prompt, **kw))[1])
    doc = generate_candidates(CandidateConfig(**cfg))
    assert len(calls) == 3 and len(loads) == 2  # only the missing videos; one pipeline per process
    assert doc == json.loads((out / "groups.json").read_text())
    assert [len(g["videos"]) for g in doc["groups"]] == [2, 2, 2]
    for g in doc["groups"]:
        assert [v["seed"] for v in g["videos"]] == [10, 11]
        for v in g["videos"]:
            assert v["video_path"] == f"{g['group_id']}/seed_{v['seed']}.mp4"
            info = get_video_info(out / v["video_path"])
            assert (info.num_frames, info.height, info.width) == (9, 64, 96)
    assert len({g["group_id"] for g in doc["groups"]}) == 3
    assert _files(out) == sorted(["groups.json"] + [v["video_path"] for g in doc["groups"] for v in g["videos"]])
    assert doc["config"]["seeds"] == [10, 11] and doc["video_root"] == "."

    # a corrupt video is regenerated, a complete run loads no pipeline at all
    victim = out / doc["groups"][1]["videos"][0]["video_path"]
    victim.write_bytes(victim.read_bytes()[:200])
    calls.clear()
    assert generate_candidates(CandidateConfig(**cfg)) == doc
    assert calls == [(doc["groups"][1]["prompt"], 10)] and len(loads) == 3
    calls.clear()
    generate_candidates(CandidateConfig(**cfg))
    assert calls == [] and len(loads) == 3


def test_shards_and_merge_via_script(tiny_models, tmp_path, capsys):
    mod = _script("CogVideoX-5B_lora")
    assert mod.BASE_MODEL == "THUDM/CogVideoX-5b"
    assert build_arg_parser(script_constants(vars(mod))).parse_args([]).num_frames is None  # the checkpoint's
    out = tmp_path / "out"
    common = ["--base_model", str(tiny_models["cogvideox-t2v"]), "--prompts_json",
              str(_captions(tmp_path, n=3)), "--output_dir", str(out), "--num_seeds", "1", *FAST]
    for i in range(2):
        assert mod.main([*common, "--num_shards", "2", "--shard_index", str(i)]) == 0
    s0, s1 = (json.loads((out / f"groups.shard{i}of2.json").read_text()) for i in range(2))
    # 4 entries (3 good + 1 bad) -> shard 0 gets entries 0-1, shard 1 entries 2-3 (incl. the bad one)
    assert [len(s0["groups"]), len(s1["groups"]), len(s0["errors"]), len(s1["errors"])] == [2, 1, 0, 1]
    assert not (out / "groups.json").exists()

    with pytest.raises(JSONInputError, match="no shard files"):
        find_shards(out / "other.json")
    assert mod.main([*common, "--merge"]) == 0
    merged = json.loads((out / "groups.json").read_text())
    assert [g["key"] for g in merged["groups"]] == [f"1K/scene{i:02d}/images_8" for i in range(3)]
    assert [e["key"] for e in merged["errors"]] == ["1K/broken/"]
    assert merged["config"]["merged_from"] == 2 and "shard" not in merged["config"]
    assert all(len(g["videos"]) == 1 and (out / g["videos"][0]["video_path"]).is_file() for g in merged["groups"])

    # the module CLI does the same; a merged JSON elsewhere points back to the output root
    from generate.candidates_cli import main as cand_main

    assert cand_main(["merge", "--output_dir", str(out), "--out", str(tmp_path / "elsewhere" / "g.json")]) == 0
    again = json.loads((tmp_path / "elsewhere" / "g.json").read_text())
    assert again["groups"] == merged["groups"] and again["video_root"] == "../out"

    (out / "groups.shard1of2.json").unlink()
    assert mod.main([*common, "--merge"]) == 2
    assert "groups.shard1of2.json" in capsys.readouterr().err
    # a group in two shards (runs with different K) is listed once with the union of its videos
    s0["groups"][0]["videos"] = []
    shutil.copyfile(out / "groups.shard0of2.json", tmp_path / "a.json")
    (tmp_path / "b.json").write_text(json.dumps(s0))
    m = merge_shards([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "m.json")
    assert len(m["groups"]) == 2 and len(m["groups"][0]["videos"]) == 1


def test_i2v_script_records_bad_entries_and_goes_on(tiny_models, fixtures_dir, tmp_path):
    mod = _script("CogVideoX-I2V-5B_lora")
    assert mod.KIND == "i2v"
    (tmp_path / "imgs").mkdir()
    shutil.copyfile(fixtures_dir / "images" / "chelsea.png", tmp_path / "imgs" / "cat.png")
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not a png")
    prompts = [{"id": "cat", "text_prompt": "the camera orbits the cat", "image_prompt": "imgs/cat.png"},
               {"id": "gone", "text_prompt": "x", "image_prompt": "imgs/missing.png"},
               {"id": "broken", "text_prompt": "y", "image_prompt": "imgs/broken.png"},
               {"id": "noimg", "text_prompt": "z"}]
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    out = tmp_path / "out"
    assert mod.main(["--base_model", str(tiny_models["cogvideox-i2v"]), "--prompts_json", str(tmp_path / "p.json"),
                     "--output_dir", str(out), "--num_seeds", "1", *FAST]) == 0
    doc = json.loads((out / "groups.json").read_text())
    assert [g["key"] for g in doc["groups"]] == ["cat"]
    assert doc["groups"][0]["image_path"] == str((tmp_path / "imgs" / "cat.png").resolve())
    errs = {e["key"]: e["error"] for e in doc["errors"]}
    assert set(errs) == {"gone", "broken", "noimg"}
    assert "missing.png" in errs["gone"] and "broken.png" in errs["broken"] and "image_prompt" in errs["noimg"]
    assert get_video_info(out / doc["groups"][0]["videos"][0]["video_path"]).num_frames == 9


def test_cogvideox15_script_and_config_errors(tiny_models, tmp_path, capsys):
    mod = _script("CogVideoX1.5-5B_lora")
    assert mod.BASE_MODEL == "THUDM/CogVideoX1.5-5B" and mod.FPS == 16
    out = tmp_path / "out"
    args = ["--base_model", str(tiny_models["cogvideox1.5-t2v"]), "--prompts_json",
            str(_captions(tmp_path, n=1, bad=False)), "--output_dir", str(out), "--num_seeds", "1", *FAST]
    assert mod.main(args) == 0
    doc = json.loads((out / "groups.json").read_text())
    info = get_video_info(out / doc["groups"][0]["videos"][0]["video_path"])
    assert (info.num_frames, info.height, info.width, round(info.fps)) == (17, 64, 96, 16)
    assert doc["config"]["num_frames"] == 17

    assert mod.main([*args, "--prompts_json", str(tmp_path / "none.json")]) == 2
    assert "none.json" in capsys.readouterr().err
    assert mod.main([*args, "--num_frames", "12"]) == 2
    assert "8k + 1" in capsys.readouterr().err
    assert mod.main([*args, "--num_shards", "2", "--shard_index", "2"]) == 2
    assert "shard_index" in capsys.readouterr().err
