"""evaluate.py run control, with a stand-in scorer (no models): shards from the launcher, the
settings record that guards a resume, out-of-memory errors that stop instead of becoming rows,
exit codes, and --merge of exactly the current shard count."""

import argparse
import json
from pathlib import Path

import pytest
import torch

from evaluation.arms import parse_arm_specs
from evaluation.run_settings import SettingsMismatchError, row_settings, settings_gate, settings_path
from evaluation.scores_csv import read_scores, row_key, write_scores
from utils.scripts import load_script, script_constants

REPO = Path(__file__).resolve().parent.parent


def _evaluate(argv):
    return load_script(REPO / "evaluate.py").main([str(a) for a in argv])


class _FakeEvaluator:
    """Scores a video by its name; ``fail(path, call_index)`` may return an exception to raise."""

    def __init__(self, fail=None):
        self.fail, self.calls = fail, []

    def score_video(self, path):
        self.calls.append(path)
        err = self.fail(path, len(self.calls)) if self.fail else None
        if err is not None:
            raise err
        return {"mse": 0.01 * (1 + len(Path(path).name) % 3), "psnr": 20.0 + int(Path(path).parent.name[1:])}


@pytest.fixture
def score_only(tmp_path, monkeypatch):
    """(run(argv_extra, evaluator) -> exit code, output dir): score_only over 3 prompts x (original, dpo), fake scorer."""
    videos = tmp_path / "videos"
    for p in ("p0", "p1", "p2"):
        (videos / p).mkdir(parents=True)
        for name in ("seed_0_original.mp4", "seed_0_dpo_w1.0.mp4"):
            (videos / p / name).write_bytes(b"x")  # never decoded: the scorer is a stand-in
    out = tmp_path / "out"
    fake_models = ["--base_model", tmp_path / "no_model", "--geometry_weights", tmp_path / "no_vggt",
                   "--lpips_vgg_weights", tmp_path / "vgg", "--lpips_lin_weights", tmp_path / "lin"]

    def run(extra, evaluator):
        monkeypatch.setattr("evaluation.run._build_evaluator", lambda s: evaluator)
        return _evaluate(["--score_only", "--videos_dir", videos, "--output_dir", out, "--bootstrap_resamples", 200]
                         + fake_models + list(extra))

    return run, out


def test_shards_default_to_the_launcher(monkeypatch):
    from evaluation.run import build_parser

    defaults = script_constants(vars(load_script(REPO / "evaluate.py")))
    defaults.pop("ARMS")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    args = build_parser(defaults).parse_args([])
    assert (args.shard_index, args.num_shards) == (2, 4)
    args = build_parser(defaults).parse_args(["--num_shards", "1", "--shard_index", "0"])
    assert (args.shard_index, args.num_shards) == (0, 1)  # explicit flags win
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "3")
    args = build_parser(defaults).parse_args([])
    assert (args.shard_index, args.num_shards) == (1, 3)


