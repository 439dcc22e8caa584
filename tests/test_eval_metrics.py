"""Known-answer tests of the evaluation metrics (metrics/psnr_ssim.py, mvcs.py, epipolar.py, temporal.py).

Scenes come from the independent ray-casting renderer (tests/_scorer_render.py): a textured room
seen by a camera moving along a smooth arc, with exact depth and cameras. "Warped" is the same
video with a different random smooth (non-projective) image warp per frame, which breaks
multi-view geometry while keeping the content: every 3-D consistency metric must get clearly worse.
"""

import math

import numpy as np
import pytest
import torch

from _scorer_render import FIXTURES, render_video
from metrics.epipolar import epipolar_error, sampson_distance
from metrics.mvcs import mvcs
from metrics.psnr_ssim import gaussian_window, psnr, ssim, ssim_per_image
from metrics.temporal import flow_warp_error, temporal_lpips

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def scene():
    """Moving camera, 5 frames 128 x 128; depth and translations scaled to unit mean depth (as VGGT)."""
    v = render_video(3, num_frames=5, height=128, width=128, tex_size=128)
    depth = np.where(np.isfinite(v["depth"]), v["depth"], 0.0)
    s = depth[depth > 0].mean()
    E = v["extrinsic"].copy()
    E[:, :, 3] /= s
    return {"frames": v["frames"], "depth": depth / s, "extrinsic": E, "intrinsic": v["intrinsic"]}


def _smooth_warp_maps(h, w, rng, amp=1.5):
    """Random smooth displacement (sum of 3 sinusoids, up to ~amp px per component): x -> x + d(x)."""
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    dx, dy = np.zeros_like(gx), np.zeros_like(gy)
    for _ in range(3):
        k1, k2 = rng.uniform(1, 3, 2)
        p1, p2 = rng.uniform(0, 2 * np.pi, 2)
        dx += amp * np.sin(2 * np.pi * (k1 * gx / w + k2 * gy / h) + p1).astype(np.float32)
        dy += amp * np.sin(2 * np.pi * (k2 * gx / w + k1 * gy / h) + p2).astype(np.float32)
    return gx + dx, gy + dy


@pytest.fixture(scope="module")
def warped(scene):
    """The scene with per-frame random warps: frames and depth warped alike, depth also deformed."""
    rng = np.random.default_rng(1)
    frames, depth = [], []
    for f, d in zip(scene["frames"], scene["depth"]):
        mx, my = _smooth_warp_maps(*f.shape[:2], rng)
        frames.append(cv2.remap(f, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
        dw = cv2.remap(d.astype(np.float32), mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)
        bump = 1.0 + 0.3 * np.sin(2 * np.pi * (mx / f.shape[1] * rng.uniform(0.5, 1.5) + rng.uniform()))
        depth.append(dw * bump)
    return {"frames": np.stack(frames), "depth": np.stack(depth)}


# --- PSNR / SSIM ------------------------------------------------------------------------------


def test_psnr_known_answers():
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.8
    assert psnr(x, x) == pytest.approx(100.0)  # released cap for a zero error
    assert psnr(x + 0.1, x) == pytest.approx(20.0, abs=1e-9)  # MSE 0.01 -> 20 dB
    # one MSE pooled over frames (not the mean of per-frame PSNRs)
    y = x.clone()
    y[0] += 0.1
    assert psnr(y, x) == pytest.approx(10 * math.log10(1 / (0.01 / 3)))


def _ssim_brute_force(x, y, size=11, sigma=1.5):
    """Independent SSIM: explicit weighted statistics of every valid window (numpy loops)."""
    w = gaussian_window(size, sigma).numpy()
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for ch in range(x.shape[0]):
        a, b = x[ch], y[ch]
        for i in range(a.shape[0] - size + 1):
            for j in range(a.shape[1] - size + 1):
                pa, pb = a[i:i + size, j:j + size], b[i:i + size, j:j + size]
                ma, mb = (w * pa).sum(), (w * pb).sum()
                va, vb = (w * pa * pa).sum() - ma**2, (w * pb * pb).sum() - mb**2
                cov = (w * pa * pb).sum() - ma * mb
                vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_independent_computation_and_known_values():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (2, 3, 16, 18))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    per = ssim_per_image(x, y)
    for n in range(2):
        assert per[n].item() == pytest.approx(_ssim_brute_force(x[n], y[n]), abs=1e-10)
    assert ssim(x, x) == pytest.approx(1.0)
    assert ssim(x, 1 - x) < 0  # anti-correlated structure
    # constant images: SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1) exactly
    a, b = np.full((1, 1, 12, 12), 0.2), np.full((1, 1, 12, 12), 0.6)
    assert ssim(a, b) == pytest.approx((2 * 0.12 + 1e-4) / (0.04 + 0.36 + 1e-4))


def test_ssim_downsamples_large_frames_like_piq():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (1, 1, 384, 384))  # round(384 / 256) = 2 -> 2 x 2 average pooling first
    y = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)
    pool = lambda z: z.reshape(1, 1, 192, 2, 192, 2).mean(axis=(3, 5))  # noqa: E731
    assert ssim(x, y) == pytest.approx(ssim(pool(x), pool(y), downsample=False), abs=1e-12)


