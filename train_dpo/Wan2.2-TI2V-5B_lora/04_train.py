"""Step 4 of the Wan2.2-TI2V-5B DPO recipe: Diffusion-DPO LoRA training (flow matching).

    python train_dpo/Wan2.2-TI2V-5B_lora/04_train.py                            # 1 GPU / all GPUs
    python train_dpo/Wan2.2-TI2V-5B_lora/04_train.py --devices 8                # DDP, 8 GPUs
    python train_dpo/Wan2.2-TI2V-5B_lora/04_train.py --resume auto              # continue a run

Writes OUTPUT_DIR/checkpoint-<step>/ and OUTPUT_DIR/final_lora/ (PEFT adapter of the diffusers
``WanTransformer3DModel``), OUTPUT_DIR/lightning/last.ckpt (resume), CSV + TensorBoard logs.
Defaults: the released VideoGPA Wan training (upstream ``train/Wan2.2-TI2V-5B/03_train.py``: lr 5e-6,
beta 1.0, 10,000 steps, 500 warm-up, 8 GPUs x 1 pair x accumulation 2, clip 1.0, LoRA r 64 alpha
128 on q/k/v/o of every attention = diffusers ``to_q, to_k, to_v, to_out.0``). The objective
(flow matching, t ~ U{1..999}, flow shift from the scheduler config: 5.0, clean first frame for
TI2V) is ``train_dpo/families/wan.py``; the model family is picked from the checkpoint. One
departure, ``TIMESTEP_INPUT = "sigma"``: the transformer sees the timestep of its noise level, as at
inference; ``--timestep_input released`` feeds the unshifted t as the released trainer does.
Shared code: ``train_dpo/trainer.py`` (command line), ``train_dpo/families/wan.py`` (objective),
``train_dpo/dataset.py`` (pairs), ``train_dpo/loss.py`` (loss).
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from utils.scripts import script_defaults  # noqa: E402

# --- configuration (every value can be overridden on the command line) ---
BASE_MODEL = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
TRAIN_JSON = str(
    REPO_ROOT / "outputs" / "candidates" / "Wan2.2-TI2V-5B" / "groups_encoded.json"
)  # from 03_encode.py
BASE_PATH = None  # JSON paths are relative to this; None: the folder of TRAIN_JSON
OUTPUT_DIR = str(REPO_ROOT / "outputs" / "dpo" / "Wan2.2-TI2V-5B_lora")
# preference pairs: per group winner = best, loser = worst by METRIC_NAME
METRIC_NAME = "consistency_score"
METRIC_MODE = "min"  # lower consistency_score = more 3-D consistent
MIN_GAP = 0.05  # |metric(winner) - metric(loser)| >= MIN_GAP
METRIC_THRESHOLD = None  # released: defined 0.8, never applied
MOTION_THRESHOLD = 0.001  # videos with MOTION_METRIC below this are dropped
MOTION_METRIC = "motion_norm_released"
VAL_FRACTION = 0.02
# optimisation
LEARNING_RATE = 5e-6
BETA = 1.0  # = Diffusion-DPO beta_dpo / 2 (see train_dpo/loss.py)
MAX_STEPS = 10000
WARMUP_STEPS = 500
GLOBAL_BATCH = 16  # pairs per optimiser step, all GPUs (released: 8 GPUs x 1 x accumulation 2)
BATCH_SIZE = 1  # pairs per GPU per micro-step
MAX_GRAD_NORM = 1.0
ADAM_WEIGHT_DECAY = 0.01  # AdamW default, as released
CHECKPOINT_EVERY = 1000
# LoRA (released adapter)
LORA_RANK = 64
LORA_ALPHA = 128
# the timestep the transformer sees: "sigma" = floor(1000 * sigma), the value the sampler feeds at noise
# level sigma; "released" = the released trainer's unshifted t (see train_dpo/families/wan.py)
TIMESTEP_INPUT = "sigma"


def main(argv=None) -> int:
    """Run with ``argv`` (default ``sys.argv[1:]``); returns the exit code (0 ok, 2 bad input)."""
    from train_dpo.trainer import run_train_cli

    defaults = script_defaults(globals())
    return run_train_cli(argv, defaults, description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
