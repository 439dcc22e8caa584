"""utils/lora.py: the released PEFT format, validation errors, and what scale/merge do to the video."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from generate.pipeline import generate_video, load_pipeline
from utils.lora import (
    LORA_TARGET_MODULES,
    LoraAdapterError,
    get_lora_state_dict,
    make_lora_config,
    save_lora_adapter,
    validate_adapter_dir,
)
from utils.lora_apply import load_lora_adapter

REPO = Path(__file__).resolve().parent.parent
RELEASED = {n: REPO / "checkpoints" / f"VideoGPA-{n}-lora" for n in ("T2V", "I2V", "T2V1.5")}
GEN = dict(seed=3, num_frames=9, height=64, width=96, num_inference_steps=2, guidance_scale=6.0)
PROMPT = "a camera orbits a stone gateway"


def _transformer(tiny_models, kind="cogvideox-t2v"):
    from diffusers import CogVideoXTransformer3DModel

    return CogVideoXTransformer3DModel.from_pretrained(str(tiny_models[kind] / "transformer"))


def _random_adapter(folder: Path, transformer, rank=64, b_scale=0.05, seed=0, config_from=RELEASED["T2V"]) -> Path:
    """Released adapter_config.json + random adapter_model.safetensors with the keys of ``transformer``."""
    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True)
    shutil.copyfile(config_from / "adapter_config.json", folder / "adapter_config.json")
    state = {}
    for name, m in transformer.named_modules():
        if isinstance(m, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in LORA_TARGET_MODULES):
            state[f"base_model.model.{name}.lora_A.weight"] = torch.randn(rank, m.in_features, generator=g) * 0.1
            state[f"base_model.model.{name}.lora_B.weight"] = torch.randn(m.out_features, rank, generator=g) * b_scale
    assert len(state) == 2 * 4 * transformer.config.num_layers
    save_file(state, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    return folder


# ------------------------------------------------------------------------------------------------
# config and format
# ------------------------------------------------------------------------------------------------


def test_make_lora_config_matches_released_configs():
    cfg = make_lora_config()
    for folder in RELEASED.values():
        released = json.loads((folder / "adapter_config.json").read_text())
        assert released["peft_type"] == cfg.peft_type.value == "LORA"
        assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout, cfg.bias) == (
            released["r"], released["lora_alpha"], released["lora_dropout"], released["bias"])
        assert set(cfg.target_modules) == set(released["target_modules"]) == set(LORA_TARGET_MODULES)
        assert cfg.init_lora_weights == released["init_lora_weights"]
        assert cfg.use_dora is released["use_dora"] is False and cfg.use_rslora is released["use_rslora"] is False


@pytest.mark.parametrize("how", ["injected", "peft_model"])
def test_save_writes_released_format_and_round_trips(how, tiny_models, tmp_path):
    from peft import get_peft_model

    t = _transformer(tiny_models)
    cfg = make_lora_config(rank=8, alpha=16, init_lora_weights=False)  # random A and B
    if how == "injected":
        t.add_adapter(cfg)  # diffusers' PeftAdapterMixin, as a trainer would
        model = t
    else:
        model = get_peft_model(t, cfg)
    out = tmp_path / "adapter"
    (out).mkdir()
    (out / "stale.txt").write_text("replaced atomically")
    assert save_lora_adapter(model, out) == out
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"], "temp folders left behind"

    written = json.loads((out / "adapter_config.json").read_text())
    for folder in RELEASED.values():
        released = json.loads((folder / "adapter_config.json").read_text())
        missing = set(released) - set(written) - {"peft_version"}  # keys older/newer peft versions add
        assert not missing, f"keys of {folder.name} missing: {missing}"
        assert written["auto_mapping"] == released["auto_mapping"]
    assert written["inference_mode"] is True and written["task_type"] is None
    assert (written["r"], written["lora_alpha"]) == (8, 16)

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert f.metadata() == {"format": "pt"}
    assert len(keys) == 16 and all(k.startswith("base_model.model.transformer_blocks.") for k in keys)
    assert "base_model.model.transformer_blocks.0.attn1.to_out.0.lora_A.weight" in keys
    assert validate_adapter_dir(out, _transformer(tiny_models)) == out

    fresh = load_lora_adapter(_transformer(tiny_models), out)
    ours, theirs = get_lora_state_dict(fresh), get_lora_state_dict(model)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_save_without_adapter_is_an_error(tiny_models, tmp_path):
    with pytest.raises(ValueError, match="no LoRA adapter"):
        save_lora_adapter(_transformer(tiny_models), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_released_config_with_random_rank64_weights_loads(tiny_models, tmp_path):
    for name, folder in RELEASED.items():
        t = _transformer(tiny_models)
        d = _random_adapter(tmp_path / name, t, config_from=folder)
        assert validate_adapter_dir(d, t) == d
        load_lora_adapter(t, d)
        q = t.transformer_blocks[1].attn1.to_q
        assert q.r["videogpa"] == 64 and q.scaling["videogpa"] == pytest.approx(2.0)


# ------------------------------------------------------------------------------------------------
# validation errors
# ------------------------------------------------------------------------------------------------


def test_validation_errors_name_the_path(tiny_models, tmp_path):
    t = _transformer(tiny_models)
    good = _random_adapter(tmp_path / "good", t)

    with pytest.raises(LoraAdapterError, match="does not exist.*nope"):
        validate_adapter_dir(tmp_path / "nope")

    def variant(name, edit):
        d = tmp_path / name
        shutil.copytree(good, d)
        edit(d)
        return d

    d = variant("no_config", lambda d: (d / "adapter_config.json").unlink())
    with pytest.raises(LoraAdapterError, match=r"config not found: .*no_config"):
        validate_adapter_dir(d)
    d = variant("bad_json", lambda d: (d / "adapter_config.json").write_text("{not json"))
    with pytest.raises(LoraAdapterError, match=r"malformed JSON .*bad_json.*line 1"):
        validate_adapter_dir(d)

    def not_lora(d):
        cfg = json.loads((d / "adapter_config.json").read_text())
        cfg["peft_type"] = "LOHA"
        (d / "adapter_config.json").write_text(json.dumps(cfg))

    with pytest.raises(LoraAdapterError, match=r"not_lora.*peft_type is 'LOHA'"):
        validate_adapter_dir(variant("not_lora", not_lora))

    # the released folders as shipped (config only) point at download_ckpt.py
    d = variant("VideoGPA-T2V-lora", lambda d: (d / "adapter_model.safetensors").unlink())
    with pytest.raises(LoraAdapterError, match=r"weights not found: .*VideoGPA-T2V-lora.*download_ckpt\.py"):
        validate_adapter_dir(d)
    d = variant("garbage", lambda d: (d / "adapter_model.safetensors").write_bytes(b"\x07" * 100))
    with pytest.raises(LoraAdapterError, match=r"cannot read LoRA adapter weights .*garbage"):
        validate_adapter_dir(d)
    d = variant("diffusers_keys", lambda d: save_file({"transformer.x.lora_A.weight": torch.zeros(4, 4)},
                                                      str(d / "adapter_model.safetensors")))
    with pytest.raises(LoraAdapterError, match=r"diffusers_keys.*not PEFT LoRA keys"):
        validate_adapter_dir(d)

    # keys/shapes that do not fit this transformer: the i2v tiny transformer has the same layout, so
    # use a wrong in_features and a missing key instead
    def wrong_shape(d):
        sd = {k: v for k, v in _load(good).items()}
        sd["base_model.model.transformer_blocks.0.attn1.to_q.lora_A.weight"] = torch.zeros(64, 7)
        del sd["base_model.model.transformer_blocks.1.attn1.to_v.lora_B.weight"]
        sd["base_model.model.norm_out.linear.lora_A.weight"] = torch.zeros(64, 32)
        save_file(sd, str(d / "adapter_model.safetensors"))

    d = variant("mismatch", wrong_shape)
    validate_adapter_dir(d)  # fine without a model to compare to
    with pytest.raises(LoraAdapterError) as e:
        validate_adapter_dir(d, t)
    msg = str(e.value)
    assert "mismatch" in msg and "to_q.lora_A.weight' has shape [64, 7], expected [64, 32]" in msg
    assert "missing 'base_model.model.transformer_blocks.1.attn1.to_v.lora_B.weight'" in msg
    assert "norm_out.linear.lora_A.weight' names no target module" in msg
    with pytest.raises(LoraAdapterError):
        load_lora_adapter(t, d)
    assert not any("lora" in n for n, _ in t.named_modules()), "failed load must not touch the model"


def _load(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


# ------------------------------------------------------------------------------------------------
# effect on the generated video
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adapter(tiny_models, tmp_path_factory):
    return _random_adapter(tmp_path_factory.mktemp("lora") / "adapter", _transformer(tiny_models))


@pytest.fixture(scope="module")
def base_frames(tiny_models):
    pipe = load_pipeline(tiny_models["cogvideox-t2v"], "t2v", progress_bar=False)
    return generate_video(pipe, PROMPT, **GEN)


def _frames(tiny_models, **lora):
    pipe = load_pipeline(tiny_models["cogvideox-t2v"], "t2v", progress_bar=False, **lora)
    return generate_video(pipe, PROMPT, **GEN)


def test_scale_zero_reproduces_base_exactly(tiny_models, adapter, base_frames):
    assert base_frames.shape == (9, 64, 96, 3) and base_frames.dtype == np.uint8
    assert np.array_equal(_frames(tiny_models, lora_path=adapter, lora_scale=0.0), base_frames)


def test_adapter_changes_video_and_merge_matches_unmerged(tiny_models, adapter, base_frames):
    unmerged = _frames(tiny_models, lora_path=adapter)
    diff = np.abs(unmerged.astype(int) - base_frames.astype(int))
    assert diff.mean() > 1.0, "a LoRA with non-zero B must change the video"
    merged = _frames(tiny_models, lora_path=adapter, merge_lora=True)
    assert np.abs(merged.astype(int) - unmerged.astype(int)).max() <= 2
    half = _frames(tiny_models, lora_path=adapter, lora_scale=0.5)
    assert 0 < np.abs(half.astype(int) - base_frames.astype(int)).mean() < diff.mean() * 2


def test_merge_folds_delta_into_weights(tiny_models, adapter):
    base = _transformer(tiny_models)
    merged = load_lora_adapter(_transformer(tiny_models), adapter, scale=0.5, merge=True)
    assert not any("lora" in n for n, _ in merged.named_modules())
    assert getattr(merged, "peft_config", None) is None
    sd = _load(adapter)
    name = "transformer_blocks.0.attn1.to_out.0"
    a, b = sd[f"base_model.model.{name}.lora_A.weight"], sd[f"base_model.model.{name}.lora_B.weight"]
    expected = base.get_submodule(name).weight + 0.5 * (128 / 64) * b @ a
    torch.testing.assert_close(merged.get_submodule(name).weight, expected, rtol=1e-5, atol=1e-5)
