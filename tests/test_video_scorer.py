"""train_dpo/video_scorer.py: batch scoring with recorded errors, resume, shards, workers, CLI."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _scorer_render import render_video

from metrics import build_random_lpips_weights
from scoring.groups import merge_shards
from scoring.scorer import VideoProcessor
from train_dpo import video_scorer
from utils.jobs import shard_path
from utils.video_writer import write_video

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
CARPHONE = FIX / "videos" / "carphone_pristine.mp4"
SCORES = ("consistency_score", "motion_norm", "motion_norm_released", "mse", "lpips", "coverage")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("scorer")
    vids = d / "videos"
    for i in range(6):
        r = render_video(10 + i, num_frames=6, height=64, width=64)
        write_video(vids / f"good{i}.mp4", r["frames"], fps=8)
    (vids / "empty.mp4").write_bytes(b"")
    data = (vids / "good0.mp4").read_bytes()
    (vids / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (vids / "text.mp4").write_text("definitely not a video\n")
    write_video(vids / "one_frame.mp4", render_video(3, num_frames=1, height=64, width=64)["frames"])
    lp = build_random_lpips_weights(d / "lpips", seed=0, width=0.125)
    return {"dir": d, "lpips": lp}


def _args(w, inp, out, *extra):
    return [
        "--input_json", str(inp), "--output_json", str(out),
        "--vggt_model", str(FIX / "vggt" / "vggt_tiny_weights.safetensors"),
        "--vggt_config", str(FIX / "vggt" / "vggt_tiny_config.json"),
        "--image_size", "56", "--num_frames", "4", "--devices", "cpu", "--no_progress",
        "--lpips_vgg_weights", str(w["lpips"][0]), "--lpips_lin_weights", str(w["lpips"][1]),
        # the fixture VGGT's random point head lands off-screen; test_point_head_default scores it
        "--points_source", "depth",
        *extra,
    ]  # fmt: skip


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, indent=1))
    return path


def _good_groups(n_groups=3):
    return [
        {"group_id": f"g{g}", "prompt": f"prompt {g}", "custom": {"k": g},
         "videos": [{"video_path": f"videos/good{2 * g + j}.mp4", "seed": j} for j in range(2)]}
        for g in range(n_groups)
    ]  # fmt: skip


def _assert_scored(v):
    for k in SCORES:
        assert k in v and math.isfinite(v[k]), (k, v)
    assert "error" not in v


# ---- done-when 4: bad inputs, recorded errors ------------------------------------------------------


def test_bad_inputs_recorded_and_others_scored(workdir, capsys):
    d = workdir["dir"]
    groups = [
        {"group_id": "good", "prompt": "p", "videos": [{"video_path": "videos/good0.mp4", "seed": 0},
                                                        {"video_path": str(CARPHONE), "seed": 1}]},
        {"group_id": "bad", "prompt": "q", "image_path": "img.png", "videos": [
            {"video_path": "videos/missing.mp4", "seed": 0},
            {"video_path": "videos/empty.mp4", "seed": 1},
            {"video_path": "videos/truncated.mp4", "seed": 2},
            {"video_path": "videos/text.mp4", "seed": 3},
            {"video_path": "videos/one_frame.mp4", "seed": 4},
            {"seed": 5, "note": "no path"},
            {"video_path": "videos/good1.mp4", "seed": 6},
        ]},
    ]  # fmt: skip
    inp = _write(d / "bad_in.json", {"groups": groups, "meta": {"created_by": "test"}})
    out = d / "bad_out.json"
    assert video_scorer.main(_args(workdir, inp, out)) == 0
    res = json.loads(out.read_text())
    assert res["meta"] == {"created_by": "test"} and res["consistency_scorer"]["num_frames"] == 4
    good, bad = res["groups"]
    _assert_scored(good["videos"][0])
    _assert_scored(good["videos"][1])
    _assert_scored(bad["videos"][6])
    assert bad["image_path"] == "img.png" and bad["videos"][5]["note"] == "no path"
    expect = ["file not found", "empty (0 bytes)", "moov atom not found", "ffmpeg cannot open",
              "only 1 decodable frame(s), 4 requested", 'no "video_path"']  # fmt: skip
    for v, needle in zip(bad["videos"][:6], expect):
        assert needle in v["error"], (needle, v)
        assert not any(k in v for k in SCORES)
    for v in bad["videos"][:5]:
        assert v["video_path"] in v["error"]  # the message names the file
    assert "scored 3, skipped 0, failed 6" in capsys.readouterr().out
    # a re-run skips everything (errors too, unless --retry_errors)
    assert video_scorer.main(_args(workdir, inp, out)) == 0
    assert "scored 0, skipped 9, failed 0" in capsys.readouterr().out
    assert video_scorer.main(_args(workdir, inp, out, "--retry_errors")) == 0
    assert "scored 0, skipped 3, failed 6" in capsys.readouterr().out
    assert json.loads(out.read_text()) == res


@pytest.mark.parametrize(
    "content, needle",
    [
        ('{"groups": [ {"group_id": "a", ', "malformed JSON"),
        ('{"foo": 1}', '"groups" list'),
        ('{"groups": [{"group_id": "a"}]}', 'no "videos" list'),
        ('{"groups": [{"group_id": "a", "videos": ["x.mp4"]}]}', "video #0 is a str"),
        ("42", "expected a JSON object or list"),
    ],
)
def test_malformed_input_exits_nonzero(workdir, capsys, content, needle):
    d = workdir["dir"]
    inp = d / "malformed.json"
    inp.write_text(content)
    out = d / "malformed_out.json"
    assert video_scorer.main(_args(workdir, inp, out)) == 2
    err = capsys.readouterr().err
    assert needle in err and str(inp) in err
    assert not out.exists()
    assert video_scorer.main(_args(workdir, d / "does_not_exist.json", out)) == 2
    assert "not found" in capsys.readouterr().err


# ---- done-when 4: interruption and resume ----------------------------------------------------------


def test_interrupted_run_resumes_every_video_scored_once(workdir, monkeypatch):
    d = workdir["dir"]
    inp = _write(d / "resume_in.json", {"groups": _good_groups(3)})
    out = d / "resume_out.json"
    calls: dict[str, int] = {}
    original = VideoProcessor.score_video
    state = {"interrupt_at": "good4.mp4"}  # first video of the third group

    def counting(self, path, return_visuals=False):
        if state["interrupt_at"] and Path(path).name == state["interrupt_at"]:
            raise KeyboardInterrupt  # simulated kill in the middle of group 2 (k = 2 groups done)
        res = original(self, path, return_visuals)
        calls[Path(path).name] = calls.get(Path(path).name, 0) + 1
        return res

    monkeypatch.setattr(VideoProcessor, "score_video", counting)
    with pytest.raises(KeyboardInterrupt):
        video_scorer.main(_args(workdir, inp, out))
    partial = json.loads(out.read_text())
    for g in partial["groups"][:2]:
        for v in g["videos"]:
            _assert_scored(v)
    assert all(not any(k in v for k in SCORES) for v in partial["groups"][2]["videos"])
    assert partial["groups"][0]["custom"] == {"k": 0}

    state["interrupt_at"] = None
    assert video_scorer.main(_args(workdir, inp, out)) == 0
    final = json.loads(out.read_text())
    for g in final["groups"]:
        for v in g["videos"]:
            _assert_scored(v)
    assert final["groups"][:2] == partial["groups"][:2]  # nothing lost or changed
    assert calls == {f"good{i}.mp4": 1 for i in range(6)}
    assert video_scorer.main(_args(workdir, inp, out)) == 0  # third run: nothing to do
    assert calls == {f"good{i}.mp4": 1 for i in range(6)}


def test_settings_mismatch_refuses_to_mix(workdir, capsys):
    d = workdir["dir"]
    inp = _write(d / "set_in.json", {"groups": _good_groups(1)})
    out = d / "set_out.json"
    assert video_scorer.main(_args(workdir, inp, out)) == 0
    assert video_scorer.main(_args(workdir, inp, out, "--conf_thres", "10")) == 2
    assert "different settings" in capsys.readouterr().err
    assert video_scorer.main(_args(workdir, inp, out, "--conf_thres", "10", "--overwrite")) == 0
    assert json.loads(out.read_text())["consistency_scorer"]["conf_thres"] == 10.0


def test_point_head_default_recorded_and_resume_with_other_source_refused(workdir, capsys, monkeypatch):
    """POINTS_SOURCE defaults to the released reward (VGGT kept with its point head, the point map
    reprojected, black holes counted); the settings say so; another source refuses to resume into
    the same output. The tiny random point head collapses to one off-screen point, so its point
    map is replaced by the tiny depth head's unprojection, 5 % farther out (a point map that
    disagrees with the cameras)."""
    from scoring import vggt_predictor
    from vggt.utils.geometry import unproject_depth_map_to_point_map

    assert video_scorer.POINTS_SOURCE == "point_head"
    real_predict = vggt_predictor.VGGTPredictor.predict
    seen = {}

    def predict(self, images):
        g = real_predict(self, images)
        seen["point_map_from_vggt"] = g.world_points is not None
        g.world_points = 1.05 * unproject_depth_map_to_point_map(g.depth, g.extrinsic, g.intrinsic)
        return g

    monkeypatch.setattr(vggt_predictor.VGGTPredictor, "predict", predict)
    d = workdir["dir"]
    inp = _write(d / "ph_in.json", {"groups": _good_groups(1)})
    out = d / "ph_out.json"
    args = _args(workdir, inp, out)
    del args[args.index("--points_source") : args.index("--points_source") + 2]  # the default
    assert video_scorer.main(args) == 0
    assert seen["point_map_from_vggt"]  # the point head was kept
    res = json.loads(out.read_text())
    assert res["consistency_scorer"]["points_source"] == "point_head"
    for v in res["groups"][0]["videos"]:
        _assert_scored(v)
        assert 0 < v["coverage"] < 1  # holes: black and counted
    assert video_scorer.main([*args, "--points_source", "depth"]) == 2
    err = capsys.readouterr().err
    assert "different settings" in err and "points_source" in err


# ---- LPIPS availability -----------------------------------------------------------------------------


def test_missing_lpips_weights_clear_error_or_no_lpips(workdir, monkeypatch, capsys):
    d = workdir["dir"]
    monkeypatch.setenv("TORCH_HOME", str(d / "empty_torch_home"))
    monkeypatch.delenv("VIDEOGPA_LPIPS_VGG_WEIGHTS", raising=False)
    monkeypatch.delenv("VIDEOGPA_LPIPS_LIN_WEIGHTS", raising=False)
    inp = _write(d / "lp_in.json", [_good_groups(1)[0]])  # a plain list of groups
    out = d / "lp_out.json"
    args = _args(workdir, inp, out)
    i = args.index("--lpips_vgg_weights")
    args = args[:i] + args[i + 4 :] + ["--no_download"]  # drop both --lpips_* options
    assert video_scorer.main(args) == 2
    err = capsys.readouterr().err
    for needle in ("--lpips_vgg_weights", "--lpips_lin_weights", "--no_lpips", "VIDEOGPA_LPIPS_VGG_WEIGHTS"):
        assert needle in err
    assert not out.exists()
    assert video_scorer.main(args + ["--no_lpips"]) == 0
    res = json.loads(out.read_text())
    assert isinstance(res, list)
    for v in res[0]["videos"]:
        assert v["lpips"] is None and v["consistency_score"] == v["mse"] > 0


# ---- shards, workers, entry points ------------------------------------------------------------------


def _scores(doc):
    groups = doc["groups"] if isinstance(doc, dict) else doc
    return [[{k: v.get(k) for k in SCORES + ("error",)} for v in g["videos"]] for g in groups]


def test_shards_merge_equals_single_run(workdir, capsys):
    d = workdir["dir"]
    inp = _write(d / "shard_in.json", {"groups": _good_groups(3), "top": "kept"})
    single = d / "shard_single.json"
    assert video_scorer.main(_args(workdir, inp, single)) == 0
    merged = d / "shard_merged.json"
    for i in range(2):
        assert (
            video_scorer.main(_args(workdir, inp, merged, "--num_shards", "2", "--shard_index", str(i))) == 0
        )
    s0 = json.loads((d / "shard_merged.shard0of2.json").read_text())  # utils.jobs: contiguous blocks
    assert [g["group_id"] for g in s0["groups"]] == ["g0", "g1"]
    assert video_scorer.main(_args(workdir, inp, merged, "--num_shards", "2", "--merge")) == 0
    m = json.loads(merged.read_text())
    assert m["top"] == "kept" and _scores(m) == _scores(json.loads(single.read_text()))
    assert video_scorer.main(_args(workdir, inp, merged, "--num_shards", "3", "--merge")) == 2
    assert "not found" in capsys.readouterr().err


def test_shards_resume_and_merge_groups_without_group_id(workdir, capsys):
    """Groups without ``group_id`` are matched by content, not position: a shard's output holds a
    subset of the groups, so positions differ from the input's (resume and merge lost them)."""
    d = workdir["dir"]
    groups = [{k: v for k, v in g.items() if k != "group_id"} for g in _good_groups(3)]
    inp = _write(d / "noid_in.json", {"groups": groups})
    out = d / "noid_merged.json"
    for i in range(2):
        assert video_scorer.main(_args(workdir, inp, out, "--num_shards", "2", "--shard_index", str(i))) == 0
    capsys.readouterr()
    assert video_scorer.main(_args(workdir, inp, out, "--num_shards", "2", "--shard_index", "1")) == 0
    assert "scored 0, skipped 2, failed 0" in capsys.readouterr().out  # shard 1 = group #2 only
    shards = [shard_path(out, i, 2) for i in range(2)]
    counts = merge_shards(inp, shards, out)
    assert counts == {"videos": 6, "scored": 6, "failed": 0, "missing": 0}
    s0, s1 = (json.loads(p.read_text())["groups"] for p in shards)
    merged = json.loads(out.read_text())["groups"]
    assert [g["prompt"] for g in merged] == [g["prompt"] for g in (s0[0], s0[1], s1[0])]
    assert _scores(merged) == _scores([s0[0], s0[1], s1[0]])


