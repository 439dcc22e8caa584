"""metrics/: masked MSE, LPIPS (VGG16 + v0.1 lin, plain torch), motion_norm, coverage."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from metrics import (
    LPIPS,
    LPIPSWeightsError,
    build_random_lpips_weights,
    camera_centers,
    consistency_score,
    coverage,
    load_lpips,
    motion_norm,
    mse,
    mse_per_image,
)
from metrics.lpips import LPIPS_SCALE, LPIPS_SHIFT, VGG16_CONV_INDICES, VGG16_POOL_INDICES


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory):
    return build_random_lpips_weights(tmp_path_factory.mktemp("lpips"), seed=3, width=0.125)


@pytest.fixture(scope="module")
def lp(lpips_files):
    return load_lpips(*lpips_files, allow_download=False)


def _images(n=3, h=40, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, h // 8, w // 8, generator=g)
    return F.interpolate(base, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


# ---- MSE ----------------------------------------------------------------------------------------


def test_mse_values_and_mask():
    a = torch.zeros(2, 3, 4, 4)
    b = torch.zeros(2, 3, 4, 4)
    b[0, :, 0, 0] = 1.0  # one pixel of image 0 differs by 1 in every channel
    assert float(mse(a, a)) == 0.0
    assert float(mse(a, b)) == pytest.approx(3 / (2 * 3 * 16))
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, 0, :2] = True  # 2 pixels of image 0
    assert float(mse(a, b, mask)) == pytest.approx(0.5)
    assert float(mse(a, b, mask[:, None])) == pytest.approx(0.5)
    per = mse_per_image(a, b, mask)
    assert per[0] == pytest.approx(0.5) and math.isnan(float(per[1]))
    assert math.isnan(float(mse(a, b, torch.zeros(2, 4, 4, dtype=torch.bool))))
    np.testing.assert_allclose(float(mse(a.numpy(), b.numpy())), float(mse(a, b)))
    assert float(mse(a[0], b[0])) == pytest.approx(3 / 48)
    with pytest.raises(ValueError):
        mse(a, b[:, :2])


# ---- LPIPS --------------------------------------------------------------------------------------


def test_lpips_weight_files_have_published_key_format(lpips_files):
    vgg = load_file(str(lpips_files[0]))
    lin = load_file(str(lpips_files[1]))
    assert set(vgg) == {f"features.{i}.{p}" for i in VGG16_CONV_INDICES for p in ("weight", "bias")}
    assert set(lin) == {f"lin{k}.model.1.weight" for k in range(5)}
    assert vgg["features.0.weight"].shape == (8, 3, 3, 3)
    assert lin["lin4.model.1.weight"].shape == (1, 64, 1, 1)
    assert all(float(v.min()) >= 0 for v in lin.values())


def test_lpips_strict_loading(lpips_files, tmp_path):
    vgg = load_file(str(lpips_files[0]))
    lin = load_file(str(lpips_files[1]))
    # torchvision checkpoints carry classifier.* too: ignored
    extra = dict(vgg, **{"classifier.0.weight": torch.zeros(4, 4)})
    LPIPS.from_state_dicts(extra, lin)
    # .pth (torch pickle) files load as well as .safetensors
    torch.save(extra, tmp_path / "vgg16.pth")
    torch.save(lin, tmp_path / "vgg.pth")
    m = load_lpips(tmp_path / "vgg16.pth", tmp_path / "vgg.pth", allow_download=False)
    x = _images()
    torch.testing.assert_close(m(x, x.flip(0)), LPIPS.from_state_dicts(vgg, lin)(x, x.flip(0)))
    with pytest.raises(LPIPSWeightsError, match="lin2"):
        LPIPS.from_state_dicts(vgg, {k: v for k, v in lin.items() if not k.startswith("lin2")})
    with pytest.raises(LPIPSWeightsError):
        LPIPS.from_state_dicts({k: v for k, v in vgg.items() if k != "features.12.bias"}, lin)
    with pytest.raises(LPIPSWeightsError):
        LPIPS.from_state_dicts(dict(vgg, **{"features.30.weight": torch.zeros(1)}), lin)
    bad_lin = dict(lin, **{"lin0.model.1.weight": torch.zeros(1, 7, 1, 1)})
    with pytest.raises(LPIPSWeightsError):
        LPIPS.from_state_dicts(vgg, bad_lin)


def test_lpips_full_size_layout_matches_torchvision_vgg16():
    m = LPIPS()  # default widths = VGG16
    shapes = {f"features.{k}": tuple(v.shape) for k, v in m.features.state_dict().items()}
    assert shapes["features.0.weight"] == (64, 3, 3, 3)
    assert shapes["features.28.weight"] == (512, 512, 3, 3)
    assert sum(v.numel() for v in m.features.parameters()) == 14_714_688  # torchvision vgg16 features
    assert [type(m.features[i]).__name__ for i in VGG16_POOL_INDICES] == ["MaxPool2d"] * 4


def test_lpips_properties(lp):
    x = _images(seed=1)
    y = _images(seed=2)
    d0 = lp(x, x)
    assert d0.shape == (3,) and torch.all(d0 == 0)
    torch.testing.assert_close(lp(x, y), lp(y, x))
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(x.shape, generator=g)
    ds = [float(lp(x, (x + s * noise).clamp(0, 1)).mean()) for s in (0.02, 0.1, 0.3)]
    assert 0 < ds[0] < ds[1] < ds[2]
    # batch splitting does not change values; single images work
    torch.testing.assert_close(lp(x, y, batch_size=1), lp(x, y))
    torch.testing.assert_close(lp(x[0], y[0]), lp(x, y)[:1])


def _lpips_by_hand(vgg: dict, lin: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Independent LPIPS: explicit F.conv2d / relu / max_pool chain straight from the state dicts."""
    shift = torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1)
    scale = torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1)
    blocks = [[0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]]

    def feats(img):
        h = ((img * 2 - 1) - shift) / scale
        out = []
        for b, convs in enumerate(blocks):
            if b:
                h = F.max_pool2d(h, 2, 2)
            for i in convs:
                h = F.relu(F.conv2d(h, vgg[f"features.{i}.weight"], vgg[f"features.{i}.bias"], padding=1))
            out.append(h)
        return out

    total = torch.zeros(x.shape[0])
    for k, (fx, fy) in enumerate(zip(feats(x), feats(y))):
        nx = fx / (torch.sqrt((fx**2).sum(1, keepdim=True)) + 1e-10)
        ny = fy / (torch.sqrt((fy**2).sum(1, keepdim=True)) + 1e-10)
        w = lin[f"lin{k}.model.1.weight"].view(1, -1, 1, 1)
        total += ((nx - ny) ** 2 * w).sum(1).mean((1, 2))
    return total


