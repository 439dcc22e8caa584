"""Tests of the from-scratch VGGT (vggt/): golden numbers of the reference implementation,
checkpoint layout, geometry utilities, loading and preprocessing. CPU, a few seconds each."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from vggt import VGGT, load_vggt
from vggt.tiny import TINY_CONFIG, build_tiny_vggt, write_tiny_vggt
from vggt.utils.geometry import closed_form_inverse_se3, unproject_depth_map_to_point_map
from vggt.utils.load_fn import preprocess_frames
from vggt.utils.pose_enc import extri_intri_to_pose_encoding, pose_encoding_to_extri_intri
from vggt.utils.rotation import mat_to_quat, quat_to_mat

FIX = Path(__file__).parent / "fixtures" / "vggt"
CONFIG = json.loads((FIX / "vggt_tiny_config.json").read_text())
WEIGHTS = FIX / "vggt_tiny_weights.safetensors"
CASES = ["s3_56x70", "s2_56x56"]
TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def golden():
    return load_file(str(FIX / "vggt_tiny_golden.safetensors"))


@pytest.fixture(scope="module")
def tiny_model():
    model = VGGT(**CONFIG).eval()
    model.load_state_dict(load_file(str(WEIGHTS)), strict=True)
    return model


def random_rotations(n, seed=0):
    q = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return quat_to_mat(q / q.norm(dim=-1, keepdim=True))


# --------------------------------------------------------------------------- golden numbers

@pytest.mark.parametrize("case", CASES)
def test_matches_reference_golden(tiny_model, golden, case):
    images = golden[f"{case}.images"]
    H, W = images.shape[-2:]
    with torch.no_grad():
        out = tiny_model(images)
    extrinsic, intrinsic = pose_encoding_to_extri_intri(out["pose_enc"], (H, W))
    actual = {
        "pose_enc": out["pose_enc"], "depth": out["depth"], "depth_conf": out["depth_conf"],
        "world_points": out["world_points"], "world_points_conf": out["world_points_conf"],
        "extrinsic": extrinsic, "intrinsic": intrinsic,
        "world_points_from_depth": unproject_depth_map_to_point_map(out["depth"][0], extrinsic[0],
                                                                    intrinsic[0]),
    }
    assert len(out["pose_enc_list"]) == 4
    for i, pose in enumerate(out["pose_enc_list"]):
        actual[f"pose_enc_iter{i}"] = pose
    expected_keys = {k.split(".", 1)[1] for k in golden if k.startswith(case + ".")} - {"images"}
    assert expected_keys == set(actual)
    for name, value in actual.items():
        torch.testing.assert_close(value, golden[f"{case}.{name}"], **TOL, msg=lambda m: f"{name}: {m}")
    assert out["images"].shape == images.shape


def test_unbatched_input_and_frame_chunking(tiny_model, golden):
    images = golden["s3_56x70.images"]
    with torch.no_grad():
        batched = tiny_model(images, frames_chunk_size=None)
        unbatched = tiny_model(images[0], frames_chunk_size=1)
        chunked = tiny_model(images, frames_chunk_size=2)
    for key in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        assert unbatched[key].shape == batched[key].shape
        torch.testing.assert_close(unbatched[key], batched[key], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(chunked[key], batched[key], rtol=1e-5, atol=1e-6)


def test_rejects_bad_input_shapes(tiny_model):
    with pytest.raises(ValueError):
        tiny_model(torch.rand(2, 3, 50, 56))
    with pytest.raises(ValueError):
        tiny_model(torch.rand(3, 56, 56))


def test_bf16_autocast_keeps_heads_fp32(tiny_model, golden):
    images = golden["s2_56x56.images"]
    with torch.no_grad():
        out = tiny_model(images, autocast_dtype=torch.bfloat16)
    for key in ("pose_enc", "depth", "world_points"):
        assert out[key].dtype == torch.float32
        torch.testing.assert_close(out[key], golden[f"s2_56x56.{key}"], rtol=0.1, atol=0.1)


# --------------------------------------------------------------------------- checkpoint layout

def test_vggt_1b_state_dict_matches_release_manifest():
    manifest = json.loads((FIX / "vggt_1b_state_dict_manifest.json").read_text())
    with torch.device("meta"):
        model = VGGT()
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    released = {k: v for k, v in manifest.items() if not k.startswith("track_head.")}
    assert len(manifest) - len(released) == 394
    assert sorted(ours) == sorted(released)
    assert ours == released


# --------------------------------------------------------------------------- geometry utilities

def test_quaternion_round_trip():
    q = torch.randn(64, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, 3:] < 0, -q, q)
    torch.testing.assert_close(mat_to_quat(quat_to_mat(q)), q)
    R = quat_to_mat(q)
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(64, 3, 3))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(64, dtype=torch.float64))
    # XYZW convention: 90 degrees about z maps x -> y
    qz = torch.tensor([0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)])
    torch.testing.assert_close(quat_to_mat(qz) @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]))


def test_pose_encoding_round_trip():
    B, S, H, W = 2, 3, 294, 518
    R = random_rotations(B * S).float().reshape(B, S, 3, 3)
    t = torch.randn(B, S, 3, 1, generator=torch.Generator().manual_seed(2))
    extrinsic = torch.cat([R, t], dim=-1)
    intrinsic = torch.zeros(B, S, 3, 3)
    intrinsic[..., 0, 0] = torch.linspace(300, 600, B * S).reshape(B, S)
    intrinsic[..., 1, 1] = torch.linspace(310, 620, B * S).reshape(B, S)
    intrinsic[..., 0, 2], intrinsic[..., 1, 2], intrinsic[..., 2, 2] = W / 2, H / 2, 1.0
    enc = extri_intri_to_pose_encoding(extrinsic, intrinsic, (H, W))
    assert enc.shape == (B, S, 9) and enc.dtype == torch.float32
    extrinsic2, intrinsic2 = pose_encoding_to_extri_intri(enc, (H, W))
    torch.testing.assert_close(extrinsic2, extrinsic, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(intrinsic2, intrinsic, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(extri_intri_to_pose_encoding(extrinsic2, intrinsic2, (H, W)), enc,
                               rtol=1e-5, atol=1e-5)


def test_closed_form_inverse_se3():
    R = random_rotations(5, seed=3)
    t = torch.randn(5, 3, 1, dtype=torch.float64)
    se3 = torch.cat([R, t], dim=-1)
    full = torch.cat([se3, torch.tensor([[[0.0, 0, 0, 1]]], dtype=torch.float64).expand(5, 1, 4)], dim=1)
    expected = torch.linalg.inv(full)
    torch.testing.assert_close(closed_form_inverse_se3(se3), expected)
    torch.testing.assert_close(closed_form_inverse_se3(full), expected)
    np.testing.assert_allclose(closed_form_inverse_se3(se3.numpy()), expected.numpy(), atol=1e-12)
    with pytest.raises(ValueError):
        closed_form_inverse_se3(torch.zeros(2, 3, 3))


def test_unproject_hand_built_pinhole():
    # Camera 0 at the world origin; camera 1 translated: X_cam = X_world + (1, 0, 0).
    H, W, f = 4, 6, 2.0
    K = torch.tensor([[f, 0, 3.0], [0, f, 2.0], [0, 0, 1]]).expand(2, 3, 3)
    E = torch.zeros(2, 3, 4)
    E[:, :3, :3] = torch.eye(3)
    E[1, 0, 3] = 1.0
    depth = torch.full((2, H, W), 2.0)
    pts = unproject_depth_map_to_point_map(depth, E, K)
    assert pts.shape == (2, H, W, 3) and isinstance(pts, torch.Tensor)
    # pixel (u=5, v=0) at depth 2: x = (5-3)*2/2 = 2, y = (0-2)*2/2 = -2, z = 2
    torch.testing.assert_close(pts[0, 0, 5], torch.tensor([2.0, -2.0, 2.0]))
    torch.testing.assert_close(pts[1, 0, 5], torch.tensor([1.0, -2.0, 2.0]))
    torch.testing.assert_close(pts[0, 2, 3], torch.tensor([0.0, 0.0, 2.0]))
    as_np = unproject_depth_map_to_point_map(depth.numpy()[..., None], E.numpy(), K.numpy())
    assert isinstance(as_np, np.ndarray) and as_np.shape == (2, H, W, 3)
    np.testing.assert_allclose(as_np, pts.numpy(), atol=1e-6)


# --------------------------------------------------------------------------- loading

def test_load_vggt_folder_and_single_file(tmp_path, golden):
    folder = tmp_path / "hub_like"
    folder.mkdir()
    save_file(load_file(str(WEIGHTS)), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(CONFIG))
    images = golden["s2_56x56.images"]
    for model in (load_vggt(folder), load_vggt(WEIGHTS, config=CONFIG),
                  load_vggt(str(WEIGHTS), config=str(FIX / "vggt_tiny_config.json"))):
        assert not model.training
        with torch.no_grad():
            depth = model(images)["depth"]
        torch.testing.assert_close(depth, golden["s2_56x56.depth"], **TOL)
    pt = tmp_path / "model.pt"
    torch.save(load_file(str(WEIGHTS)), pt)
    assert load_vggt(pt, config=CONFIG).aggregator.patch_embed.pos_embed.shape == (1, 17, 32)
    half = load_vggt(folder, dtype=torch.bfloat16)
    assert next(half.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        depth = half(images)["depth"]
    assert depth.dtype == torch.bfloat16
    torch.testing.assert_close(depth.float(), golden["s2_56x56.depth"], rtol=0.1, atol=0.1)


def test_load_vggt_missing_keys_error(tmp_path):
    state = load_file(str(WEIGHTS))
    del state["camera_head.trunk_norm.weight"]
    path = tmp_path / "broken.safetensors"
    save_file(state, str(path))
    with pytest.raises(KeyError, match=r"1 missing.*camera_head\.trunk_norm\.weight") as err:
        load_vggt(path, config=CONFIG)
    assert "broken.safetensors" in str(err.value)
    state = load_file(str(WEIGHTS))
    state["aggregator.bogus"] = torch.zeros(1)
    save_file(state, str(path))
    with pytest.raises(KeyError, match="aggregator.bogus"):
        load_vggt(path, config=CONFIG)


def test_load_vggt_reports_track_head_unused(tmp_path):
    state = load_file(str(WEIGHTS))
    state["track_head.tracker.fmap_norm.weight"] = torch.ones(128)
    path = tmp_path / "with_track.safetensors"
    save_file(state, str(path))
    with pytest.warns(UserWarning, match="track_head"):
        model = load_vggt(path, config=dict(CONFIG, enable_track=True))
    assert model.track_head is None


def test_load_vggt_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_vggt(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_vggt(str(tmp_path / "nope.safetensors"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_vggt(empty)


def test_load_vggt_hub_file_fallbacks(tmp_path, monkeypatch, golden):
    """Hub ids: an optional file (config.json, model.safetensors) that is missing -- on the Hub or,
    offline, in the cache -- is skipped, so a cache holding only model.pt still loads."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    from vggt.hub import _resolve

    pt = tmp_path / "model.pt"
    torch.save(load_file(str(WEIGHTS)), pt)
    calls = []
    # the repo counts as cached (utils/hub.py checks that first); the file fallbacks come after
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo_id, filename, **kw: str(pt))

    def offline_only_pt(repo_id, filename, **kwargs):
        calls.append(filename)
        if filename == "model.pt":
            return str(pt)
        raise LocalEntryNotFoundError(f"{filename} not in cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline_only_pt)
    model = load_vggt("facebook/VGGT-1B", config=CONFIG)
    assert calls == ["config.json", "model.safetensors", "model.pt"]
    with torch.no_grad():
        depth = model(golden["s2_56x56.images"])["depth"]
    torch.testing.assert_close(depth, golden["s2_56x56.depth"], **TOL)

    def online_no_config(repo_id, filename, **kwargs):
        if filename == "model.safetensors":
            return str(WEIGHTS)
        raise EntryNotFoundError(f"{filename} not in repo")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", online_no_config)
    weights, cfg, where = _resolve("facebook/VGGT-1B", None)
    assert weights == WEIGHTS and cfg == {} and where == "hf://facebook/VGGT-1B"  # VGGT-1B defaults

    def offline_nothing(repo_id, filename, **kwargs):
        raise LocalEntryNotFoundError(f"{filename} not in cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline_nothing)
    with pytest.raises(FileNotFoundError, match="model.pt"):
        load_vggt("facebook/VGGT-1B")


def test_write_tiny_vggt_deterministic_and_loadable(tmp_path):
    a = write_tiny_vggt(tmp_path / "a", seed=0, img_size=112)
    b = write_tiny_vggt(tmp_path / "b", seed=0, img_size=112)
    c = write_tiny_vggt(tmp_path / "c", seed=1, img_size=112)
    assert (a / "config.json").read_text() == (b / "config.json").read_text()
    sa, sb, sc = (load_file(str(p / "model.safetensors")) for p in (a, b, c))
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["aggregator.camera_token"], sc["aggregator.camera_token"])
    # non-trivial weights: layer scales and norms are perturbed away from their init
    gamma = sa["aggregator.frame_blocks.0.ls1.gamma"]
    assert gamma.std() > 0.01 and not torch.allclose(gamma, torch.full_like(gamma, 0.01))
    model = load_vggt(a)
    assert model.config["img_size"] == 112 and model.config["embed_dim"] == TINY_CONFIG["embed_dim"]
    with torch.no_grad():
        out = model(torch.rand(3, 3, 56, 84, generator=torch.Generator().manual_seed(0)))
        ref = build_tiny_vggt(seed=0, img_size=112)(out["images"])
    torch.testing.assert_close(out["depth"], ref["depth"])
    extrinsic, intrinsic = pose_encoding_to_extri_intri(out["pose_enc"], (56, 84))
    assert torch.isfinite(intrinsic).all() and (intrinsic[..., 0, 0] > 0).all()
    assert all(torch.isfinite(v).all() for v in out.values() if torch.is_tensor(v))


# --------------------------------------------------------------------------- preprocessing

def test_preprocess_frames_crop_and_pad():
    frames = np.random.default_rng(0).integers(0, 256, (2, 300, 451, 3), dtype=np.uint8)
    crop = preprocess_frames(frames, mode="crop")
    assert crop.shape == (2, 3, 350, 518) and crop.dtype == torch.float32
    assert 0.0 <= crop.min() and crop.max() <= 1.0
    pad = preprocess_frames(frames, mode="pad")
    assert pad.shape == (2, 3, 518, 518)
    assert torch.all(pad[:, :, :84] == 1.0) and torch.all(pad[:, :, -84:] == 1.0)
    tall = preprocess_frames(torch.rand(1, 3, 700, 400), mode="crop")
    assert tall.shape == (1, 3, 518, 518)
    tall_pad = preprocess_frames(torch.rand(1, 3, 700, 400), mode="pad")
    assert tall_pad.shape == (1, 3, 518, 518)
    with pytest.raises(ValueError):
        preprocess_frames(frames, mode="stretch")


def test_preprocess_matches_pil_bicubic():
    PIL = pytest.importorskip("PIL.Image")
    frame = np.random.default_rng(1).integers(0, 256, (144, 176, 3), dtype=np.uint8)
    ours = preprocess_frames(frame[None], mode="crop")[0]
    pil = np.asarray(PIL.fromarray(frame).resize((518, 420), PIL.Resampling.BICUBIC))
    pil = torch.from_numpy(pil.copy()).permute(2, 0, 1).float() / 255.0
    assert ours.shape == pil.shape
    diff = ((ours - pil) * 255).abs().round()
    assert diff.max() <= 2 and (diff > 0).float().mean() < 0.02  # fixed-point rounding only
