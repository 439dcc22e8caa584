"""Step 4 of the CogVideoX1.5-5B text-to-video DPO recipe: Diffusion-DPO LoRA training.

    python train_dpo/CogVideoX1.5-5B_lora/03_train.py                            # 1 GPU / all GPUs
    python train_dpo/CogVideoX1.5-5B_lora/03_train.py --devices 8 --num_nodes 2  # DDP, per node
    python train_dpo/CogVideoX1.5-5B_lora/03_train.py --resume auto              # continue a run

Writes OUTPUT_DIR/checkpoint-<step>/ and OUTPUT_DIR/final_lora/ (PEFT adapters in the format of the
released VideoGPA LoRAs: load with ``generate/t2v_inference.py --lora_path``),
OUTPUT_DIR/lightning/last.ckpt (resume), CSV + TensorBoard logs. Defaults: the released VideoGPA
training settings (upstream Hongyang-Du/VideoGPA ``train_dpo/CogVideoX1.5-5B_lora/03_train.py``;
the README lists every default next to the released value). GLOBAL_BATCH pairs per optimiser
step on any number of GPUs: the gradient accumulation is GLOBAL_BATCH / (GPUs x nodes x BATCH_SIZE).
Shared code: ``train_dpo/trainer.py`` (model), ``train_dpo/dataset.py`` (pairs),
``train_dpo/loss.py`` (loss).
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from utils.scripts import script_defaults  # noqa: E402

# --- configuration (every value can be overridden on the command line) ---
BASE_MODEL = "THUDM/CogVideoX1.5-5B"
TRAIN_JSON = str(
    REPO_ROOT / "outputs" / "candidates" / "CogVideoX1.5-5B" / "groups_encoded.json"
)  # from 02_encode.py
BASE_PATH = None  # JSON paths are relative to this; None: the folder of TRAIN_JSON
OUTPUT_DIR = str(REPO_ROOT / "outputs" / "dpo" / "CogVideoX1.5-5B_lora")
# preference pairs: per group winner = best, loser = worst by METRIC_NAME
METRIC_NAME = "consistency_score"
METRIC_MODE = "min"  # lower consistency_score = more 3-D consistent
MIN_GAP = 0.05  # |metric(winner) - metric(loser)| >= MIN_GAP
METRIC_THRESHOLD = None  # winner must have metric <= this; None: off (released: defined 0.8, never applied)
MOTION_THRESHOLD = 0.001  # videos with MOTION_METRIC below this are dropped
MOTION_METRIC = "motion_norm_released"  # released filter (raw extrinsic t); "motion_norm": camera centres
VAL_FRACTION = 0.02
# optimisation
LEARNING_RATE = 5e-6
BETA = 1.0  # = Diffusion-DPO beta_dpo / 2 (see train_dpo/loss.py)
MAX_STEPS = 1500
WARMUP_STEPS = 500
GLOBAL_BATCH = 16  # pairs per optimiser step, all GPUs (released: 8 GPUs x 1 x accumulation 2)
BATCH_SIZE = 1  # pairs per GPU per micro-step; accumulation = GLOBAL_BATCH / (GPUs x nodes x BATCH_SIZE)
MAX_GRAD_NORM = 1.0
ADAM_WEIGHT_DECAY = 1e-3  # AdamW weight decay (released CogVideoX1.5 trainer)
CHECKPOINT_EVERY = 1000
# LoRA (released adapters)
LORA_RANK = 64
LORA_ALPHA = 128


def main(argv=None) -> int:
    """Run with ``argv`` (default ``sys.argv[1:]``); returns the exit code (0 ok, 2 bad input)."""
    from train_dpo.trainer import run_train_cli

    defaults = script_defaults(globals())
    return run_train_cli(argv, defaults, description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
