"""scoring/ (reprojection.py, scorer.py, visuals.py): point cloud, deterministic z-buffer reprojection, scoring.

The known-geometry tests render textured 3-D scenes with an independent ray caster
(tests/_scorer_render.py) and score them with the oracle predictor (true depth and cameras).
"""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from _scorer_render import load_texture, render_video

from metrics import build_random_lpips_weights, load_lpips
from scoring import (
    GeometryPrediction,
    OraclePredictor,
    ScoringError,
    VGGTPredictor,
    VideoProcessor,
    build_point_cloud,
    confidence_mask,
    frames_to_tensor,
    reproject_points,
    save_visuals,
)
from utils.video_utils import read_video_frames

FIX = Path(__file__).parent / "fixtures"
VIDEOS = [FIX / "videos" / "bikes.mp4", FIX / "videos" / "carphone_pristine.mp4"]
VGGT_WEIGHTS = FIX / "vggt" / "vggt_tiny_weights.safetensors"
VGGT_CONFIG = FIX / "vggt" / "vggt_tiny_config.json"


@pytest.fixture(scope="module")
def small_lpips(tmp_path_factory):
    paths = build_random_lpips_weights(tmp_path_factory.mktemp("lpips"), seed=0, width=0.125)
    return load_lpips(*paths, allow_download=False)


def _rot(rng, max_deg):
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    a = math.radians(rng.uniform(-max_deg, max_deg))
    Kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(a) * Kx + (1 - math.cos(a)) * Kx @ Kx


def _random_geometry(T=3, H=20, W=24, seed=0):
    rng = np.random.default_rng(seed)
    E = np.stack([np.concatenate([_rot(rng, 20), rng.normal(size=(3, 1))], 1) for _ in range(T)])
    K = np.array([[30.0, 0, W / 2], [0, 28.0, H / 2], [0, 0, 1]])
    pred = GeometryPrediction(
        depth=torch.tensor(rng.uniform(2, 5, (T, H, W)), dtype=torch.float32),
        depth_conf=torch.ones(T, H, W),
        extrinsic=torch.tensor(E, dtype=torch.float32),
        intrinsic=torch.tensor(np.repeat(K[None], T, 0), dtype=torch.float32),
    )
    images = torch.tensor(rng.uniform(0, 1, (T, 3, H, W)), dtype=torch.float32)
    return images, pred


# ---- reprojection geometry (done-when 2) ------------------------------------------------------------


def test_own_points_reproject_onto_own_pixels_exactly():
    T, H, W = 3, 20, 24
    images, pred = _random_geometry(T, H, W)
    points, colors, keep = build_point_cloud(images, pred, conf_thres=0, points_source="depth")
    assert keep.all() and points.shape == (T * H * W, 3)
    for i in range(T):
        own = slice(i * H * W, (i + 1) * H * W)
        rep = reproject_points(
            points[own], colors[own], pred.extrinsic[i : i + 1], pred.intrinsic[i : i + 1], H, W
        )
        assert rep["mask"].all()
        assert torch.equal(rep["index"][0].flatten(), torch.arange(H * W))
        assert torch.equal(rep["image"][0], images[i])
        torch.testing.assert_close(rep["depth"][0], pred.depth[i], rtol=1e-5, atol=1e-5)


def test_zbuffer_nearest_wins_ties_by_index_any_order():
    K = torch.tensor([[[10.0, 0, 4], [0, 10.0, 4], [0, 0, 1]]])
    E = torch.eye(3, 4)[None]
    pts = torch.tensor([[0.0, 0, 3], [0.0, 0, 1], [0.0, 0, 2]])
    cols = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    for perm in itertools.permutations(range(3)):
        p = list(perm)
        rep = reproject_points(pts[p], cols[p], E, K, 9, 9)
        assert torch.equal(rep["image"][0, :, 4, 4], torch.tensor([0, 1.0, 0]))  # depth-1 point wins
        assert float(rep["depth"][0, 4, 4]) == 1.0
        assert int(rep["index"][0, 4, 4]) == p.index(1)
        assert int(rep["mask"].sum()) == 1
    # exact ties: the smaller point index wins, whatever the colours
    tie = torch.tensor([[0.0, 0, 2], [0.0, 0, 2]])
    for c in (cols[:2], cols[:2].flip(0)):
        rep = reproject_points(tie, c, E, K, 9, 9)
        assert int(rep["index"][0, 4, 4]) == 0 and torch.equal(rep["image"][0, :, 4, 4], c[0])
    # behind the camera / outside the image / rounding to the nearest pixel centre (u = 4 + 10 x / z)
    odd = torch.tensor([[0.0, 0, -2], [5.0, 0, 1], [0.449, 0, 1], [0.0, 0.449, 1], [0.0, -0.451, 1]])
    rep = reproject_points(odd, torch.ones(5, 3), E, K, 9, 9)
    assert int(rep["mask"].sum()) == 2
    assert int(rep["index"][0, 4, 8]) == 2  # u = 8.49 -> column 8
    assert int(rep["index"][0, 8, 4]) == 3  # v = 8.49 -> row 8; v = -0.51 -> row -1: dropped