def test_lpips_matches_independent_computation(lpips_files, lp):
    vgg = load_file(str(lpips_files[0]))
    lin = load_file(str(lpips_files[1]))
    x, y = _images(seed=3, h=48, w=64), _images(seed=4, h=48, w=64)
    torch.testing.assert_close(lp(x, y), _lpips_by_hand(vgg, lin, x, y), rtol=1e-5, atol=1e-6)
    # [-1, 1] inputs with normalize=False give the same numbers
    torch.testing.assert_close(lp(2 * x - 1, 2 * y - 1, normalize=False), lp(x, y))


def test_lpips_unavailable_weights_give_instructions(monkeypatch, tmp_path, lpips_files):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("VIDEOGPA_LPIPS_VGG_WEIGHTS", raising=False)
    monkeypatch.delenv("VIDEOGPA_LPIPS_LIN_WEIGHTS", raising=False)
    with pytest.raises(LPIPSWeightsError) as ei:
        load_lpips(allow_download=False)
    msg = str(ei.value)
    for needle in (
        "--lpips_vgg_weights",
        "--lpips_lin_weights",
        "VIDEOGPA_LPIPS_VGG_WEIGHTS",
        "--no_lpips",
        "vgg16-397923af.pth",
    ):
        assert needle in msg
    with pytest.raises(LPIPSWeightsError, match="not found"):
        load_lpips(tmp_path / "nope.pth", lpips_files[1])
    # environment variables provide the paths
    monkeypatch.setenv("VIDEOGPA_LPIPS_VGG_WEIGHTS", str(lpips_files[0]))
    monkeypatch.setenv("VIDEOGPA_LPIPS_LIN_WEIGHTS", str(lpips_files[1]))
    assert isinstance(load_lpips(allow_download=False), LPIPS)


