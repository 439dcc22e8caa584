"""evaluate.py and evaluation/: naming, arms, scores.csv, summaries (released CSV, known shift),
an end-to-end tiny run with bad inputs, and a run interrupted midway then resumed."""

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from evaluation.arms import ArmSpecError, adapter_error, parse_arm_specs
from evaluation.layout import VideoKey, parse_video_name, prompt_id_for, video_name
from evaluation.scores_csv import merge_score_files, read_scores, row_key, write_scores
from evaluation.summary import summarize_rows
from utils.io_utils import atomic_write_json
from utils.scripts import load_script

REPO = Path(__file__).resolve().parent.parent
RELEASED = Path(__file__).parent / "fixtures" / "released_scores" / "videogpa_i2v_dpo_da3_scores.csv"


def _evaluate(argv):
    return load_script(REPO / "evaluate.py").main([str(a) for a in argv])


def _no_nan(token):
    raise AssertionError(f"invalid JSON constant {token}")


def test_video_names_and_prompt_ids():
    for seed, arm, w in [(456, "dpo", 1.0), (0, "dpo_epipolar", 0.5), (3, "original", 0.0), (7, "sft", 0.2)]:
        assert parse_video_name(video_name(seed, arm, w)) == (seed, arm, w)
    assert video_name(456, "dpo", 1) == "seed_456_dpo_w1.0.mp4"  # released naming
    assert video_name(456, "original", 0) == "seed_456_original.mp4"
    assert parse_video_name("seed_1.mp4") is None and parse_video_name("clip.mp4") is None
    assert prompt_id_for("1K/001dccbc1f78146a9f03861026613d8e73f39f372b545b26118e37a23c740d5f/images_8") == \
        "001dccbc1f78146a9f03861026613d8e73f39f372b545b26118e37a23c740d5f"
    assert prompt_id_for("My Scene!") == "my_scene"


def test_arm_specs(tmp_path):
    arms, skipped = parse_arm_specs(["dpo=a/b", "sft=", "mine=c"], [0.5, 1.0])
    assert [a.name for a in arms] == ["original", "dpo", "mine"] and arms[1].weights == (0.5, 1.0)
    assert len(skipped) == 1 and "sft" in skipped[0]
    for bad in (["dpo"], ["Bad-Name=x"], ["original=x"]):
        with pytest.raises(ArmSpecError):
            parse_arm_specs(bad, [1.0])
    missing, _ = parse_arm_specs({"dpo": str(tmp_path / "nope")}, [1.0])
    assert "does not exist" in adapter_error(missing[1])
    config_only, _ = parse_arm_specs({"dpo": str(REPO / "checkpoints" / "VideoGPA-T2V-lora")}, [1.0])
    assert "download_ckpt.py" in adapter_error(config_only[1])  # shipped config without weights
    assert adapter_error(arms[0]) is None


def test_scores_csv_roundtrip_dedup_and_merge(tmp_path):
    rows = [{"prompt_id": "p", "prompt": "a, \"quoted\" prompt", "seed": 0, "arm": "dpo", "lora_weight": 1.0,
             "video_path": "v.mp4", "mse": 0.125, "error": ""},
            {"prompt_id": "p", "prompt": "x", "seed": 0, "arm": "original", "lora_weight": 0.0, "video_path": "o.mp4",
             "mse": math.nan, "error": "scoring failed"}]
    write_scores(tmp_path / "s.csv", rows + [dict(rows[0], mse=0.25)])  # same key twice: the later one wins
    back = read_scores(tmp_path / "s.csv")
    assert [r["arm"] for r in back] == ["original", "dpo"]
    assert back[1]["mse"] == 0.25 and back[1]["prompt"] == rows[0]["prompt"] and math.isnan(back[0]["mse"])
    write_scores(tmp_path / "b.csv", [dict(rows[1], mse=0.5, error="")])
    assert merge_score_files([tmp_path / "s.csv", tmp_path / "b.csv"], tmp_path / "m.csv") == 2
    merged = {row_key(r): r for r in read_scores(tmp_path / "m.csv")}
    assert merged[("p", 0, "original", 0.0)]["mse"] == 0.5  # a scored row wins over an error row