def test_foreground_occludes_and_ties_keep_first_frame():
    """Two frames, same camera: a wall at depth 5, and in frame 1 a square at depth 2 in front of it."""
    H = W = 16
    K = torch.tensor([[12.0, 0, 8], [0, 12.0, 8], [0, 0, 1]]).repeat(2, 1, 1)
    E = torch.eye(3, 4).repeat(2, 1, 1)
    depth = torch.full((2, H, W), 5.0)
    depth[1, 4:12, 4:12] = 2.0
    images = torch.zeros(2, 3, H, W)
    images[0, 0] = 1.0  # frame 0 red
    images[1, 2] = 1.0  # frame 1 blue
    pred = GeometryPrediction(depth, torch.ones(2, H, W), E, K)
    points, colors, _ = build_point_cloud(images, pred, points_source="depth")
    rep = reproject_points(points, colors, E, K, H, W)
    img0 = rep["image"][0]
    # the near square (frame 1, depth 2) covers the wall seen by frame 0
    assert torch.all(img0[2, 4:12, 4:12] == 1.0) and torch.all(img0[0, 4:12, 4:12] == 0.0)
    # elsewhere both frames have a point at depth 5 on the same pixel: the tie goes to frame 0 (lower index)
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[4:12, 4:12] = False
    assert torch.all(img0[0][outside] == 1.0)
    assert torch.all(rep["index"][0][outside] < H * W)


def test_reprojection_is_deterministic_and_chunk_independent():
    g = torch.Generator().manual_seed(0)
    n, T, H, W = 4000, 4, 24, 32
    pts = torch.randn(n, 3, generator=g) + torch.tensor([0, 0, 6.0])
    cols = torch.rand(n, 3, generator=g)
    _, pred = _random_geometry(T, H, W, seed=1)
    E = torch.cat([torch.eye(3).repeat(T, 1, 1), torch.zeros(T, 3, 1)], 2)
    E[:, 0, 3] = torch.linspace(-0.5, 0.5, T)
    a = reproject_points(pts, cols, E, pred.intrinsic, H, W)
    b = reproject_points(pts, cols, E, pred.intrinsic, H, W, max_chunk_elems=n)  # one frame per chunk
    perm = torch.randperm(n, generator=g)
    c = reproject_points(pts[perm], cols[perm], E, pred.intrinsic, H, W)
    for k in ("image", "mask", "depth", "index"):
        assert torch.equal(a[k], b[k])
    assert torch.equal(a["image"], c["image"]) and torch.equal(a["depth"], c["depth"])
    assert torch.equal(perm[c["index"].clamp_min(0)][c["mask"]], a["index"][a["mask"]])


def test_confidence_filter_percentile():
    """The released rule (upstream get_colored_pointcloud): keep the ceil(N (1 - p / 100)) most
    confident candidates, plus ties with the last one."""
    conf = torch.arange(1, 101, dtype=torch.float32).view(1, 10, 10)
    assert confidence_mask(conf, 0).all()
    m = confidence_mask(conf, 50)
    assert int(m.sum()) == 50 and bool(m.flatten()[-1]) and not bool(m.flatten()[49])  # 51..100
    assert int(confidence_mask(conf, 90).sum()) == 10
    assert int(confidence_mask(conf, 99.5).sum()) == 1  # at least one point is kept
    three = torch.tensor([[[1.0, 2.0, 3.0]]])
    assert confidence_mask(three, 50).tolist() == [[[False, True, True]]]  # ceil(1.5) = 2
    ties = torch.tensor([[[1.0, 2.0, 2.0, 2.0]]])
    assert int(confidence_mask(ties, 75).sum()) == 3  # k = 1, ties with the 1st largest kept
    bad = conf.clone()
    bad[0, 0, :3] = torch.tensor([float("nan"), 0.0, -1.0])
    assert int(confidence_mask(bad, 0).sum()) == 97
    assert int(confidence_mask(bad, 50).sum()) == 49  # ceil(97 / 2) = 49 of the 97 candidates
    with pytest.raises(ValueError):
        confidence_mask(conf, 100)


