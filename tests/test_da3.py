"""Tests of the from-scratch Depth Anything 3 (depth_anything_3/): golden numbers of the reference
implementation (4 cases), sensitivity to deliberately wrong details, the DA3-Large checkpoint
layout, loading, preprocessing, camera utilities and the scorer predictor. CPU, seconds."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from depth_anything_3 import (build_da3, denormalize_to_uint8, load_da3, normalize_images,
                              preprocess_frames, resize_frames)
from depth_anything_3.hub import tied_parameter_names
from depth_anything_3.model import fusion, vision_transformer
from depth_anything_3.preprocess import processed_size
from depth_anything_3.tiny import build_tiny_da3, write_tiny_da3
from depth_anything_3.utils.cameras import invert_rigid, normalize_extrinsics
from vggt.utils.geometry import unproject_depth_map_to_point_map
from vggt.utils.rotation import quat_to_mat

FIX = Path(__file__).parent / "fixtures" / "da3"
CONFIG = json.loads((FIX / "da3_tiny_config.json").read_text())
WEIGHTS = FIX / "da3_tiny_weights.safetensors"
CASES = ["s3_56x70", "s2_42x42", "s10_28x42", "s3_56x70_posed"]
HEAD_KEYS = ["depth", "depth_conf", "ray", "ray_conf", "pose_enc", "extrinsics", "intrinsics"]
TOL = dict(rtol=1e-4, atol=1e-4)
VIDEO = Path(__file__).parent / "fixtures" / "videos" / "bikes.mp4"


@pytest.fixture(scope="module")
def golden():
    return load_file(str(FIX / "da3_tiny_golden.safetensors"))


@pytest.fixture(scope="module")
def tiny_model():
    return load_da3(WEIGHTS, config=CONFIG)


def _cameras(golden, case):
    if not case.endswith("_posed"):
        return {}
    return {"extrinsics": golden[f"{case}.input_extrinsics"],
            "intrinsics": golden[f"{case}.input_intrinsics"]}


def _run(model, golden, case):
    with torch.no_grad():
        return model(golden[f"{case}.images_normalized"], **_cameras(golden, case))


def _worst(actual, expected):
    """Largest |a - e| / (atol + rtol |e|): <= 1 means within tolerance."""
    return float(((actual - expected).abs() / (TOL["atol"] + TOL["rtol"] * expected.abs())).max())


# --------------------------------------------------------------------------- golden numbers

@pytest.mark.parametrize("case", CASES)
def test_matches_reference_golden(tiny_model, golden, case):
    out = _run(tiny_model, golden, case)
    for key in HEAD_KEYS:
        torch.testing.assert_close(out[key], golden[f"{case}.{key}"], **TOL, msg=f"{case}.{key}")
    points = unproject_depth_map_to_point_map(out["depth"][0], out["extrinsics"][0], out["intrinsics"][0])
    torch.testing.assert_close(points, golden[f"{case}.world_points_from_depth"], **TOL)
    if f"{case}.ref_view_idx" in golden:
        assert torch.equal(out["ref_view_idx"], golden[f"{case}.ref_view_idx"])
    else:
        assert "ref_view_idx" not in out

    net = tiny_model.model
    cams = _cameras(golden, case)
    with torch.no_grad():
        token = net.cam_enc(cams["extrinsics"], cams["intrinsics"], out["depth"].shape[-2:]) if cams else None
        feats, cam_feats, _ = net.backbone(golden[f"{case}.images_normalized"], cam_token=token)
    if cams:
        torch.testing.assert_close(token, golden[f"{case}.cam_enc_tokens"], **TOL)
    for i in range(4):
        torch.testing.assert_close(feats[i], golden[f"{case}.backbone_feat{i}"], **TOL)
        torch.testing.assert_close(cam_feats[i], golden[f"{case}.backbone_cam_token{i}"], **TOL)


def _norm_both_halves(self, tokens):
    C = self.embed_dim
    return torch.cat([self.norm(tokens[..., :C]), self.norm(tokens[..., C:])], dim=-1)[:, :, 1:]


def _vggt_style_rcu(self, x):
    x = torch.relu(x)
    return x + self.conv2(torch.relu(self.conv1(x)))


def _always_first_view(tokens, strategy="saddle_balanced"):
    return torch.zeros(tokens.shape[0], dtype=torch.long)


@pytest.mark.parametrize("case,target,attr,wrong", [
    ("s3_56x70", vision_transformer.DinoVisionTransformer, "readout", _norm_both_halves),
    ("s3_56x70", fusion.ResidualConvUnit, "forward", _vggt_style_rcu),
    ("s10_28x42", vision_transformer, "select_reference_view", _always_first_view),
    ("s3_56x70", "vit", "interpolate_offset", 0.0),
])
def test_wrong_detail_fails_golden(tiny_model, golden, monkeypatch, case, target, attr, wrong):
    """Final norm on both halves, VGGT's residual unit (ReLU on the skip path), no reference-view
    selection, a position table resampled by size instead of scale factor: each is caught.
    (Swapping instead of shifting the views is not a detail that matters: apart from the
    reference camera token, both attention kinds are equivariant to the order of the views.)"""
    monkeypatch.setattr(tiny_model.model.backbone.pretrained if target == "vit" else target, attr, wrong)
    out = _run(tiny_model, golden, case)
    worst = max(_worst(out[k], golden[f"{case}.{k}"]) for k in HEAD_KEYS)
    assert worst > 5, f"perturbation {attr} not detected (worst error {worst:.2f} x tolerance)"


def test_head_chunking_and_unbatched_input(tiny_model, golden):
    x = golden["s3_56x70.images_normalized"]
    with torch.no_grad():
        whole = tiny_model(x, frames_chunk_size=None)
        chunked = tiny_model(x[0], frames_chunk_size=2)
    for key in ("depth", "ray"):
        torch.testing.assert_close(chunked[key], whole[key], rtol=1e-5, atol=1e-5)


def test_bf16_autocast_backbone_keeps_head_fp32(tiny_model, golden):
    with torch.no_grad():
        out = tiny_model(golden["s3_56x70.images_normalized"], autocast_dtype=torch.bfloat16)
    for key in HEAD_KEYS:
        ref = golden[f"s3_56x70.{key}"]
        assert out[key].dtype == torch.float32, key
        assert float((out[key] - ref).abs().max()) < 0.05 * float(ref.abs().max()), key


def test_rejects_bad_inputs(tiny_model, golden):
    with pytest.raises(ValueError, match="multiple of 14"):
        tiny_model(torch.rand(1, 2, 3, 50, 56))
    with pytest.raises(ValueError, match="both extrinsics and intrinsics"):
        tiny_model(golden["s3_56x70.images_normalized"], extrinsics=golden["s3_56x70_posed.input_extrinsics"])
    with pytest.raises(ValueError, match="unknown reference-view strategy"):
        tiny_model(golden["s3_56x70.images_normalized"], ref_view_strategy="best")


# --------------------------------------------------------------------------- checkpoint layout

def test_da3_large_state_dict_matches_release_manifest():
    manifest = json.loads((FIX / "da3_large_state_dict_manifest.json").read_text())
    for config in (manifest["config"], {"model_name": "da3-large"}):
        with torch.device("meta"):
            model = build_da3(config)
        ours = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert list(ours) == list(manifest["state_dict"])  # names, in order (incl. 6 aliases)
        assert ours == manifest["state_dict"]
        assert sum(p.numel() for p in model.parameters()) == manifest["total_params"]  # unique
        tied = {g[0]: g[1:] for g in tied_parameter_names(model)}
        assert tied == manifest["tied_aliases"]


def test_build_da3_rejects_misspelled_keys():
    with pytest.raises(ValueError, match="alt_strat"):
        build_da3({**CONFIG, "backbone": {**CONFIG["backbone"], "alt_strat": 2}})
    with pytest.raises(ValueError, match="heads"):
        build_da3({**CONFIG, "heads": {}})
    with pytest.raises(ValueError, match="not implemented"):
        build_da3({"model_name": "da3-giant"})


def test_load_da3_folder_prefixless_and_dropped_aliases(tmp_path, golden):
    """save_pretrained drops output_conv2_aux.{1,2,3}.2.*; a bare-net state dict has no prefix."""
    state = load_file(str(WEIGHTS))
    dropped = {k: v for k, v in state.items() if not any(f"output_conv2_aux.{i}.2." in k for i in (1, 2, 3))}
    assert len(state) - len(dropped) == 6
    folder = tmp_path / "da3"
    folder.mkdir()
    save_file(dropped, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(CONFIG))
    bare = tmp_path / "bare.safetensors"
    save_file({k[len("model."):]: v for k, v in state.items()}, str(bare))
    x = golden["s2_42x42.images_normalized"]
    for model in (load_da3(folder), load_da3(bare, config=str(FIX / "da3_tiny_config.json"))):
        assert not any(p.requires_grad for p in model.parameters()) and not model.training
        with torch.no_grad():
            torch.testing.assert_close(model(x)["depth"], golden["s2_42x42.depth"], **TOL)

    bad = dict(state)
    bad["model.head.scratch.output_conv2_aux.2.2.bias"] = bad["model.head.scratch.output_conv2_aux.2.2.bias"] + 1
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="tied parameters"):
        load_da3(tmp_path / "bad.safetensors", config=CONFIG)
    missing = {k: v for k, v in state.items() if k != "model.head.norm.weight"}
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(KeyError, match="1 missing"):
        load_da3(tmp_path / "missing.safetensors", config=CONFIG)
    with pytest.raises(FileNotFoundError):
        load_da3(tmp_path / "nope.safetensors")


def test_load_da3_from_hub_id(tmp_path, monkeypatch, golden):
    """Hub ids download config.json (optional) and model.safetensors; a hub config that only
    names a preset resolves to it; a repo without weights is a FileNotFoundError."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    from depth_anything_3.hub import _hub_config, _resolve

    cfg_file = tmp_path / "config.json"
    cfg_file.write_text(json.dumps(CONFIG))
    calls = []

    def serve(repo_id, filename, **kwargs):
        calls.append((repo_id, filename))
        return str({"config.json": cfg_file, "model.safetensors": WEIGHTS}[filename])

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", serve)
    model = load_da3("depth-anything/DA3-TINY")
    assert calls == [("depth-anything/DA3-TINY", "config.json"), ("depth-anything/DA3-TINY", "model.safetensors")]
    with torch.no_grad():
        torch.testing.assert_close(model(golden["s2_42x42.images_normalized"])["depth"],
                                   golden["s2_42x42.depth"], **TOL)

    def no_config(repo_id, filename, **kwargs):
        if filename == "model.safetensors":
            return str(WEIGHTS)
        raise EntryNotFoundError(f"{filename} not in repo")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_config)
    weights, cfg, where = _resolve("depth-anything/DA3-LARGE", None)
    assert weights == WEIGHTS and cfg == {} and where == "hf://depth-anything/DA3-LARGE"
    assert _hub_config(cfg, where) == {"model_name": "da3-large"}
    assert _hub_config({"model_name": "DA3-BASE"}, where) == {"model_name": "DA3-BASE"}

    def offline_nothing(repo_id, filename, **kwargs):
        raise LocalEntryNotFoundError(f"{filename} not in cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline_nothing)
    with pytest.raises(FileNotFoundError, match="model.pt"):
        load_da3("depth-anything/DA3-LARGE")


def test_tiny_builder_roundtrip(tmp_path):
    folder = write_tiny_da3(tmp_path / "tiny", seed=3)
    model = load_da3(folder)
    ref = build_tiny_da3(seed=3)
    x = torch.randn(1, 2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(x), ref(x)
    assert torch.equal(a["depth"], b["depth"]) and torch.isfinite(a["intrinsics"]).all()
    assert (a["intrinsics"][..., 0, 0] > 0).all()


# --------------------------------------------------------------------------- cameras

def test_extrinsics_are_inverse_of_pose_encoding(tiny_model, golden):
    """pose_enc is camera-to-world: extrinsics [R^T | -R^T t] with R = quat_to_mat(q)."""
    pe = golden["s3_56x70.pose_enc"][0].double()
    R, t = quat_to_mat(pe[:, 3:7]), pe[:, :3]
    expected = torch.cat([R.transpose(1, 2), -(R.transpose(1, 2) @ t[..., None])], dim=-1)
    torch.testing.assert_close(expected.float(), golden["s3_56x70.extrinsics"][0], **TOL)
    E = invert_rigid(invert_rigid(expected))
    torch.testing.assert_close(E, expected)


def test_normalize_extrinsics_first_view_identity_median_unit():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 5, 4, generator=g, dtype=torch.float64)
    w2c = torch.eye(4, dtype=torch.float64).repeat(1, 5, 1, 1)
    w2c[..., :3, :3] = quat_to_mat(q)
    w2c[..., :3, 3] = 3 * torch.randn(1, 5, 3, generator=g, dtype=torch.float64)
    out = normalize_extrinsics(w2c)
    torch.testing.assert_close(out[0, 0], torch.eye(4, dtype=torch.float64))
    centres = invert_rigid(out)[..., :3, 3].norm(dim=-1)
    assert abs(float(centres.median()) - 1.0) < 1e-9
    # relative poses are preserved up to the scale: R_i R_0^T
    torch.testing.assert_close(out[0, 3, :3, :3], w2c[0, 3, :3, :3] @ w2c[0, 0, :3, :3].T)


# --------------------------------------------------------------------------- preprocessing

def test_preprocess_sizes():
    assert processed_size(518, 518) == ((504, 504), (504, 504))
    assert processed_size(720, 1280) == ((284, 504), (280, 504))  # round(283.5) = 284 -> 280
    assert processed_size(300, 400) == ((378, 504), (378, 504))  # enlarged (cubic)
    assert processed_size(504, 800, method="lower_bound_resize") == ((504, 800), (504, 798))
    with pytest.raises(ValueError):
        processed_size(10, 10, method="crop")


def test_resize_matches_hand_area_average():
    """OpenCV INTER_AREA equals a box average we compute by hand: integer factors 2 and 3, and
    the fractional 518 -> 504 of VideoGPA's frames (overlap-weighted box filter), rounded half up."""
    rng = np.random.default_rng(0)
    for (H, W), k in (((1008, 756), 2), ((1512, 1134), 3)):
        frame = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        expect = frame.reshape(H // k, k, W // k, k, 3).astype(np.float64).mean(axis=(1, 3))
        assert np.array_equal(resize_frames(frame[None])[0], np.floor(expect + 0.5).astype(np.uint8))

    def box_matrix(n_in, n_out):
        s = n_in / n_out
        A = np.zeros((n_out, n_in))
        for i in range(n_out):
            lo, hi = i * s, (i + 1) * s
            for j in range(int(np.floor(lo)), min(n_in, int(np.ceil(hi)))):
                A[i, j] = max(0.0, min(hi, j + 1) - max(lo, j)) / s
        return A

    frame = rng.integers(0, 256, (518, 518, 3), dtype=np.uint8)
    A = box_matrix(518, 504)
    expect = np.stack([A @ frame[..., c].astype(np.float64) @ A.T for c in range(3)], axis=-1)
    assert np.array_equal(resize_frames([frame])[0], np.floor(expect + 0.5).astype(np.uint8))


def test_normalisation_and_processed_images():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 56, 42, 3), dtype=np.uint8)
    x = preprocess_frames(frames, process_res=56)
    assert x.shape == (2, 3, 56, 42) and x.dtype == torch.float32
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    expect = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 - mean) / std
    torch.testing.assert_close(x, expect, rtol=0, atol=1e-6)
    torch.testing.assert_close(normalize_images(expect * std + mean), expect, rtol=0, atol=1e-6)
    back = denormalize_to_uint8(x).astype(int)
    assert ((frames.astype(int) - back) >= 0).all() and ((frames.astype(int) - back) <= 1).all()
    with pytest.raises(ValueError, match="different sizes"):
        resize_frames([frames[0], frames[1, :28]])


