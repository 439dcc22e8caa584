"""Preference-pair selection and the pair dataset (train_dpo/pairs.py, dataset.py) on a hand-built JSON."""

import json

import pytest
import torch
from safetensors.torch import save_file

from train_dpo.dataset import DPOPairDataset, load_preference_datasets
from train_dpo.pairs import PairSelectionConfig, select_preference_pairs, split_pairs_by_group
from utils.io_utils import JSONInputError


def _v(name, score=None, motion=0.1, latent=True, **kw):
    v = {"video_path": f"{name}.mp4", "seed": 0}
    if score is not None:
        v["consistency_score"] = score
    if motion is not None:  # the released definition (the default MOTION_METRIC) and ours
        v["motion_norm_released"] = motion
        v["motion_norm"] = 10 * motion
    if latent:
        v["latent_path"] = f"lat/{name}.safetensors"
    v.update(kw)
    return v


def _groups():
    return {
        "groups": [
            # ok: winner b (0.2), loser c (0.7); a has no latents, d is static, e failed scoring
            {
                "group_id": "ok1",
                "prompt": "p1",
                "condition_path": "lat/ok1_cond.safetensors",
                "videos": [
                    _v("a", 0.1, latent=False),
                    _v("b", 0.2),
                    _v("c", 0.7),
                    _v("d", 0.05, motion=0.0005),
                    _v("e", error="cannot read video"),
                ],
            },
            # ok: ties keep the earlier video as winner and the later as loser
            {
                "group_id": "ok2",
                "prompt": "p2",
                "condition_path": "lat/ok2_cond.safetensors",
                "videos": [_v("f", 0.3), _v("g", 0.3), _v("h", 0.6), _v("i", 0.6)],
            },
            # gap 0.04 < 0.05
            {"group_id": "gap", "prompt": "p3", "videos": [_v("j", 0.40), _v("k", 0.44)]},
            # winner 0.85 > 0.8
            {"group_id": "thr", "prompt": "p4", "videos": [_v("l", 0.85), _v("m", 1.5)]},
            # only one usable video (other has no score / NaN / no motion_norm)
            {
                "group_id": "few",
                "prompt": "p5",
                "videos": [_v("n", 0.1), _v("o", None), _v("p", float("nan")), _v("q", 0.9, motion=None)],
            },
            {"group_id": "empty", "prompt": "p6", "videos": []},
        ]
    }


def test_filters_select_known_pairs_and_count_drops():
    pairs, stats = select_preference_pairs(_groups(), PairSelectionConfig(metric_threshold=0.8))
    assert [(p.group_id, p.winner["video_path"], p.loser["video_path"]) for p in pairs] == [
        ("ok1", "b.mp4", "c.mp4"),
        ("ok2", "f.mp4", "i.mp4"),
    ]
    assert pairs[0].metric_w == 0.2 and pairs[0].metric_l == 0.7 and pairs[0].gap == pytest.approx(0.5)
    assert pairs[0].condition_path == "lat/ok1_cond.safetensors"
    assert stats == {
        "groups_total": 6,
        "pairs": 2,
        "dropped_too_few_videos": 2,
        "dropped_min_gap": 1,
        "dropped_metric_threshold": 1,
        "videos_total": 17,
        "videos_error": 1,
        "videos_no_metric": 2,
        "videos_no_latent": 1,
        "videos_low_motion": 2,
    }


def test_released_defaults_no_threshold_and_released_motion_metric(caplog):
    cfg = PairSelectionConfig()
    assert (cfg.min_gap, cfg.metric_threshold, cfg.motion_threshold) == (0.05, None, 0.001)
    assert cfg.motion_metric == "motion_norm_released"
    pairs, stats = select_preference_pairs(_groups(), cfg)
    assert [p.group_id for p in pairs] == ["ok1", "ok2", "thr"]  # no winner threshold (as released)
    # our motion_norm is 10x here: d (released 0.0005) passes the filter on it and wins ok1
    pairs, _ = select_preference_pairs(_groups(), PairSelectionConfig(motion_metric="motion_norm"))
    assert pairs[0].winner["video_path"] == "d.mp4"
    # JSONs scored before motion_norm_released existed: every video is dropped, with a warning
    old = _groups()
    for g in old["groups"]:
        for v in g["videos"]:
            v.pop("motion_norm_released", None)
    pairs, stats = select_preference_pairs(old, cfg)
    assert not pairs and stats["videos_low_motion"] == 13  # 17 minus 1 error, 2 no metric, 1 no latent
    assert "no 'motion_norm_released'" in caplog.text
    with pytest.raises(ValueError, match="motion_metric"):
        PairSelectionConfig(motion_metric="motion")


def test_rules_can_be_switched_and_max_mode():
    cfg = PairSelectionConfig(
        min_gap=0.0, metric_threshold=None, motion_threshold=None, require_latents=False
    )
    pairs, stats = select_preference_pairs(_groups(), cfg)
    got = {p.group_id: (p.winner["video_path"], p.loser["video_path"]) for p in pairs}
    assert got == {
        "ok1": ("d.mp4", "c.mp4"),
        "ok2": ("f.mp4", "i.mp4"),
        "gap": ("j.mp4", "k.mp4"),
        "thr": ("l.mp4", "m.mp4"),
        "few": ("n.mp4", "q.mp4"),
    }
    assert stats["dropped_too_few_videos"] == 1  # "empty"
    # max mode: higher is better; threshold means winner >= threshold
    cfg = PairSelectionConfig(metric_mode="max", min_gap=0.05, metric_threshold=1.0)
    pairs, stats = select_preference_pairs(_groups(), cfg)
    assert [(p.group_id, p.winner["video_path"], p.loser["video_path"]) for p in pairs] == [
        ("thr", "m.mp4", "l.mp4")
    ]
    assert stats["dropped_metric_threshold"] == 2 and stats["dropped_min_gap"] == 1
    with pytest.raises(ValueError, match="metric_mode"):
        PairSelectionConfig(metric_mode="median")


