"""A training killed by a real signal and resumed ends with the adapter of an uninterrupted run.

04_train.py runs in a subprocess and is SIGKILLed as soon as its first resumable checkpoint
(lightning/last.ckpt) exists, mid-epoch (3 pairs, batch 1, checkpoints every 2 steps); the re-run
with ``--resume auto`` must produce a final adapter tensor-equal to a run that was never stopped.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from test_trainer import make_synthetic_preferences
from utils.scripts import model_script, run_script

REPO = Path(__file__).resolve().parents[1]
STEPS = 8


def _args(base_model, data, out):
    return ["--base_model", str(base_model), "--train_json", str(data), "--output_dir", str(out),
            "--max_steps", str(STEPS), "--checkpoint_every", "2", "--lora_rank", "4", "--lora_alpha", "8",
            "--learning_rate", "1e-3", "--warmup_steps", "0", "--batch_size", "1", "--grad_accum", "1",
            "--val_fraction", "0", "--no_progress_bar", "--loggers", "csv"]


def test_killed_training_resumes_to_the_uninterrupted_adapter(tiny_models, tmp_path):
    data = make_synthetic_preferences(tmp_path / "data", n_groups=3, shape=(3, 4, 8, 12))
    base = tiny_models["cogvideox-t2v"]
    script = model_script("CogVideoX-5B_lora", "04_train")
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), *_args(base, data, killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    last = killed / "lightning" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not last.is_file():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "final_lora").exists()  # it really died during training
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert 0 < step < STEPS and step % 3  # mid-epoch: 3 pairs per epoch

    assert run_script(script, _args(base, data, killed) + ["--resume", "auto"]) == 0
    assert run_script(script, _args(base, data, tmp_path / "uninterrupted")) == 0
    got = load_file(killed / "final_lora" / "adapter_model.safetensors")
    want = load_file(tmp_path / "uninterrupted" / "final_lora" / "adapter_model.safetensors")
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