# ---- known geometry (done-when 1) --------------------------------------------------------------------


def _corruptions(r, seed):
    frames = r["frames"]
    warp = frames.copy()
    for i in range(1, len(frames), 2):
        warp[i] = np.roll(warp[i], (2, 3), (0, 1))
    flicker = frames.copy()
    flicker[1::2] = (flicker[1::2].astype(np.float64) * 0.7).astype(np.uint8)
    other = render_video(seed, box_textures=[load_texture("coffee.png", 40, 999 + seed)])["frames"]
    swap = frames.copy()
    swap[1::2] = other[1::2]
    return {"warp": warp, "flicker": flicker, "texture_swap": swap}


def _disagreeing_point_map(r, seed, deg=0.5, trans=0.02):
    """The true depth unprojected with cameras that are off by ``deg`` degrees and ``trans`` world
    units per frame: a point head that disagrees with the (true) camera head."""
    from vggt.utils.geometry import unproject_depth_map_to_point_map

    rng = np.random.default_rng(seed)
    E = r["extrinsic"].copy()
    for i in range(len(E)):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        a = math.radians(deg)
        R = np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K @ K
        E[i] = np.concatenate([R @ E[i, :, :3], (R @ E[i, :, 3] + trans * rng.normal(size=3))[:, None]], 1)
    return unproject_depth_map_to_point_map(
        r["depth"].astype(np.float32), E.astype(np.float32), r["intrinsic"].astype(np.float32)
    )


def test_known_geometry_consistent_lowest_in_both_modes(small_lpips):
    """Rendered scenes, oracle geometry: the consistent video scores below its warped, flickering
    and texture-swapped copies with either points source. With the exact point map the two modes
    coincide (own points land on own pixels, full coverage); with a point map that disagrees with
    the cameras only the point-head score rises."""
    table = {}
    for seed in range(5):
        r = render_video(seed, num_frames=8, height=64, width=64)
        corrupted = _corruptions(r, seed)
        for label, mode, points in (
            ("depth", "depth", None),
            ("point_head", "point_head", None),
            ("point_head, disagreeing point map", "point_head", _disagreeing_point_map(r, seed)),
        ):
            oracle = OraclePredictor(r["depth"], r["extrinsic"], r["intrinsic"], world_points=points)
            proc = VideoProcessor(oracle, lpips=small_lpips, points_source=mode)
            base = proc.score_frames(r["frames"])
            row = {"consistent": base["consistency_score"]}
            for name, frames in corrupted.items():
                s = proc.score_frames(frames)
                row[name] = s["consistency_score"]
                assert s["consistency_score"] > base["consistency_score"], (seed, label, name, s, base)
                assert s["mse"] > base["mse"]
            if points is None:
                assert base["coverage"] == 1.0 and base["num_points"] == 8 * 64 * 64
                assert base["mse"] < 0.006, base  # resampling noise only (median |error| ~4/255)
            assert base["motion_norm"] > 0.05 and base["motion_norm_released"] > 0.05
            table.setdefault(label, {})[seed] = row
        for name in table["depth"][seed]:
            assert table["point_head"][seed][name] == pytest.approx(table["depth"][seed][name], rel=1e-5)
            if name == "consistent":
                disagreeing = table["point_head, disagreeing point map"][seed][name]
                assert disagreeing > 1.3 * table["depth"][seed][name]
    print("\nknown geometry, consistency_score (consistent / warp / flicker / texture_swap):")
    for label, rows in table.items():
        for seed, row in rows.items():
            print(f"  {label:34s} scene {seed}: " + " / ".join(f"{v:.4f}" for v in row.values()))


