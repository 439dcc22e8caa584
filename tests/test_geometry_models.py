"""The geometry backbone choice (scoring/geometry_models.py) end to end: the scorer and the
evaluation with the tiny Depth Anything 3 on the real videos, identical on two runs."""

import json
import shutil
from pathlib import Path

import pytest

from utils.io_utils import atomic_write_json
from utils.scripts import load_script

REPO = Path(__file__).resolve().parent.parent
VIDEOS = Path(__file__).parent / "fixtures" / "videos"
REAL = ("bikes.mp4", "carphone_pristine.mp4")


@pytest.fixture(scope="module")
def tiny_da3(tmp_path_factory) -> Path:
    from utils.tiny_models import ensure_tiny_models

    return ensure_tiny_models(tmp_path_factory.mktemp("tiny_da3"), names=("da3",))["da3"]


def test_builder_rejects_unknown_backbone_and_loads_da3(tiny_da3):
    from scoring.da3_predictor import DA3Predictor
    from scoring.geometry_models import build_geometry_predictor

    with pytest.raises(ValueError, match="unknown geometry model 'colmap'"):
        build_geometry_predictor("colmap")
    assert isinstance(build_geometry_predictor("da3", tiny_da3, device="cpu"), DA3Predictor)


def _scored(path: Path) -> list[dict]:
    return [v for g in json.loads(path.read_text())["groups"] for v in g["videos"]]


def test_scorer_with_da3_on_real_videos_is_deterministic(tiny_da3, tmp_path):
    for name in REAL:
        shutil.copy(VIDEOS / name, tmp_path / name)
    atomic_write_json(tmp_path / "groups.json", {"groups": [
        {"group_id": "real", "prompt": "real footage", "videos": [{"video_path": n, "seed": i} for i, n in enumerate(REAL)]}
    ]})
    scorer = load_script(REPO / "train_dpo" / "video_scorer.py")
    common = ["--input_json", str(tmp_path / "groups.json"), "--geometry_model", "da3", "--da3_model", str(tiny_da3),
              "--no_lpips", "--num_frames", "4", "--image_size", "56", "--devices", "cpu"]
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    for out in outs:
        assert scorer.main(common + ["--output_json", str(out)]) == 0
    first, second = (_scored(o) for o in outs)
    assert len(first) == 2 and all(v.get("error") is None for v in first)
    for a, b in zip(first, second):
        for key in ("consistency_score", "mse", "coverage", "motion_norm", "motion_norm_released"):
            assert a[key] == b[key], key  # bit-identical across runs
    # DA3's point map is its depth unprojected with its cameras: every pixel of every frame is covered
    assert all(v["coverage"] == pytest.approx(1.0) for v in first)
    settings = json.loads(outs[0].read_text())["consistency_scorer"]
    assert settings["geometry_model"] == "da3" and settings["geometry_weights"] == str(tiny_da3)
    # a resume with another backbone is refused (exit 2), like any changed setting
    assert scorer.main(common[:3] + ["vggt"] + common[4:] + ["--output_json", str(outs[0])]) == 2


def test_evaluation_score_only_with_da3_on_real_videos_is_deterministic(tiny_da3, tmp_path):
    from evaluation.scores_csv import read_scores
    from metrics.lpips_weights import build_random_lpips_weights

    videos = tmp_path / "videos"
    for i, name in enumerate(REAL):
        (videos / f"clip{i}").mkdir(parents=True)
        shutil.copy(VIDEOS / name, videos / f"clip{i}" / "seed_0_original.mp4")
    vgg, lin = build_random_lpips_weights(tmp_path / "lpips", seed=0, width=0.125)
    evaluate = load_script(REPO / "evaluate.py")
    rows = []
    for run in ("a", "b"):
        argv = ["--score_only", "--videos_dir", videos, "--output_dir", tmp_path / run, "--geometry_model", "da3",
                "--geometry_weights", tiny_da3, "--lpips_vgg_weights", vgg, "--lpips_lin_weights", lin,
                "--score_num_frames", 4, "--image_size", 56, "--bootstrap_resamples", 200]
        assert evaluate.main([str(a) for a in argv]) == 0
        rows.append(sorted(read_scores(tmp_path / run / "scores.csv"), key=lambda r: r["prompt_id"]))
    assert len(rows[0]) == 2 and not any(r["error"] for r in rows[0])
    for a, b in zip(*rows):
        for key in ("consistency_score", "mse", "psnr", "ssim", "lpips", "mvcs", "temporal_lpips", "flow_warp_error"):
            assert a[key] == b[key], key


def test_consistency_verifier_with_da3(tiny_da3):
    from generate.verifiers import Verifier, VerifierSettings
    from utils.video_utils import read_video_frames

    frames = read_video_frames(VIDEOS / "carphone_pristine.mp4")[:24]
    settings = VerifierSettings(num_frames=4, image_size=56, lpips=False, geometry_model="da3", da3_model=str(tiny_da3))
    verifier = Verifier("consistency", settings)
    a, b = verifier.score(frames), verifier.score(frames[::-1].copy())
    assert a.error is None and b.error is None and a.score > 0
    assert verifier.describe()["verifier_geometry_model"] == "da3"
    assert verifier.score(frames).score == a.score  # deterministic
