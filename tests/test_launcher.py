"""utils/launcher.py: shard index/count and local GPU from torchrun's or srun's environment."""

import pytest

from utils.launcher import LaunchInfo, launch_info


def test_launch_info_sources_and_precedence():
    assert launch_info({}) == LaunchInfo(0, 1, None, None)
    assert launch_info({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3"}) == LaunchInfo(3, 8, 3, "torchrun")
    srun = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "16", "SLURM_LOCALID": "1", "SLURM_NTASKS": "16"}
    assert launch_info(srun) == LaunchInfo(5, 16, 1, "srun")
    # torchrun under srun: torchrun's ranks are the finer split
    assert launch_info({**srun, "RANK": "7", "WORLD_SIZE": "32"}).shard_index == 7
    # an sbatch script outside srun has SLURM_NTASKS of the allocation but is one process
    assert launch_info({"SLURM_PROCID": "0", "SLURM_NTASKS": "16"}) == LaunchInfo()
    with pytest.raises(ValueError, match="RANK=4"):
        launch_info({"RANK": "4", "WORLD_SIZE": "4"})


def test_generation_and_encoding_read_the_launcher(monkeypatch, tmp_path, caplog):
    from generate.candidates_cli import build_arg_parser
    from train_dpo.encode_cli import build_encode_argparser

    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    args = build_arg_parser({"base_model": "m", "prompts_json": "p.json", "output_dir": "o"}).parse_args([])
    assert (args.shard_index, args.num_shards) == (2, 4)
    args = build_arg_parser({"base_model": "m", "prompts_json": "p.json", "output_dir": "o"}).parse_args(
        ["--num_shards", "1", "--shard_index", "0"])
    assert (args.shard_index, args.num_shards) == (0, 1)  # explicit flags win
    # encoding is sharded like generation and scoring (utils.jobs): each task encodes its own block
    args = build_encode_argparser({"base_model": "m", "input_json": "i.json", "output_json": "o.json"}).parse_args([])
    assert (args.shard_index, args.num_shards, args.launch_error) == (2, 4, None)