def test_summarize_released_scores_csv(tmp_path):
    assert _evaluate(["--summarize", RELEASED, "--output_dir", tmp_path, "--bootstrap_resamples", 500]) == 0
    s = json.loads((tmp_path / "summary.json").read_text(), parse_constant=_no_nan)
    assert s["conditions"] == ["dpo"] and s["per_arm"]["dpo"]["videos"] == 100 and s["vs_original"] == {}
    got = {m: v["mean"] for m, v in s["per_arm"]["dpo"]["metrics"].items()}
    with open(RELEASED, newline="") as f:
        rows = list(csv.DictReader(f))
    for m in ("consistency_score", "mse", "psnr", "ssim", "lpips", "mvcs", "epipolar", "motion_score"):
        assert got[m] == pytest.approx(np.mean([float(r[m]) for r in rows]), rel=1e-12)
    published = {"consistency_score": 0.484, "mse": 0.0124, "psnr": 21.4, "ssim": 0.776, "mvcs": 0.946, "epipolar": 0.554}
    for m, v in published.items():
        assert got[m] == pytest.approx(v, abs=0.0006 * max(1.0, v * 100) if m == "psnr" else 0.0006)
    ci = s["per_arm"]["dpo"]["metrics"]["mvcs"]
    assert ci["ci_low"] < ci["mean"] < ci["ci_high"]
    assert "No `original` arm" in (tmp_path / "summary.md").read_text()


def test_summary_detects_a_known_shift_and_not_a_null():
    rng = np.random.default_rng(0)
    rows = []
    for p in range(40):
        base = {"mse": rng.normal(0.05, 0.01), "psnr": rng.normal(20, 2)}
        for arm, w, shift in (("original", 0.0, 0.0), ("dpo", 1.0, -0.01)):
            rows.append({"prompt_id": f"p{p}", "seed": 0, "arm": arm, "lora_weight": w, "error": "",
                         "mse": base["mse"] + shift + rng.normal(0, 0.001),
                         "psnr": base["psnr"] + rng.normal(0, 0.5)})
    s = summarize_rows(rows, n_resamples=2000)
    mse, ps = s["vs_original"]["dpo"]["metrics"]["mse"], s["vs_original"]["dpo"]["metrics"]["psnr"]
    assert mse["significant"] and mse["wilcoxon_p_holm"] < 0.01 and mse["ci_high"] < 0 and mse["win_rate"] > 0.9
    assert not ps["significant"] and ps["ci_low"] < 0 < ps["ci_high"]
    assert mse["wilcoxon_p_holm"] == pytest.approx(min(1.0, 2 * mse["wilcoxon_p"]), rel=1e-9) or \
        mse["wilcoxon_p_holm"] >= mse["wilcoxon_p"]


def test_seeds_are_averaged_per_prompt():
    """6 prompts x 4 seeds: the unit is the prompt (n = 6), the diff is the mean of per-prompt means."""
    rng = np.random.default_rng(1)
    rows, diffs = [], {}
    for p in range(6):
        scene = rng.normal(0.05, 0.02)
        for seed in range(4):
            b, t = scene + rng.normal(0, 0.005), scene + rng.normal(-0.004, 0.005)
            diffs.setdefault(p, []).append(t - b)
            rows += [{"prompt_id": f"p{p}", "seed": seed, "arm": "original", "lora_weight": 0.0, "error": "", "mse": b,
                      "lpips": math.nan},
                     {"prompt_id": f"p{p}", "seed": seed, "arm": "dpo", "lora_weight": 1.0, "error": "", "mse": t,
                      "lpips": math.nan}]
    rows[-1]["mse"] = math.nan  # a failed video: its pair is left out of its prompt's mean
    diffs[5].pop()
    s = summarize_rows(rows, n_resamples=500)
    comp = s["vs_original"]["dpo"]
    assert comp["pairs"] == 24 and comp["prompts"] == 6
    assert comp["metrics"]["mse"]["n"] == 6 and s["per_arm"]["dpo"]["metrics"]["mse"]["n"] == 6
    assert comp["metrics"]["mse"]["mean_diff"] == pytest.approx(np.mean([np.mean(d) for d in diffs.values()]), rel=1e-9)
    assert s["per_arm"]["original"]["prompts"] == 6 and s["per_arm"]["original"]["videos"] == 24
    assert s["unit_of_analysis"].startswith("prompt")


