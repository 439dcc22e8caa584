"""Model-family registry of the trainer (train_dpo/families/__init__.py) and the family-free module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train_dpo.families import CogVideoXFamily, family_for, load_family

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ("cogvideox-t2v", "cogvideox-i2v", "cogvideox1.5-t2v"))
def test_family_for_picks_cogvideox_for_the_tiny_models(tiny_models, name):
    assert family_for(tiny_models[name]) is CogVideoXFamily  # a folder
    assert family_for(str(tiny_models[name])) is CogVideoXFamily  # a string
    config = json.loads((tiny_models[name] / "transformer" / "config.json").read_text())
    assert family_for(config) is CogVideoXFamily  # a transformer config


def test_family_for_unknown_class_names_it_and_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="'FluxTransformer2DModel'.*CogVideoXTransformer3DModel"):
        family_for({"_class_name": "FluxTransformer2DModel", "in_channels": 64})
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({"_class_name": "UNet3DConditionModel"}))
    with pytest.raises(ValueError, match="UNet3DConditionModel"):
        family_for(tmp_path)
    (tmp_path / "empty_pipeline").mkdir()
    with pytest.raises(FileNotFoundError, match="transformer/config.json"):
        family_for(tmp_path / "empty_pipeline")  # a folder without transformer/config.json


def test_lightning_module_names_no_model_family():
    text = (REPO / "train_dpo" / "lightning_module.py").read_text()
    assert "cogvideo" not in text.lower()


def test_timestep_input_reaches_wan_and_is_an_error_for_cogvideox(tiny_models, tiny_wan, tmp_path):
    """DPOTrainConfig.timestep_input -> WanFamily.load; a CogVideoX run with it set fails, naming it."""
    import torch

    from train_dpo.config import DPOTrainConfig
    from train_dpo.train import train
    from train_dpo.train_cli import build_train_argparser, train_config_from_args

    assert load_family(tiny_wan, torch.float32)[1].timestep_input == "sigma"  # None: the family's default
    assert load_family(tiny_wan, torch.float32, timestep_input="released")[1].timestep_input == "released"
    with pytest.raises(ValueError, match="timestep_input is not a setting of the cogvideox family"):
        load_family(tiny_models["cogvideox-t2v"], torch.float32, timestep_input="sigma")
    cfg = train_config_from_args(build_train_argparser().parse_args(
        ["--base_model", str(tiny_models["cogvideox-t2v"]), "--train_json", str(tmp_path / "x.json"),
         "--output_dir", str(tmp_path / "out"), "--timestep_input", "released"]))
    assert cfg.timestep_input == "released" and DPOTrainConfig().timestep_input is None
    with pytest.raises(ValueError, match="timestep_input is not a setting of the cogvideox family"):
        train(cfg)  # before any data is read (x.json does not exist)
    with pytest.raises(SystemExit):
        build_train_argparser().parse_args(["--timestep_input", "shifted"])