# --------------------------------------------------------------------------- scorer predictor

def test_predictor_on_real_video_is_deterministic(tiny_model):
    from scoring.da3_predictor import DA3Predictor
    from scoring.scorer import VideoProcessor, frames_to_tensor
    from utils.video_utils import sample_uniform_frames

    frames = resize_frames(sample_uniform_frames(VIDEO, 3, size=98), process_res=84)  # area 98 -> 84
    assert frames.shape == (3, 84, 84, 3)
    predictor = DA3Predictor(tiny_model, device="cpu")
    images = frames_to_tensor(frames)
    first, second = predictor.predict(images), predictor.predict(images)
    for name in ("depth", "depth_conf", "extrinsic", "intrinsic"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    assert first.depth.shape == (3, 84, 84) and (first.depth > 0).all() and (first.depth_conf > 1).all()
    torch.testing.assert_close(first.intrinsic[:, :2, 2], torch.full((3, 2), 42.0))
    R = first.extrinsic[:, :, :3]
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(3, 3, 3), rtol=0, atol=1e-5)

    assert torch.equal(first.world_points, second.world_points)

    results = [VideoProcessor(predictor, lpips=None, points_source=src).score_frames(frames)
               for src in ("point_head", "depth")]  # the same cloud: DA3's point map is its depth
    assert results[0]["consistency_score"] == results[1]["consistency_score"]
    assert np.isfinite(results[0]["consistency_score"]) and results[0]["num_points"] == 3 * 84 * 84
    with pytest.raises(ValueError, match="multiples of 14"):
        predictor.predict(torch.rand(2, 3, 50, 56))


def test_predictor_matches_golden(tiny_model, golden):
    """Images in [0, 1] -> GeometryPrediction with the reference's depth, cameras and VideoGPA's
    world_points_from_depth."""
    from scoring.da3_predictor import DA3Predictor

    case = "s10_28x42"
    pred = DA3Predictor(tiny_model, device="cpu").predict(golden[f"{case}.images"][0])
    for name, key in (("depth", "depth"), ("depth_conf", "depth_conf"), ("extrinsic", "extrinsics"),
                      ("intrinsic", "intrinsics")):
        torch.testing.assert_close(getattr(pred, name), golden[f"{case}.{key}"][0], **TOL)
    torch.testing.assert_close(pred.world_points, golden[f"{case}.world_points_from_depth"], **TOL)
