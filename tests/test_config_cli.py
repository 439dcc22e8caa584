"""utils/config_cli.py on the three real configs (training, encoding, candidates), the scorer, and the per-model
scripts: strict constants (exit 2 naming the nearest setting), option types from the annotations."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from generate.candidates import CandidateConfig
from generate.candidates_cli import build_arg_parser
from train_dpo.encode import EncodeConfig
from train_dpo.encode_cli import build_encode_argparser
from train_dpo.train_cli import build_train_argparser, train_config_from_args
from train_dpo.video_scorer import build_argparser as build_scorer_argparser
from utils.config_cli import apply_constants, config_from_args
from utils.scripts import load_script, model_script

REPO = Path(__file__).resolve().parents[1]
MODELS = ("CogVideoX-5B_lora", "CogVideoX-I2V-5B_lora", "CogVideoX1.5-5B_lora", "Wan2.2-TI2V-5B_lora")


@pytest.mark.parametrize(
    "build, key, near",
    [
        (build_train_argparser, "LERNING_RATE", "LEARNING_RATE"),
        (build_train_argparser, "motion_treshold", "motion_threshold"),
        (build_encode_argparser, "NUM_FRAME", "NUM_FRAMES"),
        (build_arg_parser, "GUIDANCE", "GUIDANCE_SCALE"),
    ],
)
def test_unknown_key_exits_2_with_the_nearest_name(build, key, near, capsys):
    with pytest.raises(SystemExit) as e:
        build({key: 1})
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"{key} (did you mean {near}?)" in err
    with pytest.raises(SystemExit) as e:
        build({"COMPLETELY_UNRELATED": 1})
    assert e.value.code == 2 and "COMPLETELY_UNRELATED" in capsys.readouterr().err


def test_train_option_types():
    p = build_train_argparser({"BASE_MODEL": "m", "TRAIN_JSON": "t.json", "MOTION_THRESHOLD": None})
    cfg = train_config_from_args(p.parse_args([]))
    assert (cfg.base_model, cfg.motion_threshold, cfg.devices) == ("m", None, "auto")
    assert cfg.gradient_checkpointing is True
    assert cfg.lora_targets == ("to_q", "to_k", "to_v", "to_out.0") and cfg.loggers == ("csv", "tensorboard")
    cfg = train_config_from_args(p.parse_args([
        "--motion_threshold", "0.01", "--metric_threshold", "None", "--global_batch", "none",
        "--grad_accum", "4",
        "--devices", "0,1,3", "--lr", "1e-5", "--lora_targets", "to_q", "to_v", "--loggers",
        "--no_gradient_checkpointing", "--no_progress_bar", "--resume", "auto", "--run_name", "none",
        "--limit_val_batches", "4",
    ]))  # fmt: skip
    assert cfg.motion_threshold == 0.01 and cfg.metric_threshold is None and cfg.global_batch is None
    assert cfg.grad_accum == 4 and isinstance(cfg.grad_accum, int)
    assert cfg.devices == [0, 1, 3] and cfg.learning_rate == 1e-5
    assert cfg.lora_targets == ("to_q", "to_v") and cfg.loggers == ()
    assert cfg.gradient_checkpointing is False and cfg.progress_bar is False
    assert cfg.resume == "auto" and cfg.run_name is None and cfg.limit_val_batches == 4
    cfg = train_config_from_args(p.parse_args(["--devices", "2", "--limit_val_batches", "0.5",
                                               "--objective", "sft"]))  # fmt: skip
    assert cfg.devices == 2 and cfg.limit_val_batches == 0.5 and cfg.objective == "sft"
    # a bool set off by a constant can be turned on again on the command line
    p = build_train_argparser({"GRADIENT_CHECKPOINTING": False})
    assert p.parse_args([]).gradient_checkpointing is False
    assert p.parse_args(["--gradient_checkpointing"]).gradient_checkpointing is True


@pytest.mark.parametrize("argv", [["--devices", "0,x"], ["--metric_mode", "median"], ["--max_steps", "1.5"]])
def test_bad_values_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        build_train_argparser().parse_args(argv)
    assert e.value.code == 2 and argv[0] in capsys.readouterr().err


def test_encode_and_candidate_option_types(capsys):
    p = build_encode_argparser({"BASE_MODEL": "m", "INPUT_JSON": "i.json", "OUTPUT_JSON": "o.json"})
    args = p.parse_args(["--dtype", "none", "--no_vae_tiling", "--overwrite", "--limit_groups", "3",
                         "--base_path", "none"])  # fmt: skip
    cfg = config_from_args(EncodeConfig, args)
    assert (cfg.dtype, cfg.vae_tiling, cfg.vae_slicing, cfg.overwrite) == (None, False, True, True)
    assert cfg.limit_groups == 3 and cfg.base_path is None and cfg.num_frames == 49
    with pytest.raises(SystemExit) as e:  # required settings without a constant
        build_encode_argparser().parse_args([])
    assert e.value.code == 2 and "--base_model" in capsys.readouterr().err

    p = build_arg_parser({"base_model": "m", "prompts_json": "p.json", "output_dir": "o", "KIND": "i2v"})
    cfg = config_from_args(CandidateConfig, p.parse_args(["--num_frames", "17", "--height", "none",
                                                          "--fps", "16"]))  # fmt: skip
    assert (cfg.kind, cfg.num_frames, cfg.height, cfg.fps, cfg.seeds) == ("i2v", 17, None, 16.0, [0, 1, 2, 3])


@pytest.mark.parametrize("step, typo, near", [("04_train", "LERNING_RATE = 1e-5", "LEARNING_RATE"),
                                              ("02_score", "NUM_FRAME = 16", "NUM_FRAMES")])
def test_misspelled_constant_in_a_per_model_script_exits_2(step, typo, near, tmp_path, capsys):
    src = model_script("CogVideoX-5B_lora", step).read_text()
    anchor = "\n\ndef main("
    assert anchor in src
    copy = tmp_path / "train_dpo" / "CogVideoX-5B_lora" / f"{step}.py"
    copy.parent.mkdir(parents=True)
    copy.write_text(src.replace(anchor, f"\n{typo}\n{anchor}", 1))
    with pytest.raises(SystemExit) as e:
        load_script(copy).main(["--max_steps", "1"] if step == "04_train" else [])
    err = capsys.readouterr().err
    name = typo.split()[0]
    assert e.value.code == 2 and f"{name} (did you mean {near}?)" in err


@pytest.mark.parametrize("model_dir", MODELS)
def test_every_script_constant_is_a_setting(model_dir):
    """Each per-model script's constants parse (a typo would exit 2) and the chain of paths holds:
    01 writes what 02 reads, 02 writes what 03 reads, 03 writes what 04 trains on."""
    from utils.scripts import script_constants

    steps = ("01_generate", "02_score", "03_encode", "04_train")
    g = {s: runpy.run_path(str(model_script(model_dir, s))) for s in steps}
    gen = build_arg_parser(script_constants(g["01_generate"])).parse_args([])
    enc = build_encode_argparser(script_constants(g["03_encode"])).parse_args([])
    tr = build_train_argparser(script_constants(g["04_train"])).parse_args([])
    scorer = build_scorer_argparser()
    apply_constants(scorer, script_constants(g["02_score"]))  # the scorer's constants are strict too
    assert scorer.parse_args([]).input_json == g["02_score"]["INPUT_JSON"]
    assert g["02_score"]["INPUT_JSON"] == str(Path(gen.output_dir) / "groups.json")
    assert g["02_score"]["OUTPUT_JSON"] == enc.input_json and enc.output_json == tr.train_json
    assert gen.base_model == enc.base_model == tr.base_model


def test_score_script_passes_its_paths_and_user_flags_win(tmp_path, capsys):
    main = load_script(model_script("CogVideoX-5B_lora", "02_score")).main
    assert main(["--no_lpips", "--output_json", str(tmp_path / "s.json")]) == 2  # nothing generated yet
    assert str(REPO / "outputs" / "candidates" / "CogVideoX-5B" / "groups.json") in capsys.readouterr().err
    mine = ["--input_json", str(tmp_path / "mine.json")]
    assert main(["--no_lpips", *mine, "--output_json", str(tmp_path / "s.json")]) == 2
    assert "mine.json" in capsys.readouterr().err


@pytest.mark.parametrize("constants, name", [({"METRIC_MODE": "mni"}, "METRIC_MODE"),
                                             ({"LOSS_TYPE": "hing"}, "LOSS_TYPE"),
                                             ({"KIND": "iv2"}, "KIND")])
def test_constant_outside_its_choices_exits_2(constants, name, capsys):
    """argparse validates choices of command-line values only: a script constant with a misspelled
    value used to pass silently (METRIC_MODE = "mni" reached the trainer)."""
    build = build_arg_parser if name == "KIND" else build_train_argparser
    with pytest.raises(SystemExit) as e:
        build(constants)
    assert e.value.code == 2 and name in capsys.readouterr().err
    assert build_train_argparser({"METRIC_MODE": "max"}).parse_args([]).metric_mode == "max"


def test_string_constant_of_a_sequence_option_is_one_value():
    """LOGGERS = "csv" is the list ["csv"], not its characters (which the trainer took as loggers c, s, v)."""
    cfg = train_config_from_args(build_train_argparser({"LOGGERS": "csv", "LORA_TARGETS": "to_q"}).parse_args([]))
    assert cfg.loggers == ("csv",) and cfg.lora_targets == ("to_q",)