def test_point_map_disagreeing_with_cameras_moves_point_head_score_only(small_lpips):
    r = render_video(4, num_frames=6, height=48, width=48)
    bad = _disagreeing_point_map(r, 4, deg=1.0, trans=0.05)

    def score(mode, points):
        oracle = OraclePredictor(r["depth"], r["extrinsic"], r["intrinsic"], world_points=points)
        return VideoProcessor(oracle, lpips=small_lpips, points_source=mode).score_frames(r["frames"])

    depth_good, depth_bad = score("depth", None), score("depth", bad)
    head_good, head_bad = score("point_head", None), score("point_head", bad)
    for k in ("consistency_score", "mse", "lpips", "coverage", "num_points"):
        assert depth_bad[k] == depth_good[k], k  # the depth mode never reads the point map
    assert head_good["consistency_score"] == pytest.approx(depth_good["consistency_score"], rel=1e-5)
    assert head_bad["consistency_score"] > 1.5 * head_good["consistency_score"]
    assert head_bad["coverage"] < 1.0  # own points no longer land on every own pixel
    # without a point map the point-head mode refuses to score
    arrays = (r["depth"], np.ones_like(r["depth"]), r["extrinsic"], r["intrinsic"])
    plain = GeometryPrediction(*(torch.as_tensor(x, dtype=torch.float32) for x in arrays))
    with pytest.raises(ValueError, match="point map"):
        build_point_cloud(frames_to_tensor(r["frames"]), plain, points_source="point_head")
    with pytest.raises(ValueError, match="points_source"):
        VideoProcessor(OraclePredictor(r["depth"], r["extrinsic"], r["intrinsic"]), points_source="points")


def test_single_frame_scores_exactly_zero(small_lpips):
    r = render_video(1, num_frames=2, height=32, width=32)
    proc = VideoProcessor(
        OraclePredictor(r["depth"][:1], r["extrinsic"][:1], r["intrinsic"][:1]), lpips=small_lpips
    )
    res = proc.score_frames(r["frames"][:1])
    assert (
        res["mse"] == 0.0
        and res["lpips"] == 0.0
        and res["consistency_score"] == 0.0
        and res["motion_norm"] == 0.0
    )


def test_holes_and_masking_modes(small_lpips):
    r = render_video(2, num_frames=4, height=32, width=32)
    conf = np.random.default_rng(0).uniform(1, 2, r["depth"].shape)
    pred = OraclePredictor(r["depth"], r["extrinsic"], r["intrinsic"], depth_conf=conf)
    frames = r["frames"]
    masked = VideoProcessor(pred, lpips=small_lpips, conf_thres=80, points_source="depth")
    masked = masked.score_frames(frames)
    black = VideoProcessor(pred, lpips=small_lpips, conf_thres=80).score_frames(frames)  # point_head
    assert masked["num_points"] == black["num_points"] == math.ceil(4 * 32 * 32 * 0.2)
    assert 0 < masked["coverage"] < 1 and masked["coverage"] == black["coverage"]
    assert black["mse"] > masked["mse"]  # black holes count in the released-code mode
    # the same cloud (exact point map) with black holes in the depth mode gives the same numbers
    depth_black = VideoProcessor(pred, lpips=small_lpips, conf_thres=80, points_source="depth",
                                 mask_uncovered=False).score_frames(frames)  # fmt: skip
    assert depth_black["mse"] == pytest.approx(black["mse"], rel=1e-6)
    assert depth_black["lpips"] == pytest.approx(black["lpips"], rel=1e-5)
    # released mode by hand: every pixel, holes black
    points, colors, _ = build_point_cloud(frames_to_tensor(frames), pred.prediction, 80)
    rep = reproject_points(points, colors, pred.prediction.extrinsic, pred.prediction.intrinsic, 32, 32)
    by_hand = float(((rep["image"] - frames_to_tensor(frames)) ** 2).mean())
    assert black["mse"] == pytest.approx(by_hand, rel=1e-6)
    nolp = VideoProcessor(pred, lpips=None, conf_thres=80, points_source="depth").score_frames(frames)
    assert nolp["lpips"] is None and nolp["consistency_score"] == nolp["mse"] == masked["mse"]