def test_lpips_uses_cache(monkeypatch, tmp_path, lpips_files):
    """URL sources are looked up in the cache folder first (as a download would have left them)."""
    from metrics.lpips_weights import LPIPS_LIN_CACHE_NAME

    cache = tmp_path / "cache"
    cache.mkdir()
    vgg = load_file(str(lpips_files[0]))
    torch.save(vgg, cache / "vgg16-397923af.pth")
    torch.save(load_file(str(lpips_files[1])), cache / LPIPS_LIN_CACHE_NAME)
    monkeypatch.delenv("VIDEOGPA_LPIPS_VGG_WEIGHTS", raising=False)
    monkeypatch.delenv("VIDEOGPA_LPIPS_LIN_WEIGHTS", raising=False)
    m = load_lpips(allow_download=False, cache_dir=cache)
    assert m.widths == (8, 16, 32, 64, 64)


# ---- consistency / motion / coverage ------------------------------------------------------------


def _rot_y(deg):
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def _extr(R, center):
    R = np.asarray(R, float)
    return np.concatenate([R, (-R @ np.asarray(center, float))[:, None]], 1)


def test_motion_norm_translation_rotation():
    static = np.stack([_extr(np.eye(3), [0, 0, 0])] * 4)
    assert motion_norm(static) == 0.0
    trans = np.stack([_extr(np.eye(3), [0.5 * i, 0, 0]) for i in range(5)])
    assert motion_norm(trans) == pytest.approx(0.5)
    # rotating 10 deg per frame about the camera centre (1, 2, 3): no translation of the centre
    rot = np.stack([_extr(_rot_y(10 * i), [1, 2, 3]) for i in range(4)])
    assert motion_norm(rot) == pytest.approx(0.1 * math.radians(10), rel=1e-9)
    np.testing.assert_allclose(camera_centers(rot).numpy(), [[1, 2, 3]] * 4, atol=1e-12)
    # the raw extrinsic translation t = -R c changes under that rotation (VideoGPA release variant)
    assert motion_norm(rot, use_camera_centers=False) > motion_norm(rot)
    assert motion_norm(torch.tensor(rot)) == pytest.approx(motion_norm(rot))
    assert motion_norm(np.concatenate([rot, np.tile([[[0, 0, 0, 1.0]]], (4, 1, 1))], 1)) == pytest.approx(
        motion_norm(rot)
    )
    assert motion_norm(rot[:1]) == 0.0
    # near-pi rotations are handled accurately
    flip = np.stack([_extr(np.eye(3), [0, 0, 0]), _extr(_rot_y(179.9), [0, 0, 0])])
    assert motion_norm(flip, rotation_weight=1.0) == pytest.approx(math.radians(179.9), rel=1e-9)


def test_motion_norm_nan_becomes_zero_with_warning():
    bad = np.stack([_extr(np.eye(3), [0, 0, 0]), np.full((3, 4), np.nan)])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert motion_norm(bad) == 0.0
    assert any("motion_norm" in str(x.message) for x in w)


def test_consistency_and_coverage():
    assert consistency_score(0.1, 0.2) == pytest.approx(0.3)
    assert consistency_score(0.1, 0.2, lpips_weight=0.1) == pytest.approx(0.12)
    assert consistency_score(0.1, None) == pytest.approx(0.1)
    m = np.zeros((2, 4, 4), bool)
    m[0] = True
    assert coverage(m) == 0.5 and coverage(torch.tensor(m)) == 0.5
    assert coverage(np.zeros((0,), bool)) == 0.0