def test_summary_files_are_strict_json_and_state_the_unit(tmp_path):
    from evaluation.summary import write_summary

    rows = [{"prompt_id": f"p{p}", "seed": s, "arm": a, "lora_weight": w, "error": "", "mse": 0.01 * (p + 1) + d,
             "lpips": math.nan} for p in range(3) for s in (0, 1) for a, w, d in (("original", 0.0, 0), ("dpo", 1.0, -0.001))]
    write_summary(tmp_path, rows, n_resamples=200, plots=False)
    s = json.loads((tmp_path / "summary.json").read_text(), parse_constant=_no_nan)
    assert s["per_arm"]["dpo"]["metrics"]["lpips"]["mean"] is None  # NaN -> null
    assert "n = prompts (seeds averaged per prompt)" in (tmp_path / "summary.md").read_text()


def test_released_csv_defaults_and_errors_are_missing(tmp_path):
    """replicate_scorer.py writes 0.0 when a metric is missing and empty metrics with an error."""
    from evaluation.summary import load_rows_any

    head = "prompt_id,video_name,video_path,relative_path,backbone,mse,consistency_score,motion_score,psnr,ssim,lpips,mvcs,epipolar,error"
    lines = [head,
             "a,seed_456_dpo_w1.0.mp4,v,r,da3,0.01,0.3,0.02,20.0,0.8,0.29,0.9,0.5,",
             "b,seed_456_dpo_w1.0.mp4,v,r,da3,0.02,0.5,0.03,17.0,0.7,0.48,0.0,0.6,",  # mvcs missing -> 0.0
             "c,seed_456_dpo_w1.0.mp4,v,r,da3,0.03,0.6,0.0,0.0,0.0,0.57,0.8,-1.0,",  # psnr/ssim missing, no epipolar pair
             "d,seed_456_dpo_w1.0.mp4,v,r,da3,0.5,,,,,,,,CUDA error"]
    (tmp_path / "scores.csv").write_text("\n".join(lines) + "\n")
    rows = load_rows_any(tmp_path / "scores.csv")
    assert rows[0]["mvcs"] == 0.9 and rows[0]["psnr"] == 20.0
    assert math.isnan(rows[1]["mvcs"]) and math.isnan(rows[2]["psnr"]) and math.isnan(rows[2]["ssim"])
    assert rows[2]["motion_score"] == 0.0 and math.isnan(rows[2]["epipolar"]) and all(
        math.isnan(rows[3][m]) for m in ("mse", "psnr", "mvcs"))
    s = summarize_rows(rows, n_resamples=200)
    means = {m: v["mean"] for m, v in s["per_arm"]["dpo"]["metrics"].items()}
    assert means["mvcs"] == pytest.approx(0.85) and means["psnr"] == pytest.approx(18.5) and means["ssim"] == pytest.approx(0.75)
    assert means["mse"] == pytest.approx(0.02) and s["errors"] == 1


def test_cogvideox15_preset_uses_the_released_lora_scale():
    from evaluation.presets import PRESETS
    from generate.model_defaults import COGVIDEOX15_RELEASED_LORA_SCALING, ModelDefaults, default_lora_scale

    p = PRESETS["cogvideox1.5-5b"]
    cogvideox15 = ModelDefaults(81, 768, 1360, lora_scaling=COGVIDEOX15_RELEASED_LORA_SCALING)
    released = default_lora_scale(cogvideox15, p["arms"]["dpo"])
    assert p["lora_weights"] == [pytest.approx(released)] and released == pytest.approx(0.1)
    assert PRESETS["cogvideox-5b"]["lora_weights"] == [1.0] and PRESETS["cogvideox-5b"]["points_source"] == "point_head"


# --- end to end (tiny models) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tiny_models, tiny_vggt, tmp_path_factory):
    """One tiny evaluation: 2 good prompts + 1 bad entry, arms original, dpo (random adapter), broken (missing)."""
    from evaluation.presets import build_random_lora_adapter
    from metrics.lpips_weights import build_random_lpips_weights

    root = tmp_path_factory.mktemp("evaluate")
    base = tiny_models["cogvideox-t2v"]
    adapter = build_random_lora_adapter(base, root / "adapter", rank=2)
    vgg, lin = build_random_lpips_weights(root / "lpips", seed=0, width=0.125)
    prompts = root / "prompts.json"
    atomic_write_json(prompts, {"1K/aaaa1111bbbb2222/images_8": "a stone gateway, the camera orbits",
                                "bad": {"text_prompt": ""},
                                "1K/cccc3333dddd4444/images_8": "a wooden bridge, the camera moves forward"})
    common = ["--base_model", base, "--geometry_weights", tiny_vggt, "--lpips_vgg_weights", vgg,
              "--lpips_lin_weights", lin, "--score_num_frames", 4, "--image_size", 56, "--seeds", "0",
              "--bootstrap_resamples", 300]
    out = root / "run"
    argv = ["--output_dir", out, "--prompts_json", prompts, "--num_inference_steps", 2,
            "--arm", f"dpo={adapter}", "--arm", f"broken={root / 'missing_adapter'}"] + common
    code = _evaluate(argv)
    return {"root": root, "out": out, "code": code, "argv": argv, "common": common}


