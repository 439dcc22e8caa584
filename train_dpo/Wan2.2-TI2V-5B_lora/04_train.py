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
departure: the transformer sees the timestep of its noise level, ``floor(1000 * sigma)``, as at
inference (``TIMESTEP_INPUT`` None = the family's "sigma"); ``--timestep_input released`` (or the
constant ``TIMESTEP_INPUT = "released"``) feeds the unshifted t as the released trainer does.
Shared code: ``train_dpo/train_cli.py`` (command line), ``train_dpo/families/wan.py`` (objective),
``train_dpo/pairs.py`` (pairs), ``train_dpo/loss.py`` (loss).
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from utils.scripts import script_constants  # noqa: E402

# --- configuration: what differs from the shared defaults (any option of --help can be set here as
# an UPPER_CASE constant; a name that is no option stops the script with exit code 2) ---
BASE_MODEL = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
TRAIN_JSON = str(
    REPO_ROOT / "outputs" / "candidates" / "Wan2.2-TI2V-5B" / "groups_encoded.json"
)  # from 03_encode.py
OUTPUT_DIR = str(REPO_ROOT / "outputs" / "dpo" / "Wan2.2-TI2V-5B_lora")


def main(argv=None) -> int:
    """Run with ``argv`` (default ``sys.argv[1:]``); returns the exit code (0 ok, 2 bad input)."""
    from train_dpo.train_cli import run_train_cli

    return run_train_cli(argv, script_constants(globals()), description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