def test_split_by_group_is_seeded_and_keeps_one_val_group():
    pairs, _ = select_preference_pairs(
        {
            "groups": [
                {"group_id": f"g{i}", "videos": [_v(f"w{i}", 0.1), _v(f"l{i}", 0.5)]} for i in range(120)
            ]
        }
    )
    train, val = split_pairs_by_group(pairs, 0.02, seed=3)
    assert len(val) == 2 and len(train) == 118
    assert not {p.group_id for p in train} & {p.group_id for p in val}
    assert [p.group_id for p in split_pairs_by_group(pairs, 0.02, seed=3)[1]] == [p.group_id for p in val]
    assert split_pairs_by_group(pairs[:2], 0.02)[1].__len__() == 1  # at least one val group
    assert split_pairs_by_group(pairs[:1], 0.02)[1] == []  # never all of them
    assert split_pairs_by_group(pairs, 0.0)[1] == []


def test_dataset_loads_tensors(tmp_path):
    data = _groups()
    (tmp_path / "lat").mkdir()
    g = torch.Generator().manual_seed(0)
    for name in "bcfi":
        save_file(
            {"latents": torch.randn(3, 4, 8, 12, generator=g)}, str(tmp_path / "lat" / f"{name}.safetensors")
        )
    save_file({"prompt_embeds": torch.randn(226, 32)}, str(tmp_path / "lat" / "ok1_cond.safetensors"))
    save_file(
        {"prompt_embeds": torch.randn(226, 32), "image_latents": torch.zeros(3, 4, 8, 12)},
        str(tmp_path / "lat" / "ok2_cond.safetensors"),
    )
    (tmp_path / "enc.json").write_text(json.dumps(data))
    rules = PairSelectionConfig(metric_threshold=0.8)
    train, val, stats = load_preference_datasets(tmp_path / "enc.json", None, rules, val_fraction=0.5)
    assert len(train) == 1 and len(val) == 1 and stats["train_pairs"] == 1 and stats["pairs"] == 2
    ds = DPOPairDataset(sorted(train.pairs + val.pairs, key=lambda p: p.group_id), tmp_path)
    item = ds[0]
    assert item["latents_w"].shape == (3, 4, 8, 12) and item["prompt_embeds"].shape == (226, 32)
    assert "image_latents" not in item and item["group_id"] == "ok1"
    assert ds[1]["image_latents"].shape == (3, 4, 8, 12)
    batch = torch.utils.data.default_collate([ds[1], ds[1]])
    assert batch["latents_l"].shape == (2, 3, 4, 8, 12)
    with pytest.raises(KeyError, match="image_latents"):
        DPOPairDataset(ds.pairs, tmp_path, require_image_latents=True)[0]
    assert DPOPairDataset(ds.pairs, tmp_path, dtype=torch.bfloat16)[0]["latents_w"].dtype == torch.bfloat16
    (tmp_path / "lat" / "c.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="c.safetensors"):
        ds[0]


def test_bad_inputs(tmp_path):
    with pytest.raises(JSONInputError, match="nope.json"):
        select_preference_pairs(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="groups"):
        select_preference_pairs({"videos": []})
    (tmp_path / "e.json").write_text(json.dumps({"groups": [{"group_id": "x", "videos": [_v("a", 0.1)]}]}))
    with pytest.raises(ValueError, match="no preference pairs"):
        load_preference_datasets(tmp_path / "e.json")


def test_any_recorded_metric_and_nan_or_null_is_missing_not_a_winner(tmp_path):
    """METRIC_NAME = "epipolar" (written by video_scorer.py --extra_metrics epipolar): a NaN or null
    value (every frame pair skipped) is a missing metric; in min mode it would otherwise win."""
    videos = [_v("a", 0.5, epipolar=float("nan")), _v("b", 0.9, epipolar=None), _v("c", 0.1, epipolar=2.5),
              _v("d", 0.3, epipolar=0.7), _v("e", 0.2)]  # fmt: skip
    path = tmp_path / "epi.json"
    path.write_text(json.dumps({"groups": [{"group_id": "g", "videos": videos}]}))  # writes NaN as NaN
    cfg = PairSelectionConfig(metric_name="epipolar", metric_mode="min")
    pairs, stats = select_preference_pairs(path, cfg)
    assert [(p.winner["video_path"], p.loser["video_path"]) for p in pairs] == [("d.mp4", "c.mp4")]
    assert (pairs[0].metric_w, pairs[0].metric_l) == (0.7, 2.5) and stats["videos_no_metric"] == 3
    by_score, _ = select_preference_pairs(path, PairSelectionConfig())
    assert (by_score[0].winner["video_path"], by_score[0].loser["video_path"]) == ("c.mp4", "b.mp4")
    # a metric that no video has: the error says so
    with pytest.raises(ValueError, match="no video has a finite 'epipolr'.*--extra_metrics"):
        load_preference_datasets(path, config=PairSelectionConfig(metric_name="epipolr"))