def test_invalid_geometry_raises_scoring_error():
    r = render_video(0, num_frames=2, height=16, width=16)
    pred = OraclePredictor(np.zeros_like(r["depth"]), r["extrinsic"], r["intrinsic"])
    with pytest.raises(ScoringError, match="no valid 3-D point"):
        VideoProcessor(pred).score_frames(r["frames"])
    with pytest.raises(ValueError, match="shape"):
        VideoProcessor(OraclePredictor(r["depth"], r["extrinsic"], r["intrinsic"])).score_frames(
            r["frames"][:, :8]
        )
    with pytest.raises(ValueError):
        frames_to_tensor(np.zeros((2, 8, 8), np.uint8))


def test_save_visuals(small_lpips, tmp_path):
    r = render_video(3, num_frames=4, height=32, width=32)
    proc = VideoProcessor(OraclePredictor(r["depth"], r["extrinsic"], r["intrinsic"]), lpips=small_lpips)
    res = proc.score_frames(r["frames"], return_visuals=True)
    v = res["visuals"]
    assert v["reprojected"].shape == (4, 32, 32, 3) and v["reprojected"].dtype == np.uint8
    assert v["points"].shape == (4 * 32 * 32, 3) and v["colors"].dtype == np.uint8
    out = save_visuals(res, tmp_path / "vis")
    assert sorted(p.name for p in (tmp_path / "vis").glob("reproj_*.png")) == [
        f"reproj_{i:03d}.png" for i in range(4)
    ]
    assert read_video_frames(out["video"]).shape == (4, 32, 64, 3)
    data = out["ply"].read_bytes()
    head, body = data.split(b"end_header\n", 1)
    assert head.startswith(b"ply\nformat binary_little_endian 1.0\nelement vertex 4096\n")
    assert b"property float x" in head and b"property uchar red" in head
    assert len(body) == 4096 * 15
    rec = np.frombuffer(
        body, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")]
    )
    np.testing.assert_allclose(rec["x"], v["points"][:, 0])
    np.testing.assert_array_equal(rec["b"], v["colors"][:, 2])


def test_save_visuals_at_video_size_with_subsampled_cloud(small_lpips, tmp_path):
    """Visuals at the video's own size (area-averaged), PLY subsampled with a stated, seeded rule."""
    r = render_video(5, num_frames=3, height=32, width=32)
    proc = VideoProcessor(OraclePredictor(r["depth"], r["extrinsic"], r["intrinsic"]), lpips=small_lpips)
    res = proc.score_frames(r["frames"], return_visuals=True)
    res["source_size"] = 16  # what score_video sets for a 16 px video scored at 32 px
    out = save_visuals(res, tmp_path / "vis", max_points=500, seed=3)
    assert read_video_frames(out["video"]).shape == (3, 16, 32, 3)
    png = np.asarray(Image.open(tmp_path / "vis" / "reproj_001.png"))
    want = np.asarray(Image.fromarray(res["visuals"]["reprojected"][1]).resize((16, 16), Image.BOX))
    np.testing.assert_array_equal(png, want)
    head, body = out["ply"].read_bytes().split(b"end_header\n", 1)
    n = res["visuals"]["points"].shape[0]
    assert b"comment VideoGPA: 500 of %d points" % n in head and b"element vertex 500\n" in head
    rec = np.frombuffer(body, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "u1", 3)])
    keep = np.sort(np.random.default_rng(3).choice(n, 500, replace=False))
    np.testing.assert_array_equal(rec["x"], res["visuals"]["points"][keep, 0])


# ---- tiny VGGT on real videos (done-when 3) ----------------------------------------------------------


def test_vggt_predictor_autocast_dtype_follows_device_capability(monkeypatch):
    """bf16 autocast only on GPUs with native bf16 (sm_80+) -- of the predictor's own device; older
    GPUs (V100, T4: emulated bf16, no flash attention) get fp16, as in the VGGT reference."""

    class OnAnyDevice(torch.nn.Module):  # a model that "moves" to CUDA on a CPU-only machine
        def to(self, *args, **kwargs):
            return self

    caps = {0: (7, 0), 1: (9, 0)}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulated counts
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda device=None: caps[0 if device is None else torch.device(device).index])
    assert VGGTPredictor(OnAnyDevice(), device="cuda:0").autocast_dtype == torch.float16
    assert VGGTPredictor(OnAnyDevice(), device="cuda:1").autocast_dtype == torch.bfloat16
    assert VGGTPredictor(OnAnyDevice(), device="cuda:1", autocast=False).autocast_dtype is None
    assert VGGTPredictor(OnAnyDevice(), device="cpu").autocast_dtype is None