def test_merge_reads_round_robin_shards_of_earlier_versions_and_refuses_mixed_settings(workdir, capsys):
    """Shard files named ``out.shard<i>-of-<K>.json`` with the round-robin groups of earlier versions
    (built here by hand from a single run) still merge into the single run's result; a shard with
    other settings is refused (exit 2)."""
    d = workdir["dir"]
    inp = _write(d / "legacy_in.json", {"groups": _good_groups(3)})
    single = d / "legacy_single.json"
    assert video_scorer.main(_args(workdir, inp, single)) == 0
    done = json.loads(single.read_text())
    out = d / "legacy_out.json"
    for i in range(2):
        shard = {**done, "groups": done["groups"][i::2]}
        _write(d / f"legacy_out.shard{i}-of-2.json", shard)
    assert video_scorer.main(_args(workdir, inp, out, "--merge")) == 0
    assert _scores(json.loads(out.read_text())) == _scores(done)
    # an unfinished shard (a video without result): the merge is written but is no success (exit 1)
    unfinished = {**done, "groups": json.loads(json.dumps(done["groups"][1::2]))}
    for k in SCORES:
        unfinished["groups"][0]["videos"][0].pop(k, None)
    _write(d / "legacy_out.shard1-of-2.json", unfinished)
    capsys.readouterr()
    assert video_scorer.main(_args(workdir, inp, out, "--merge")) == 1
    assert "1 video(s) have no result" in capsys.readouterr().err
    other = {**done, "groups": done["groups"][1::2],
             "consistency_scorer": {**done["consistency_scorer"], "num_frames": 9}}
    _write(d / "legacy_out.shard1-of-2.json", other)
    assert video_scorer.main(_args(workdir, inp, out, "--merge")) == 2
    assert "different settings" in capsys.readouterr().err