def test_tiny_run_rows_errors_and_summary(tiny_run):
    out = tiny_run["out"]
    assert tiny_run["code"] == 0
    rows = read_scores(out / "scores.csv")
    keys = [row_key(r) for r in rows]
    assert len(keys) == len(set(keys)) == 3 * 3  # 3 prompt entries x (original, dpo, broken) x 1 seed
    errs = {row_key(r): r["error"] for r in rows if r["error"]}
    assert sum("missing or empty 'text_prompt'" in e for e in errs.values()) == 3
    assert sum("missing_adapter" in e and "does not exist" in e for e in errs.values()) == 2
    ok = [r for r in rows if not r["error"]]
    assert len(ok) == 4 and {r["arm"] for r in ok} == {"original", "dpo"}
    for r in ok:
        for m in ("consistency_score", "mse", "psnr", "ssim", "lpips", "mvcs", "temporal_lpips", "flow_warp_error"):
            assert math.isfinite(r[m]), (m, r)
        assert r["psnr"] == pytest.approx(10 * math.log10(1 / r["mse"]), abs=0.05)  # both over full frames, holes black
        assert r["coverage"] > 0.5, r  # tiny preset: depth points cover the frame (its point head: ~0.1 %)
        assert Path(r["video_path"]).is_file() and parse_video_name(r["video_path"]) == (0, r["arm"], r["lora_weight"])
    summary = json.loads((out / "summary.json").read_text(), parse_constant=_no_nan)  # strict JSON
    assert summary["settings"]["points_source"] == "depth" and summary["settings"]["lora_weights"] == [1.0]
    md = (out / "summary.md").read_text()
    assert "Versus `original`" in md and "p_holm" in md and "[" in md
    assert "broken" in md and (out / "paired_diff_mse.png").stat().st_size > 1000
    # a re-run finds everything done: same rows
    assert _evaluate(tiny_run["argv"]) == 0
    again = read_scores(out / "scores.csv")
    assert [row_key(r) for r in again] == keys
    assert [(r["mse"], r["error"]) for r in again if not r["error"]] == [(r["mse"], r["error"]) for r in ok]


def test_interrupted_scoring_resumes_with_every_row_once(tiny_run, monkeypatch):
    from evaluation.scoring import VideoEvaluator

    videos = tiny_run["root"] / "videos_copy"
    shutil.copytree(tiny_run["out"] / "videos", videos)
    (videos / "zzzz").mkdir()
    (videos / "zzzz" / "seed_0_original.mp4").write_bytes(b"not a video")  # corrupt file
    out = tiny_run["root"] / "score_only"
    argv = ["--score_only", "--videos_dir", videos, "--output_dir", out] + tiny_run["common"]
    real, calls = VideoEvaluator.score_video, []

    def dying(self, path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # a kill in the middle of the third video
        return real(self, path)

    monkeypatch.setattr(VideoEvaluator, "score_video", dying)
    with pytest.raises(KeyboardInterrupt):
        _evaluate(argv)
    assert len(read_scores(out / "scores.csv")) == 2
    monkeypatch.setattr(VideoEvaluator, "score_video", real)
    assert _evaluate(argv) == 0
    rows = read_scores(out / "scores.csv")
    keys = [row_key(r) for r in rows]
    assert len(keys) == len(set(keys)) == 5
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and bad[0]["prompt_id"] == "zzzz" and "scoring failed" in bad[0]["error"]
    first = {row_key(r): r for r in read_scores(tiny_run["out"] / "scores.csv") if not r["error"]}
    for r in rows:
        if not r["error"]:
            assert r["mse"] == pytest.approx(first[row_key(r)]["mse"], rel=1e-6)  # deterministic, same video
