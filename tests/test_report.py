import json

from utils.report import read_lightning_csv, write_report


def test_report_files_and_roles(tmp_path):
    groups = [
        {"group_id": "g0", "prompt": "a", "videos": [
            {"video_path": "g0/seed_0.mp4", "seed": 0, "consistency_score": 0.2, "motion_norm": 0.5, "coverage": 0.9},
            {"video_path": "g0/seed_1.mp4", "seed": 1, "consistency_score": 0.6, "motion_norm": 0.4, "coverage": 0.8},
            {"video_path": "g0/seed_2.mp4", "seed": 2, "error": "VideoReadError: truncated"},
        ]},
    ]
    pairs = [{"group_id": "g0", "winner": "g0/seed_0.mp4", "loser": "g0/seed_1.mp4"}]
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("epoch,step,train/loss,train/accuracy,val/loss\n"
                        "0,0,0.6931,0.5,\n0,1,0.60,1.0,\n0,1,,,0.65\n")
    series = read_lightning_csv(csv_path)
    assert series["train/loss"] == [(0, 0.6931), (1, 0.60)]
    assert series["val/loss"] == [(1, 0.65)]
    out = write_report(tmp_path, groups, pairs, {"generate": 1.5, "score": 2.0}, {"adapter": "run/final_lora"},
                       metrics_csvs={"t2v": csv_path, "i2v": tmp_path / "missing.csv"})
    for k in ("md", "json", "hist", "curves"):
        assert out[k].is_file() and out[k].stat().st_size > 0
    assert out["hist"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rep = json.loads(out["json"].read_text())
    assert rep["num_videos"] == 3 and rep["num_scored"] == 2 and rep["total_seconds"] == 3.5
    roles = {r["video_path"]: r["role"] for r in rep["scores"]}
    assert roles == {"g0/seed_0.mp4": "winner", "g0/seed_1.mp4": "loser", "g0/seed_2.mp4": ""}
    md = out["md"].read_text()
    assert "**winner**" in md and "error: VideoReadError: truncated" in md and "training_curves.png" in md
    assert rep["training_curves"]["t2v"]["train/loss"] == [[0, 0.6931], [1, 0.60]]
    assert "i2v" not in rep["training_curves"]
    assert read_lightning_csv(tmp_path / "missing.csv") == {}