def _set_launcher_env(monkeypatch, env: dict) -> None:
    """Exactly the launcher variables ``env`` (torchrun / srun), none left from the environment."""
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)


@pytest.mark.parametrize("env", [{"RANK": "2", "WORLD_SIZE": "2"},
                                 {"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "2"}])
def test_inconsistent_launcher_variables_exit_2(workdir, monkeypatch, capsys, env):
    _set_launcher_env(monkeypatch, env)
    d = workdir["dir"]
    inp = _write(d / "badenv_in.json", {"groups": _good_groups(1)})
    assert video_scorer.main(_args(workdir, inp, d / "badenv_out.json")) == 2
    err = capsys.readouterr().err
    assert "inconsistent launcher environment" in err and next(iter(env)) in err
    assert not (d / "badenv_out.json").exists()


def test_one_worker_per_device_spawn(workdir):
    d = workdir["dir"]
    inp = _write(d / "mp_in.json", {"groups": _good_groups(2)})
    single, multi = d / "mp_single.json", d / "mp_multi.json"
    assert video_scorer.main(_args(workdir, inp, single)) == 0
    args = _args(workdir, inp, multi)
    args[args.index("--devices") + 1] = "cpu,cpu"
    assert video_scorer.main(args) == 0
    assert _scores(json.loads(multi.read_text())) == _scores(json.loads(single.read_text()))


def test_script_and_module_entry_points(workdir, tmp_path):
    d = workdir["dir"]
    inp = _write(d / "script_in.json", {"groups": _good_groups(1)})
    out = tmp_path / "script_out.json"
    env = dict(os.environ, PYTHONPATH="")
    visuals = tmp_path / "vis"
    cmd = [sys.executable, str(ROOT / "train_dpo" / "video_scorer.py"), *_args(workdir, inp, out),
           "--save_visuals", str(visuals)]  # fmt: skip
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "scored 2, skipped 0, failed 0" in r.stdout
    for v in json.loads(out.read_text())["groups"][0]["videos"]:
        _assert_scored(v)
    vdir = visuals / "00000_g0" / "00_good0_seed0"
    pngs = [f"reproj_{i:03d}.png" for i in range(4)]
    assert sorted(p.name for p in vdir.iterdir()) == ["point_cloud.ply", *pngs, "side_by_side.mp4"]
    cmd = [sys.executable, "-m", "train_dpo.video_scorer", "--help"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--lpips_vgg_weights" in r.stdout and "--no_lpips" in r.stdout


# ---- fewer frames than asked, nothing scored, launcher shards (issue 10) -------------------------------


def test_fewer_frames_than_asked_uses_all_with_one_warning(workdir, capsys, caplog):
    d = workdir["dir"]
    inp = _write(d / "short_in.json", {"groups": _good_groups(1)})
    out = d / "short_out.json"
    args = _args(workdir, inp, out)
    args[args.index("--num_frames") + 1] = "10"  # the videos have 6 frames
    with caplog.at_level("WARNING", logger="video_scorer"):
        assert video_scorer.main(args) == 0
    videos = json.loads(out.read_text())["groups"][0]["videos"]
    for v in videos:
        _assert_scored(v)
        assert v["num_frames_used"] == 6
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "2 video(s) have fewer than --num_frames 10" in warnings[0]


def test_nothing_scored_exits_1_and_prints_the_first_error(workdir, capsys):
    d = workdir["dir"]
    groups = [{"group_id": "bad", "videos": [{"video_path": "videos/empty.mp4"}, {"video_path": "videos/text.mp4"}]}]
    inp = _write(d / "none_in.json", {"groups": groups})
    assert video_scorer.main(_args(workdir, inp, d / "none_out.json")) == 1
    err = capsys.readouterr().err
    assert "none of the 2 video(s) could be scored" in err and "empty.mp4" in err and "empty (0 bytes)" in err
    assert video_scorer.main(_args(workdir, inp, d / "none_out.json")) == 1  # a re-run says the same


@pytest.mark.parametrize("env", [{"RANK": "1", "WORLD_SIZE": "2"},
                                 {"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2", "SLURM_NTASKS": "2"}])
def test_shard_defaults_come_from_the_launcher(workdir, monkeypatch, env):
    _set_launcher_env(monkeypatch, env)
    d = workdir["dir"]
    inp = _write(d / "env_in.json", {"groups": _good_groups(2)})
    out = d / f"env_out_{len(env)}.json"
    assert video_scorer.main(_args(workdir, inp, out)) == 0
    shard = json.loads(shard_path(out, 1, 2).read_text())
    assert [g["group_id"] for g in shard["groups"]] == ["g1"] and not out.exists()


# ---- extra metric: epipolar, and pairs picked by it (issue 11, arm dpo_epipolar) -----------------------


def test_epipolar_extra_metric_recorded_resumed_and_picks_pairs(workdir, capsys):
    """At 56 px the three renders give an epipolar error with a skipped pair (good0), none at all
    (good1: every pair has < 20 SIFT matches -> null) and a smaller one (good2): the pair by
    epipolar is good2 over good0, good1 counts as missing, not as a winner."""
    from metrics.epipolar import epipolar_error
    from train_dpo.pairs import PairSelectionConfig, select_preference_pairs
    from utils.video_utils import sample_uniform_frames

    assert video_scorer.EXTRA_METRICS == ()
    d = workdir["dir"]
    videos = [{"video_path": f"videos/good{i}.mp4", "seed": i} for i in range(3)]
    group = {"group_id": "e", "prompt": "p", "videos": videos}
    inp = _write(d / "epi_in.json", {"groups": [group]})
    out = d / "epi_out.json"
    assert video_scorer.main(_args(workdir, inp, out, "--extra_metrics", "epipolar")) == 0
    res = json.loads(out.read_text())
    assert res["consistency_scorer"]["extra_metrics"] == ["epipolar"]
    videos = res["groups"][0]["videos"]
    for v in videos:  # the scorer's sampled frames (4 at 56 px) through metrics.epipolar, recomputed here
        _assert_scored(v)
        want = epipolar_error(sample_uniform_frames(d / v["video_path"], n_frames=4, size=56))
        assert v["epipolar_pairs_skipped"] == want.pairs_skipped
        assert v["epipolar"] == (want.mean_sampson if math.isfinite(want.mean_sampson) else None)
    assert [v["epipolar_pairs_skipped"] for v in videos] == [1, 3, 1] and videos[1]["epipolar"] is None
    assert videos[2]["epipolar"] < videos[0]["epipolar"]

    cfg = PairSelectionConfig(metric_name="epipolar", metric_mode="min", min_gap=0.01,
                              motion_threshold=None, require_latents=False)  # fmt: skip
    pairs, stats = select_preference_pairs(res, cfg)
    assert len(pairs) == 1 and stats["videos_no_metric"] == 1
    assert (pairs[0].winner["seed"], pairs[0].loser["seed"]) == (2, 0)
    assert pairs[0].metric_w == videos[2]["epipolar"]

    capsys.readouterr()
    assert video_scorer.main(_args(workdir, inp, out, "--extra_metrics", "epipolar")) == 0
    assert "scored 0, skipped 3" in capsys.readouterr().out and json.loads(out.read_text()) == res
    assert video_scorer.main(_args(workdir, inp, out)) == 2  # resume without the extra metric: refused
    err = capsys.readouterr().err
    assert "different settings" in err and "extra_metrics" in err
    # an output of the scorer before extra metrics existed (no such setting) resumes without them
    old = json.loads(out.read_text())
    del old["consistency_scorer"]["extra_metrics"]
    for v in old["groups"][0]["videos"]:
        del v["epipolar"], v["epipolar_pairs_skipped"]
    out.write_text(json.dumps(old))
    assert video_scorer.main(_args(workdir, inp, out)) == 0
    assert "scored 0, skipped 3" in capsys.readouterr().out
    assert not any("epipolar" in v for v in json.loads(out.read_text())["groups"][0]["videos"])


def test_unknown_extra_metric_exits_2(workdir, capsys):
    with pytest.raises(SystemExit) as e:
        video_scorer.main(["--extra_metrics", "epipolr"])
    assert e.value.code == 2 and "epipolr" in capsys.readouterr().err