def test_tiny_vggt_scores_real_videos_finite_and_reproducible(small_lpips):
    pred = VGGTPredictor(str(VGGT_WEIGHTS), device="cpu", config=str(VGGT_CONFIG))
    assert pred.autocast_dtype is None and pred.has_point_map  # fp32 on CPU, point head kept
    # the fixture's random point head collapses to one point off-screen: score the depth head here
    proc = VideoProcessor(pred, lpips=small_lpips, num_frames=10, image_size=112, points_source="depth")
    keys = ("consistency_score", "mse", "lpips", "motion_norm", "motion_norm_released", "coverage",
            "num_points")  # fmt: skip
    for video in VIDEOS:
        a = proc.score_video(video)
        b = proc.score_video(video)
        for k in keys:
            assert math.isfinite(a[k]), (video, k, a[k])
            assert a[k] == b[k], (video, k)
        assert a["num_frames"] == 10 and a["height"] == a["width"] == 112
        assert a["coverage"] > 0 and a["num_points"] > 0
        assert set(a["timings"]) >= {"decode", "predict", "reproject", "metrics", "total"}
    with pytest.raises(ValueError, match="multiples of 14"):
        pred.predict(torch.zeros(2, 3, 50, 56))


def test_tiny_vggt_point_head_mode_uses_the_point_map(small_lpips):
    """point_head mode (the default, the released reward) reprojects exactly VGGT's world_points
    (conf_thres 0 keeps them all) with black holes; the depth mode builds another cloud; without a
    point head it refuses. Tiny seeded VGGT of vggt/tiny.py (the demo's), real video."""
    from utils.video_utils import sample_uniform_frames
    from vggt.tiny import build_tiny_vggt

    frames = sample_uniform_frames(VIDEOS[0], n_frames=6, size=56)
    pred = VGGTPredictor(build_tiny_vggt(seed=0), device="cpu")
    proc = VideoProcessor(pred, lpips=small_lpips)
    assert proc.points_source == "point_head" and proc.mask_uncovered is False
    head = proc.score_frames(frames, return_visuals=True)
    assert proc.score_frames(frames)["consistency_score"] == head["consistency_score"]  # reproducible
    depth = VideoProcessor(pred, lpips=small_lpips, points_source="depth")
    depth = depth.score_frames(frames, return_visuals=True)
    with torch.no_grad():
        out = pred.model(frames_to_tensor(frames))
    world = out["world_points"][0].reshape(-1, 3).numpy()
    np.testing.assert_array_equal(head["visuals"]["points"], world)
    assert not np.allclose(depth["visuals"]["points"], world, atol=1e-3)
    assert 0 < head["coverage"] < depth["coverage"] == 1.0
    assert math.isfinite(head["consistency_score"])
    assert head["consistency_score"] != depth["consistency_score"]
    # black holes count: the MSE is over every pixel of the reprojection, by hand
    rep = head["visuals"]["reprojected"].astype(np.float64) / 255
    assert head["mse"] == pytest.approx(((rep - frames.astype(np.float64) / 255) ** 2).mean(), abs=2e-3)
    # the released motion definition, by hand from the predicted extrinsics
    E = head["visuals"]["extrinsic"].astype(np.float64)
    t = E[:, :, 3]
    dR = E[1:, :, :3] @ E[:-1, :, :3].transpose(0, 2, 1)
    ang = np.arccos(np.clip((np.trace(dR, axis1=1, axis2=2) - 1) / 2, -1, 1))
    want = np.linalg.norm(t[1:] - t[:-1], axis=1).mean() + 0.1 * ang.mean()
    assert head["motion_norm_released"] == pytest.approx(want, rel=1e-5)
    no_head = VGGTPredictor(str(VGGT_WEIGHTS), device="cpu", config=str(VGGT_CONFIG), drop_point_head=True)
    assert not no_head.has_point_map
    with pytest.raises(ValueError, match="point map"):
        VideoProcessor(no_head)