def test_misspelled_evaluate_constant_exits_2(tmp_path, capsys):
    src = (REPO / "evaluate.py").read_text()
    anchor = "MASK_UNCOVERED = False"
    assert anchor in src
    copy = tmp_path / "evaluate.py"
    copy.write_text(src.replace(anchor, "MASK_UNCOVERD = False"))
    with pytest.raises(SystemExit) as e:
        load_script(copy).main(["--summarize", str(tmp_path / "none.csv")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "MASK_UNCOVERD (did you mean MASK_UNCOVERED?)" in err


def test_resume_with_other_settings_is_refused(score_only, capsys):
    run, out = score_only
    ev = _FakeEvaluator()
    assert run([], ev) == 0 and len(ev.calls) == 6
    rec = json.loads(settings_path(out / "scores.csv").read_text())
    for k in ("points_source", "mask_uncovered", "image_size", "score_num_frames", "geometry_model",
              "geometry_weights", "lpips_weight", "conf_thres", "videos_dir"):
        assert k in rec, k
    assert rec["points_source"] == "depth"  # the tiny preset's
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"] == rec
    before = (out / "scores.csv").read_bytes()
    capsys.readouterr()
    # same settings: a resume, nothing rescored
    assert run([], ev) == 0 and len(ev.calls) == 6
    # other scorer settings: refused, nothing touched
    assert run(["--points_source", "point_head", "--image_size", "64"], ev) == 2
    err = capsys.readouterr().err
    assert "points_source" in err and "image_size" in err and "--overwrite" in err
    assert (out / "scores.csv").read_bytes() == before and len(ev.calls) == 6
    # --overwrite: start over with the new settings
    assert run(["--points_source", "point_head", "--image_size", "64", "--overwrite"], ev) == 0
    assert len(ev.calls) == 12 and len(read_scores(out / "scores.csv")) == 6
    assert json.loads(settings_path(out / "scores.csv").read_text())["points_source"] == "point_head"


def test_overwrite_deletes_only_videos_of_changed_generation(tmp_path):
    from evaluation.arms import PromptItem

    s = argparse.Namespace(score_only=False, base_model="THUDM/CogVideoX-5b", kind="t2v", num_inference_steps=50,
                           guidance_scale=6.0, num_frames=None, height=None, width=None, fps=8, lora_weights=[1.0],
                           points_source="point_head", mask_uncovered=False, image_size=518, score_num_frames=10,
                           conf_thres=0.0, lpips_weight=1.0, geometry_model="vggt", geometry_weights="facebook/VGGT-1B",
                           lpips_vgg_weights=None, lpips_lin_weights=None, videos_dir=tmp_path / "videos", seeds=[0],
                           overwrite=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    arms, _ = parse_arm_specs({"dpo": str(tmp_path / "a")}, [1.0])
    items = [PromptItem(key="k", prompt_id="p0", prompt="a scene")]
    csv = tmp_path / "scores.csv"
    rec, keep = settings_gate(s, arms, items, csv, has_rows=False)
    assert keep and rec["guidance_scale"] == 6.0 and rec["arms"] == {"dpo": str((tmp_path / "a").resolve())}
    assert rec["lora_weights"] == [1.0] and rec["base_model"] == "THUDM/CogVideoX-5b" and rec["num_inference_steps"] == 50
    vids = [tmp_path / "videos" / "p0" / n for n in ("seed_0_original.mp4", "seed_0_dpo_w1.0.mp4")]
    for v in vids:
        v.parent.mkdir(parents=True, exist_ok=True)
        v.write_bytes(b"x")
    arms_b, _ = parse_arm_specs({"dpo": str(tmp_path / "b")}, [1.0])  # another adapter for arm dpo
    with pytest.raises(SettingsMismatchError, match="arms"):
        settings_gate(s, arms_b, items, csv, has_rows=True)
    s.overwrite = True
    assert settings_gate(s, arms_b, items, csv, has_rows=True)[1] is False
    assert vids[0].is_file() and not vids[1].exists()  # original kept, dpo regenerated
    vids[1].write_bytes(b"x")
    s.guidance_scale = 7.0  # every arm's videos change
    settings_gate(s, arms_b, items, csv, has_rows=True)
    assert not vids[0].exists() and not vids[1].exists()
    assert row_settings(s, arms_b)["guidance_scale"] == 7.0


def test_out_of_memory_stops_the_run_and_per_video_errors_are_rows(score_only, tmp_path, capsys):
    from evaluation.device_errors import is_device_error

    assert is_device_error(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_device_error(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not is_device_error(RuntimeError("shape mismatch")) and not is_device_error(ValueError("CUDA"))
    run, out = score_only
    oom = _FakeEvaluator(lambda p, i: torch.cuda.OutOfMemoryError("CUDA out of memory") if i == 3 else None)
    assert run([], oom) == 1  # a crash, not 4 more error rows
    rows = read_scores(out / "scores.csv")
    assert len(rows) == 2 and not any(r["error"] for r in rows)
    capsys.readouterr()
    bad_p1 = _FakeEvaluator(lambda p, i: ValueError("nothing reprojected") if "/p1/" in str(p) and "dpo" in str(p) else None)
    assert run([], bad_p1) == 0 and len(bad_p1.calls) == 4  # resumed: only the 4 missing videos
    rows = read_scores(out / "scores.csv")
    assert len(rows) == 6 and [row_key(r) for r in rows if r["error"]] == [("p1", 0, "dpo", 1.0)]
    assert "1 row(s) with an error" in capsys.readouterr().out
    # nothing scorable at all: exit 1
    run2_out = tmp_path / "all_bad"
    all_bad = _FakeEvaluator(lambda p, i: ValueError("unreadable"))
    assert run(["--output_dir", run2_out], all_bad) == 1
    assert len(read_scores(run2_out / "scores.csv")) == 6
    assert "no video could be scored" in capsys.readouterr().err


def test_merge_takes_exactly_the_current_shard_count(tmp_path, capsys):
    out = tmp_path / "out"

    def shard(name, pids, rec=None):
        rows = [{"prompt_id": p, "seed": 0, "arm": arm, "lora_weight": w, "video_path": "v", "mse": m, "error": ""}
                for p in pids for arm, w, m in (("original", 0.0, 0.02), ("dpo", 1.0, 0.01))]
        write_scores(out / name, rows)
        json.dump(rec or {"points_source": "point_head"}, open(settings_path(out / name), "w"))

    shard("scores.shard0of2.csv", ["p0", "p1"])
    shard("scores.shard1of2.csv", ["p2"])
    shard("scores.shard0of3.csv", ["stale"])  # an earlier run with 3 shards
    argv = ["--output_dir", out, "--merge", "--base_model", tmp_path / "m", "--geometry_weights", tmp_path / "g",
            "--lpips_vgg_weights", tmp_path / "v", "--lpips_lin_weights", tmp_path / "l", "--bootstrap_resamples", 200]
    assert _evaluate(argv + ["--num_shards", 2]) == 0
    assert sorted({r["prompt_id"] for r in read_scores(out / "scores.csv")}) == ["p0", "p1", "p2"]
    assert json.loads((out / "scores.settings.json").read_text()) == {"points_source": "point_head"}
    capsys.readouterr()
    assert _evaluate(argv + ["--num_shards", 3]) == 1  # shards 1 and 2 of 3 are missing
    err = capsys.readouterr().err
    assert "scores.shard1of3.csv" in err and "scores.shard2of3.csv" in err
    assert [r["prompt_id"] for r in read_scores(out / "scores.csv")] == ["stale", "stale"]
    shard("scores.shard1of2.csv", ["p2"], rec={"points_source": "depth"})
    assert _evaluate(argv + ["--num_shards", 2]) == 2  # shards made with different settings
    assert "points_source" in capsys.readouterr().err
    assert _evaluate(argv + ["--num_shards", 1]) == 2
