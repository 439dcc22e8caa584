"""benchmarks/closed_loop.py: the prompt split, the brightness pass and the verdict (fast; the loop
itself is the benchmark, too slow for the suite)."""

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from closed_loop_report import verdict  # noqa: E402
from closed_loop_steps import add_brightness, metric_by_item, split_prompts  # noqa: E402


def test_train_and_held_out_prompts_are_disjoint_and_sized():
    train, heldout = split_prompts(ROOT / "data" / "dl3dv_captions_1K.json", 64, 64, seed=0)
    assert len(train) == 64 and len(heldout) == 64
    keys = lambda d: {p["source_key"] for p in d.values()}  # noqa: E731
    captions = json.loads((ROOT / "data" / "dl3dv_captions_1K.json").read_text())
    texts = lambda d: {" ".join(captions[p["source_key"]].split()) for p in d.values()}  # noqa: E731
    assert not keys(train) & keys(heldout) and not texts(train) & texts(heldout)
    again, _ = split_prompts(ROOT / "data" / "dl3dv_captions_1K.json", 64, 64, seed=0)
    assert again == train  # the split is reproducible


def test_brightness_pass_writes_the_mean_pixel_value(tmp_path):
    from utils.video_writer import write_video

    frames = np.zeros((5, 16, 16, 3), dtype=np.uint8)
    frames[:, :8] = 255  # half white: brightness 0.5 (up to codec rounding)
    write_video(tmp_path / "g" / "seed_0.mp4", frames, fps=8)
    doc = {"groups": [{"group_id": "g", "videos": [{"video_path": "g/seed_0.mp4", "seed": 0},
                                                   {"video_path": "g/seed_1.mp4", "seed": 1, "error": "x"}]}]}
    (tmp_path / "in.json").write_text(json.dumps(doc))
    assert add_brightness(tmp_path / "in.json", tmp_path / "out.json", tmp_path) == 1
    values = metric_by_item(tmp_path / "out.json", "mean_brightness")
    assert abs(values[("g", 0)] - 0.5) < 0.02 and np.isnan(values[("g", 1)])


def _arm(arm, mean_diff, p=1e-6, ci=0.1):
    lo, hi = mean_diff - abs(mean_diff) * ci, mean_diff + abs(mean_diff) * ci
    paired = {"mean_diff": mean_diff, "wilcoxon_p": p, "ci_excludes_zero": lo > 0 or hi < 0}
    return {"arm": arm, "paired": paired}


def test_verdict_needs_every_sanity_run_to_move_its_own_way():
    ok = {"sanity": _arm("sanity", -0.002), "sanity-reversed": _arm("sanity-reversed", +0.001)}
    want = {"sanity": True, "sanity-reversed": True, "passed": True, "opposite_directions": True}
    assert verdict(ok, 0.01) == want
    flipped = {"sanity": _arm("sanity", +0.002), "sanity-reversed": _arm("sanity-reversed", -0.001)}
    v = verdict(flipped, 0.01)
    assert not v["passed"] and v["opposite_directions"]  # moved, but the wrong way
    seeds = {"sanity/seed1": _arm("sanity", -0.002), "sanity/seed2": _arm("sanity", +0.002),
             "sanity-reversed/seed1": _arm("sanity-reversed", +0.001)}
    v = verdict(seeds, 0.01)
    assert not v["passed"] and not v["opposite_directions"] and v["sanity/seed1"] and not v["sanity/seed2"]
    weak = {"sanity": _arm("sanity", -0.002, p=0.05), "sanity-reversed": _arm("sanity-reversed", +0.001)}
    assert not verdict(weak, 0.01)["passed"]  # p >= alpha is not significant
    assert not verdict({"consistency": _arm("consistency", -0.1)}, 0.01)["passed"]  # no sanity run at all
