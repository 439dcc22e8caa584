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


def test_report_sections_and_figure_layout(tmp_path, monkeypatch):
    """Pair counts, commands, notes and skipped stages in report.md; histogram: one panel per mode,
    winner/loser outlines on the bars' bin edges, integer count ticks; curves have y labels."""
    import numpy as np

    from utils import report

    figs = []

    def capture(path, draw):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = draw(plt)
        fig.canvas.draw()
        figs.append(fig)
        path.write_bytes(b"png")

    monkeypatch.setattr(report, "plot_png", capture)
    groups = [{"group_id": f"{m}/g", "mode": m, "videos": [
        {"video_path": f"{m}{i}.mp4", "seed": i, "consistency_score": s} for i, s in enumerate(sc)]}
        for m, sc in (("t2v", [0.11, 0.2, 0.37]), ("i2v", [0.15, 0.52]))]
    pairs = [{"group_id": "t2v/g", "winner": "t2v0.mp4", "loser": "t2v2.mp4"},
             {"group_id": "i2v/g", "winner": "i2v0.mp4", "loser": "i2v1.mp4"}]
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("step,train/loss,train/accuracy,train/reward_margin\n0,0.69,0.5,0.0\n1,0.6,1.0,0.1\n")
    out = write_report(tmp_path, groups, pairs, {"t2v: DPO training": 0.0}, {}, metrics_csvs={"t2v": csv_path},
                       pair_selection={"t2v": {"groups_total": 1, "pairs": 1}, "i2v": {"groups_total": 1, "pairs": 1}},
                       commands={"t2v: DPO training": ["train_dpo/x/04_train.py", "--max_steps", "20"]},
                       skipped={"t2v: DPO training": "finished training of 20 steps"},
                       notes=["The tiny models and LPIPS weights are random."])
    md = out["md"].read_text()
    assert "> The tiny models and LPIPS weights are random." in md
    assert "| pairs | 1 | 1 |" in md and "| count | t2v | i2v |" in md
    assert "python train_dpo/x/04_train.py --max_steps 20" in md
    assert "skipped: finished training of 20 steps" in md
    rep = json.loads(out["json"].read_text())
    assert rep["pair_selection"]["t2v"]["pairs"] == 1 and rep["skipped_stages"]

    hist, curves = figs
    assert [ax.get_title() for ax in hist.axes] == ["t2v", "i2v"]
    for ax in hist.axes:
        bars = sorted({round(p.get_x(), 12) for p in ax.patches if type(p).__name__ == "Rectangle"})
        edges = set(bars) | {round(p.get_x() + p.get_width(), 12) for p in ax.patches
                             if type(p).__name__ == "Rectangle"}
        outline_x = {round(x, 12) for p in ax.patches if type(p).__name__ == "Polygon" for x in p.get_xy()[:, 0]}
        assert outline_x and outline_x <= edges  # outlines step on the bars' edges
        ticks = [t for t in ax.get_yticks() if t >= 0]
        assert all(float(t).is_integer() for t in ticks), ticks
    assert len({tuple(np.round(ax.get_xlim(), 9)) for ax in hist.axes}) == 1  # shared edges and x range
    assert all(ax.get_ylabel() for ax in curves.axes)