# --- MVCS --------------------------------------------------------------------------------------


def test_mvcs_static_moving_and_warped(scene, warped):
    d, E, K = scene["depth"], scene["extrinsic"], scene["intrinsic"]
    static = mvcs(np.repeat(d[:1], 4, 0), np.repeat(E[:1], 4, 0), np.repeat(K[:1], 4, 0))
    assert static == pytest.approx(1.0, abs=1e-12)
    moving = mvcs(d, E, K)
    bad = mvcs(warped["depth"], E, K)
    assert moving > 0.99  # exact geometry: only depth edges and occlusions disagree
    assert (1 - bad) > 5 * (1 - moving) and bad < 0.97
    # a uniform depth error of 0.1 in frame 2 of an otherwise exact static video: exp(-0.01 / 3 pairs... )
    dd = np.repeat(d[:1], 4, 0).copy()
    dd[2] += 0.1
    assert mvcs(dd, np.repeat(E[:1], 4, 0), np.repeat(K[:1], 4, 0)) == pytest.approx(math.exp(-(0 + 0.01 + 0.01) / 3))
    assert math.isnan(mvcs(np.zeros((2, 8, 8)), np.repeat(E[:1], 2, 0), np.repeat(K[:1], 2, 0)))


# --- epipolar ----------------------------------------------------------------------------------


def test_sampson_distance_known_answer():
    # pure x-translation: F = [t]_x with t = (1, 0, 0): epipolar lines are the rows y' = y
    F = np.array([[0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)
    p1 = np.array([[10.0, 20.0], [5.0, 7.0]])
    p2 = np.array([[13.0, 20.0], [9.0, 10.0]])  # second point is 3 px off its epipolar line
    d = sampson_distance(F, p1, p2)
    assert d[0] == pytest.approx(0.0) and d[1] == pytest.approx(3.0 / math.sqrt(2))


def test_epipolar_identical_moving_warped(scene, warped):
    same = epipolar_error(np.repeat(scene["frames"][:1], 3, 0))
    assert same.pairs == 2 and same.pairs_skipped == 0 and same.mean_sampson < 1e-6
    moving = epipolar_error(scene["frames"])
    bad = epipolar_error(warped["frames"])
    assert moving.pairs_skipped == 0 and moving.mean_sampson < 0.5
    assert bad.mean_sampson > 2 * moving.mean_sampson
    blank = epipolar_error(np.zeros((3, 64, 64, 3), np.uint8))  # no keypoints: every pair skipped and counted
    assert blank.pairs_skipped == 2 and math.isnan(blank.mean_sampson)


# --- temporal ----------------------------------------------------------------------------------


def _photo(size=96):
    from PIL import Image

    return np.asarray(Image.open(FIXTURES / "images" / "coffee.png").convert("RGB"))[:size + 40, :size + 40]


def test_flow_warp_error_translation_identical_flicker():
    img = _photo()
    # pure translation by (+3, +2) px per frame: frame i+1 = frame i shifted, flow explains everything
    frames = np.stack([img[20 - 2 * i:116 - 2 * i, 20 - 3 * i:116 - 3 * i] for i in range(4)])
    trans = flow_warp_error(frames)
    still = flow_warp_error(np.repeat(frames[:1], 3, 0))
    assert still.error == 0.0 and still.valid_fraction == 1.0
    assert trans.error < 0.01 and trans.valid_fraction > 0.85
    rng = np.random.default_rng(0)
    flicker = np.clip(frames.astype(int) + rng.integers(-40, 40, (4, 1, 1, 3)) + rng.integers(-25, 25, frames.shape), 0, 255)
    assert flow_warp_error(flicker.astype(np.uint8)).error > 5 * trans.error


def test_flow_warp_error_scene_vs_warped(scene, warped):
    assert flow_warp_error(warped["frames"]).error > 1.5 * flow_warp_error(scene["frames"]).error


def test_temporal_lpips(tmp_path):
    from metrics.lpips_weights import build_random_lpips_weights, load_lpips

    lp = load_lpips(*build_random_lpips_weights(tmp_path, seed=0, width=0.25), allow_download=False)
    img = _photo(32)
    frames = np.stack([img[10:42, 10 + 2 * i:42 + 2 * i] for i in range(3)])
    assert temporal_lpips(np.repeat(frames[:1], 3, 0), lp) == 0.0
    moving = temporal_lpips(frames, lp)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    assert moving == pytest.approx(float(lp(x[:-1], x[1:]).double().mean()), rel=1e-6)  # mean of consecutive pairs
    assert moving > 0
    with pytest.raises(ValueError):
        temporal_lpips(frames[:1], lp)
